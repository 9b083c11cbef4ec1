"""Shared CLI plumbing: settings from the global options, logging, friendly errors.

Every module of `hearth.cli` imports only typer and `hearth.errors` at its top: what a command
needs (settings, Rich, the client, the services, the server) it imports when it runs, so that
`hearth --help` loads almost nothing and `hearth ps` loads neither the store nor the engines
(tests/test_cli_imports.py checks it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from hearth.errors import HearthError

if TYPE_CHECKING:
    from hearth.config import Settings

F = TypeVar("F", bound=Callable[..., Any])


def settings_from(ctx: typer.Context, **flags: Any) -> Settings:
    from hearth.config import load_settings

    home = (ctx.obj or {}).get("home") if ctx.obj else None
    return load_settings(home=home, flags=flags)


def setup_logging(level: str = "info") -> None:
    """Rich output on a terminal; plain, unwrapped lines when logs go to a file or a pipe."""
    from rich.logging import RichHandler

    from hearth.cli.render import err_console

    if err_console.is_terminal:
        handler: logging.Handler = RichHandler(console=err_console, show_path=False)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, handlers=[handler], force=True)
    # httpx logs every request URL at INFO; signed download URLs can carry tokens in the query.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def friendly_errors(fn: F) -> F:
    """Print a HearthError's message (it says what to do) and exit 1, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HearthError as exc:
            from hearth.cli.render import err_console, shown

            err_console.print(f"[red]Error:[/red] {shown(exc.message, 4000)}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """'engine_parameters.ctx_len=4096' -> (['engine_parameters', 'ctx_len'], 4096)."""
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"'{text}' is not key=value (e.g. engine_parameters.ctx_len=4096)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.split("."), value


def nest(path: list[str], value: Any, into: dict[str, Any]) -> None:
    node = into
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
