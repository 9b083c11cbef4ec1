"""Shared CLI plumbing: declaring commands, the global options, settings, friendly errors.

The CLI is built on the standard library's argparse. It answers in well under 250 ms on a small
machine only if it imports almost nothing before the command runs (issue 15): Typer 0.29 coerces
every valued option through pydantic (~330 ms of imports here) and `import typer` alone took
145 ms; Click, under it, still costs 70-90 ms, a third of the budget, for what argparse does in
~15 ms (subcommands, options before or after the command, help, usage errors).

Every module of `hearth.cli` imports only the standard library and `hearth.core.errors` at its top:
what a command needs (settings, Rich, the client, the services, the server) it imports when it
runs, so `hearth --help` loads almost nothing and `hearth ps` loads neither the store, the
engines nor pydantic (tests/test_cli_imports.py checks it).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hearth.core.errors import HearthError

if TYPE_CHECKING:
    from hearth.core.address import ServerAddress
    from hearth.core.config import Settings

Handler = Callable[[argparse.Namespace], "int | None"]


class UsageError(Exception):
    """A command line that cannot mean anything (exit 2, like argparse's own usage errors)."""


class Exit(Exception):
    """Leave with this status (the message, if any, was already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def global_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after its name (`hearth ps --home H`).

    After the command, `--home` wins (its default is SUPPRESS, so a command that does not name it
    leaves the top level's value alone)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--home",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="home folder (default: HEARTH_HOME, else ~/hearth)",
    )
    parent.add_argument(
        "--jan",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use Jan's data folder in place (found as Jan finds it; see README)",
    )
    return parent


def command(
    sub: Any, name: str, handler: Handler, *, parents: list[argparse.ArgumentParser], **kw: Any
) -> argparse.ArgumentParser:
    """Declare `hearth NAME`: its help is the handler's docstring (its first sentence in the
    list of commands)."""
    first, _, rest = (handler.__doc__ or "").strip().partition("\n")
    doc = f"{first}\n{textwrap.dedent(rest)}".strip()  # inspect.cleandoc, without inspect
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    sentence = paragraph.split(". ", 1)[0].rstrip(".")
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=sentence,
        description=doc,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kw,
    )
    parser.set_defaults(handler=handler, help_of=None, command_parser=parser)
    return parser


def settings_from(args: argparse.Namespace, **flags: Any) -> Settings:
    """Every setting, validated (pydantic): for commands that work on the home themselves."""
    from hearth.core.config import load_settings

    return load_settings(
        home=getattr(args, "home", None), flags=flags, jan=getattr(args, "jan", False)
    )


def address_from(args: argparse.Namespace) -> ServerAddress:
    """Just where the home's server is and its key: for commands that only talk to it."""
    from hearth.core.address import server_address

    return server_address(getattr(args, "home", None), jan=getattr(args, "jan", False))


def setup_logging(level: str = "info") -> None:
    """Rich output on a terminal; plain, unwrapped lines when logs go to a file or a pipe."""
    import logging

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


def fail(message: str, code: int = 1) -> Exit:
    """Print `Error: message` (made inert: it may quote a server) and give the exit to raise."""
    from hearth.cli.output import error

    error(message)
    return Exit(code)


def run_handler(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the chosen command: a HearthError prints its message (it says what to do) and
    exits 1, without a traceback; Ctrl-C exits 130."""
    try:
        return args.handler(args) or 0
    except HearthError as exc:
        return fail(exc.message).code
    except UsageError as exc:
        parser = getattr(args, "command_parser", parser)
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exit as exc:
        return exc.code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def confirm(question: str) -> bool:
    """Ask yes/no on the terminal; no answer (end of input) is no."""
    try:
        return input(f"{question} [y/N]: ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """'engine_parameters.ctx_len=4096' -> (['engine_parameters', 'ctx_len'], 4096)."""
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise UsageError(f"'{text}' is not key=value (e.g. engine_parameters.ctx_len=4096)")
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
