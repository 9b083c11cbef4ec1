"""Ollama's Modelfile, the common subset, read into plain data (`hearth create NAME -f FILE`).

Pure: this module reads text and does path arithmetic, never the file system or the network, so
the CLI (and a server, later) can check a Modelfile before anything is created.

Understood (keywords in any case, as Ollama reads them):

- `FROM model` or `FROM ./file.gguf`: a model id / Ollama-style name, or a path to a GGUF file
  (relative paths are relative to the Modelfile's folder). Exactly one.
- `PARAMETER name value`: Ollama's option names (`num_ctx`, `temperature`, `top_k`, `top_p`,
  `min_p`, `repeat_penalty`, `presence_penalty`, `frequency_penalty`, `seed`, `stop`,
  `num_predict`); `stop` may repeat. An unknown name or a value of the wrong kind is an error
  that names the line.
- `SYSTEM`, `TEMPLATE` (recorded as text, never executed here), `LICENSE` (may repeat),
  `MESSAGE role text` (role: system, user or assistant).
- Values on one line, in double quotes, or in triple quotes spanning lines (`\"\"\"...\"\"\"`);
  `#` starts a comment line. A double-quoted value with a backslash is read as a JSON string
  when it is one (`"line 1\\nline 2 \"quoted\""`), else as written (`"C:\\models"`).

Writing: `hearth.core.modelfile_text.quote` (for /api/show's and `hearth show`'s Modelfile) writes
triple quotes, as Ollama does, when the text reads back exactly that way, else one
double-quoted JSON string on one line: `parse` gives back the very text, and no text can add
an instruction.

Refused with a message naming the line: `ADAPTER` (LoRA adapters are not supported) and any
other instruction.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.core.errors import ModelfileError
from hearth.core.ollama_options import OLLAMA_OPTIONS

#: Ollama's option names a Modelfile may set, and the kind of value each takes (the options
#: every Ollama face of Hearth reads, plus the context size and stop strings).
PARAMETERS: dict[str, type] = {
    "num_ctx": int,
    **{name: kind for name, (_, kind) in OLLAMA_OPTIONS.items()},
    "stop": str,
}
ROLES = ("system", "user", "assistant")
_KEYWORD = re.compile(r"^\s*([A-Za-z]+)(?:\s+|$)(.*)$", re.DOTALL)


@dataclass
class Modelfile:
    """What a Modelfile asks for. `source` is FROM's text; `path` is set when it names a file."""

    source: str
    path: Path | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)

    def create_body(self, model: str) -> dict[str, Any]:
        """The body of Ollama's `POST /api/create` for this Modelfile: `from` is the model's
        name, or the file's absolute path (a server on this machine reads it where it may).
        MESSAGE lines are left out: Hearth keeps no preset messages (the caller says so)."""
        body: dict[str, Any] = {"model": model, "stream": False}
        body["from"] = self.source if self.path is None else str(self.path)
        optional = {
            "system": self.system,
            "template": self.template,
            "parameters": self.parameters or None,
            "license": self.license or None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body


def is_path(source: str) -> bool:
    """FROM names a file (not a model) when it looks like a path or ends in .gguf."""
    return source.startswith(("/", "./", "../", "~", ".\\")) or source.lower().endswith(".gguf")


def parse(text: str, folder: Path | None = None) -> Modelfile:
    """Read a Modelfile's text; `folder` (its directory) anchors a relative FROM path."""
    source: str | None = None
    found = Modelfile(source="")
    for number, keyword, value in _instructions(text):
        where = f"line {number}"
        if keyword == "from":
            if source is not None:
                raise ModelfileError(f"{where}: a second FROM; a Modelfile has exactly one.")
            source = _required(value, where, "FROM needs a model name or a .gguf path")
        elif keyword == "parameter":
            _parameter(found.parameters, value, where)
        elif keyword in ("system", "template"):
            setattr(found, keyword, value)
        elif keyword == "license":
            found.license.append(value)
        elif keyword == "message":
            found.messages.append(_message(value, where))
        elif keyword == "adapter":
            raise ModelfileError(
                f"{where}: ADAPTER (a LoRA adapter) is not supported by Hearth. Merge the "
                "adapter into the model (e.g. llama.cpp's export-lora) and give FROM the result."
            )
        else:
            raise ModelfileError(
                f"{where}: unknown instruction {keyword.upper()}. Hearth understands FROM, "
                "PARAMETER, SYSTEM, TEMPLATE, LICENSE and MESSAGE."
            )
    if source is None:
        raise ModelfileError(
            "The Modelfile has no FROM line: say which model or .gguf to start from."
        )
    found.source = source
    if is_path(source):
        found.path = _resolve(source, folder)
    return found


def _instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, keyword in lower case, value unquoted) for each instruction."""
    lines = text.splitlines()
    out: list[tuple[int, str, str]] = []
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _KEYWORD.match(line)
        if match is None:
            raise ModelfileError(f"line {number}: expected an instruction (e.g. FROM, PARAMETER).")
        keyword, rest = match[1].lower(), match[2].strip()
        if keyword == "parameter" or keyword == "message":
            head, _, tail = rest.partition(" ")
            value, i = _value(tail.strip(), lines, i, number)
            out.append((number, keyword, f"{head} {value}" if head else ""))
        else:
            value, i = _value(rest, lines, i, number)
            out.append((number, keyword, value))
    return out


def _value(rest: str, lines: list[str], i: int, number: int) -> tuple[str, int]:
    """A value: triple-quoted (maybe over several lines), double-quoted, or the rest of the
    line. Returns it and the index of the next line to read."""
    if rest.startswith('"""'):
        body = rest[3:]
        if '"""' in body:
            return _closed(body, number), i
        parts = [body]
        while i < len(lines):
            line = lines[i]
            i += 1
            if '"""' in line:
                parts.append(_closed(line, i))  # i: this line's number (1-based)
                return "\n".join(parts).strip("\n"), i
            parts.append(line)
        raise ModelfileError(f'line {number}: a """ value is never closed.')
    if len(rest) >= 2 and rest.startswith('"') and rest.endswith('"'):
        return _unquoted(rest), i
    return rest, i


