"""The `hearth` command: the parser, and dispatch to the command modules."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from hearth import __version__
from hearth.cli import derive, info, mcp, models, pull, run, search
from hearth.cli.common import command, global_options, run_handler, settings_from, setup_logging

DESCRIPTION = "Hearth: run language models on your own computer behind an OpenAI-compatible API."


def serve(args: argparse.Namespace) -> None:
    """Serve the API on 127.0.0.1:1337."""
    from hearth.runtime import run_server

    settings = settings_from(
        args,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        cors_origins=args.cors_origin,
        insecure=args.insecure,
        log_level=args.log_level,
        starter=args.starter,
    )
    setup_logging(settings.log_level)
    if args.api_key:
        import logging

        logging.getLogger("hearth").warning(
            "The key given with --api-key is on the command line, where every user of this "
            "computer can read it (ps, /proc). Set HEARTH_API_KEY instead, or put the key in a "
            "file only you can read (chmod 600) and pass --api-key-file PATH."
        )
    from hearth.cli.render import err_console, starter_bar

    run_server(settings, starter_display=starter_bar if err_console.is_terminal else None)


def _add_serve(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = command(sub, "serve", serve, parents=[common])
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 1337)")
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="require the bearer key held in this file (chmod 600); or set HEARTH_API_KEY",
    )
    parser.add_argument(
        "--api-key",
        help="require this bearer key (other users see it in ps: prefer the file or the env)",
    )
    parser.add_argument(
        "--cors-origin", action="append", help="allowed browser origin (repeatable)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback bind without a key",
    )
    parser.add_argument("--log-level", help="debug, info, warning, error")
    parser.add_argument(
        "--starter",
        action=argparse.BooleanOptionalAction,
        help="with no models yet, install SmolLM2-135M-Instruct (98 MB) first (default: on)",
    )


def build_parser() -> argparse.ArgumentParser:
    common = global_options()
    parser = argparse.ArgumentParser(prog="hearth", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    parser.add_argument(
        "--home", metavar="PATH", help="home folder (default: HEARTH_HOME, else ~/hearth)"
    )
    parser.add_argument(
        "--jan", action="store_true", help="use Jan's data folder in place (see README)"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_serve(sub, common)
    run.add_commands(sub, common)  # run, load, ps, stop
    pull.add_commands(sub, common)
    search.add_commands(sub, common)
    models.add_commands(sub, common)  # ls, rm and models ...
    info.add_commands(sub, common)  # show
    derive.add_commands(sub, common)  # cp, create
    mcp.add_commands(sub, common)  # mcp ls, path, call
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler_parser = getattr(args, "help_of", None)
    if handler_parser is not None or not hasattr(args, "handler"):
        (handler_parser or parser).print_help()
        return 0
    return run_handler(parser, args)


def app() -> NoReturn:
    """The console script."""
    sys.exit(main())
