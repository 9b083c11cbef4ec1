"""How a Modelfile value is written so that `hearth.models.modelfile.parse` reads back the
very text (issue 22): /api/show's Modelfile and `hearth show --modelfile` both write with it.

Standard library only, outside `hearth.models`: the command line's client commands use it
without loading the model store.

Triple quotes, as Ollama writes them, when the text reads back exactly that way; otherwise (a
`\"\"\"` inside, which would end the value and let the rest be read as new instructions,
leading or trailing newlines, a first line ending in spaces, control characters, carriage
returns and the other line breaks `str.splitlines` knows) one double-quoted JSON string on one
line, which the reader decodes.
"""

from __future__ import annotations

import json
import re

__all__ = ["quote", "quote_parameter"]

#: Characters `str.splitlines` breaks lines at besides "\n": a value holding one cannot be
#: written across lines (the reader would split it there), nor bare.
_OTHER_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
#: Control characters but newline and tab: a value holding one is written escaped, so that the
#: Modelfile is plain text a terminal shows as it is (and `hearth show` prints unaltered).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def quote(text: str, *, bare: bool = False) -> str:
    """`text` as a Modelfile value that `parse` reads back exactly (see the module). With
    `bare`, plain one-line text (a path, a number) is written as it is, as Ollama does."""
    breaks = _OTHER_BREAKS.intersection(text)
    plain = text and text == text.strip() and "\n" not in text and not text.startswith('"')
    if bare and plain and not breaks:
        return text
    triple_safe = (
        '"""' not in text
        and not _CONTROL.search(text)
        and not text.endswith('"')
        and not text.startswith("\n")
        and not text.endswith("\n")
        and not ("\n" in text and text.split("\n", 1)[0] != text.split("\n", 1)[0].rstrip())
    )
    if triple_safe:
        return '"""' + text + '"""'
    surrogates = any("\ud800" <= char <= "\udfff" for char in text)  # not UTF-8: escape all
    line = json.dumps(text, ensure_ascii=surrogates)
    for char in breaks:  # JSON leaves these as they are: escape them too
        line = line.replace(char, f"\\u{ord(char):04x}")
    return line


def quote_parameter(text: str) -> str:
    """A PARAMETER's string value (a stop string): in plain double quotes, as Hearth and
    Ollama have always written it, when it reads back so; else as `quote` writes it."""
    plain = text.strip() and "\n" not in text and not _CONTROL.search(text)
    if plain and not _OTHER_BREAKS.intersection(text) and not {'"', "\\"} & set(text):
        return f'"{text}"'
    return quote(text)
