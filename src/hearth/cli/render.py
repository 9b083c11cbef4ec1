"""Rich output for live displays: progress bars, the loading spinner, logs.

Imported only by commands that show one (`pull`, `models import`, `run`, `serve`): tables and
one-line answers print through the lighter `output.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from hearth.cli.output import SHOWN_MAX, clean, human_size

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "SHOWN_MAX",
    "console",
    "err_console",
    "human_size",
    "shown",
    "starter_bar",
    "transfer_progress",
]

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def transfer_progress(*, transient: bool = False, stderr: bool = False) -> Progress:
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
        console=err_console if stderr else console,
        transient=transient,
    )


@contextlib.contextmanager
def starter_bar(description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A download bar on stderr, beside the server's logs (they share `err_console`), for
    `hearth serve`'s first fetch of the starter model; gives the function to feed it."""
    bar = transfer_progress(transient=True, stderr=True)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda done, expected: bar.update(task, completed=done, total=expected)


def shown(text: object, limit: int = SHOWN_MAX) -> str:
    """Text from a server (reason phrases, file names, errors) made inert for Rich and the
    terminal: controls become spaces, Rich markup is escaped, and it is cut to `limit` chars."""
    return escape(clean(text, limit))
