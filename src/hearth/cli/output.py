"""Plain terminal output for the quick commands: aligned columns, colour on a terminal.

`hearth ls`, `ps`, `stop`, `models show|edit|rm` and every error message print through here, not
through Rich: importing Rich's console costs ~60-120 ms on a small machine, more than such a
command's whole round trip to the server, and their output is a few lines or a table of plain
columns (as `ollama list` or `docker ps` print). Rich stays for live displays: progress bars,
the loading spinner, logs (see render.py).

Colour follows the usual conventions: only on a terminal, never with NO_COLOR set or TERM=dumb.
Every text that came from a model.json or a server goes through `clean` first.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Sequence
from typing import TextIO

SHOWN_MAX = 300  # characters of server-supplied text shown on the terminal
# C0 and C1 controls (escape codes, BEL, CR...) and the bidi/zero-width formatting characters
# that can reorder or hide what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "cyan": "36",
    "bold green": "1;32",
}

STATUS_STYLE = {
    "ready": "green",
    "running": "bold green",
    "starting": "yellow",
    "downloading": "cyan",
    "missing": "yellow",
    "failed": "red",
    "invalid": "red",
}


def clean(text: object, limit: int = SHOWN_MAX) -> str:
    """A stranger's text made inert for the terminal: controls become spaces, cut to `limit`."""
    out = _UNSAFE.sub(" ", str(text))
    return out[: limit - 1] + "…" if len(out) > limit else out


_UNSAFE_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def clean_text(text: object) -> str:
    """Like `clean` for text meant to keep its lines (a chat reply, a license, a template):
    newlines and tabs stay, every other control character becomes a space; no length limit."""
    return _UNSAFE_KEEP_LINES.sub(" ", str(text))


def colour_on(stream: TextIO) -> bool:
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, style: str | None, stream: TextIO | None = None) -> str:
    """`text` in `style` (a key of _SGR) when `stream` (stdout by default) is a terminal."""
    code = _SGR.get(style or "")
    if code is None or not colour_on(stream or sys.stdout):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


def echo(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def warn(text: str) -> None:
    """A line for the person (notes, confirmations of nothing done) on stderr."""
    print(text, file=sys.stderr, flush=True)


def error(message: str) -> None:
    """`Error: message` on stderr; the message may quote a server, so it is cleaned."""
    label = paint("Error:", "red", sys.stderr)
    print(f"{label} {clean(message, 4000)}", file=sys.stderr, flush=True)


def human_size(n: int | None) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def width(text: str) -> int:
    """Columns `text` takes on a terminal: wide (CJK) characters 2, combining marks 0."""
    if text.isascii():
        return len(text)
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


class Table:
    """Columns padded to their widest cell, two spaces apart, header in bold.

    Cells are plain text; a row may give each cell a style, applied after padding so the
    escape codes do not count towards widths."""

    def __init__(self, *headers: str, right: Sequence[str] = ()) -> None:
        self.headers = list(headers)
        self.right = {headers.index(name) for name in right}
        self.rows: list[tuple[list[str], list[str | None]]] = []

    def add_row(self, *cells: str, styles: Sequence[str | None] = ()) -> None:
        padded_styles = [*styles, *[None] * (len(cells) - len(styles))]
        self.rows.append(([clean(c, 130) for c in cells], padded_styles))

    def lines(self, stream: TextIO | None = None) -> list[str]:
        widths = [width(h) for h in self.headers]
        for cells, _ in self.rows:
            widths = [max(w, width(c)) for w, c in zip(widths, cells, strict=True)]
        out = [self._line(self.headers, ["bold"] * len(self.headers), widths, stream)]
        out += [self._line(cells, styles, widths, stream) for cells, styles in self.rows]
        return out

    def _line(
        self, cells: list[str], styles: list[str | None], widths: list[int], stream: TextIO | None
    ) -> str:
        parts = []
        for i, (cell, style, w) in enumerate(zip(cells, styles, widths, strict=True)):
            pad = " " * (w - width(cell))
            text = pad + cell if i in self.right else cell + pad
            parts.append(paint(text, style, stream))
        return "  ".join(parts).rstrip()

    def print(self) -> None:
        echo("\n".join(self.lines()))
