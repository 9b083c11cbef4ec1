"""Terminal output: tables and sizes (imported when a command runs, not for `--help`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

STATUS_STYLE = {
    "ready": "green",
    "running": "bold green",
    "starting": "yellow",
    "downloading": "cyan",
    "missing": "yellow",
    "failed": "red",
    "invalid": "red",
}


def human_size(n: int | None) -> str:
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def models_table(models: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "NAME", "FORMAT", "SIZE", "STATUS"):
        table.add_column(column, justify="right" if column == "SIZE" else "left")
    for m in models:
        status = m.get("status", "")
        style = STATUS_STYLE.get(status, "")
        table.add_row(
            shown(m["id"], 130),  # ids and names come from model.json: a stranger's text
            shown(m.get("name") or "", 80),
            shown(m.get("format") or "-", 20),
            human_size(m.get("size")),
            f"[{style}]{status}[/{style}]" if style else status,
        )
    return table


def transfer_progress(*, transient: bool = False) -> Progress:
    """Bars for byte transfers (copies, downloads): name, bar, bytes, speed, time left."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


SHOWN_MAX = 300  # characters of server-supplied text shown on the terminal
# C0 and C1 controls (escape codes, BEL, CR...) and the bidi/zero-width formatting characters
# that can reorder or hide what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def shown(text: object, limit: int = SHOWN_MAX) -> str:
    """Text from a server (reason phrases, file names, errors) made inert for Rich and the
    terminal: controls become spaces, Rich markup is escaped, and it is cut to `limit` chars."""
    clean = _UNSAFE.sub(" ", str(text))
    if len(clean) > limit:
        clean = clean[: limit - 1] + "…"
    return escape(clean)