def _unquoted(rest: str) -> str:
    """A double-quoted value: a JSON string when it has a backslash and is one (what `quote`
    writes), else the text between the quotes with `\\"` read as `"`."""
    if "\\" in rest:
        try:
            value = json.loads(rest)
        except ValueError:
            pass
        else:
            if isinstance(value, str):
                return value
    return rest[1:-1].replace('\\"', '"')


def _closed(body: str, number: int) -> str:
    """The text before a closing \"\"\"; anything after it on the line is an error."""
    end = body.index('"""')
    if body[end + 3 :].strip():
        raise ModelfileError(f'line {number}: text after the closing """.')
    return body[:end]


def _required(value: str, where: str, what: str) -> str:
    if not value.strip():
        raise ModelfileError(f"{where}: {what}.")
    return value.strip()


def _parameter(into: dict[str, Any], value: str, where: str) -> None:
    name, _, raw = value.partition(" ")  # raw: as read (a quoted stop string keeps its spaces)
    name = name.strip()
    if not name:
        raise ModelfileError(
            f"{where}: PARAMETER needs a name and a value, e.g. PARAMETER num_ctx 4096."
        )
    kind = PARAMETERS.get(name.lower())
    if kind is None:
        known = ", ".join(sorted(PARAMETERS))
        raise ModelfileError(f"{where}: unknown parameter '{name}'. Known: {known}.")
    if not raw.strip():
        raise ModelfileError(f"{where}: PARAMETER {name} needs a value.")
    name = name.lower()
    if name == "stop":
        into.setdefault("stop", []).append(raw)
        return
    try:
        into[name] = kind(raw.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ModelfileError(f"{where}: PARAMETER {name} must be {what}, not '{raw}'.") from None


def _message(value: str, where: str) -> dict[str, str]:
    role, _, content = value.partition(" ")
    if role.lower() not in ROLES:
        raise ModelfileError(
            f"{where}: MESSAGE needs a role ({', '.join(ROLES)}) and a text, e.g. "
            "MESSAGE user Hello."
        )
    return {"role": role.lower(), "content": content}


def _resolve(source: str, folder: Path | None) -> Path:
    """FROM's path made absolute against the Modelfile's folder (`~` is the user's home)."""
    path = Path(source).expanduser()
    if not path.is_absolute() and folder is not None:
        path = folder / path
    return Path(posixpath.normpath(str(path))) if path.is_absolute() else path
