"""`hearth run`, `load`, `ps`, `stop`: chat in the terminal; load, see and stop models.

`hearth run` talks to the running server for this home; when none runs it starts one inside
this process for the length of the chat (its engine stops when you leave); the conversation
itself is in chat.py. `load`, `ps` and `stop` need a running server: without one, nothing is
loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hearth.cli.chat import ChatSession, stream_chat
from hearth.cli.common import address_from, command, fail, settings_from

if TYPE_CHECKING:
    from hearth.cli.client import HearthClient
    from hearth.cli.output import Table
    from hearth.core.address import ServerAddress
    from hearth.core.config import Settings

__all__ = ["ChatSession", "add_commands", "stream_chat"]  # the chat's pieces live in chat.py

NO_SERVER = "No Hearth server is running for this home, so no model is loaded."


@contextlib.contextmanager
def session_client(
    address: ServerAddress, settings: Callable[[], Settings]
) -> Iterator[HearthClient]:
    """The home's running server's client, or one for a server started here for this session
    (`hearth.runtime.serve_in_background`: it holds the home's lock like `hearth serve`)."""
    from hearth.cli.backend import server_for
    from hearth.cli.client import HearthClient
    from hearth.cli.render import err_console

    running = server_for(address)
    if running is not None:
        with running:
            yield running
        return
    from hearth.runtime import serve_in_background

    err_console.print(
        "[dim]No server runs for this home; serving one in this process until you leave.[/dim]"
    )
    full = settings()
    with serve_in_background(full) as url, HearthClient(url, full.api_key) as client:
        yield client


def run(args: argparse.Namespace) -> None:
    """Chat with model ID in the terminal, as `ollama run` (type /? for the commands).

    With PROMPT, ask it once, print the answer and exit. --verbose prints the time to the first
    token, token counts and tokens/s after each answer.
    """
    from hearth.cli.chat import ChatLoop, enable_history
    from hearth.cli.render import err_console, shown

    address = address_from(args)
    interactive = sys.stdin.isatty() and args.prompt is None
    with session_client(address, lambda: settings_from(args)) as client:
        chat = ChatLoop(
            client,
            args.model_id,
            system=args.system,
            keep_alive=args.keep_alive,
            verbose=args.verbose,
            interactive=interactive,
        )
        chat.load(args.model_id)
        if args.prompt is not None:
            chat.reply(args.prompt)
            return
        if not interactive:
            chat.run()
            return
        save_history = enable_history(address.state_dir)
        err_console.print(
            f"Chatting with [bold]{shown(args.model_id)}[/bold]. Type /? for help, /bye to leave."
        )
        try:
            chat.run()
        finally:
            save_history()


def load(args: argparse.Namespace) -> None:
    """Load models now, so their first request does not wait (a spinner while each loads).

    Needs a running server: models load into `hearth serve`, which keeps them as its settings
    say (keep_alive).
    """
    import contextlib

    from hearth.cli.backend import server_for
    from hearth.cli.output import clean, echo, paint

    client = server_for(address_from(args))
    if client is None:
        raise fail(
            "No Hearth server is running for this home, so there is nothing to load the model "
            "into. Start one with `hearth serve` (in another terminal), then run this again; "
            "or chat at once with `hearth run ID`, which serves while you chat."
        )
    body = {"keep_alive": args.keep_alive} if args.keep_alive is not None else None
    spinner: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    with client:
        for model_id in args.model_ids:
            client.get_model(model_id)
            if sys.stderr.isatty():
                from hearth.cli.render import err_console, shown

                spinner = err_console.status(f"Loading {shown(model_id)}...")
            with spinner:
                answer = client.request(
                    "POST", f"/v1/models/{model_id}/start", json=body, timeout=None
                )
            pid = answer.get("pid") if isinstance(answer, dict) else None
            where = f" (pid {clean(pid)})" if pid else ""
            echo(f"Loaded {paint(clean(model_id), 'bold')}{where}.")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def running_table(models: list[dict[str, Any]], now: float | None = None) -> Table:
    from hearth.cli.output import STATUS_STYLE, Table, human_size

    now = time.time() if now is None else now
    table = Table(
        "ID", "STATUS", "PID", "PORT", "MEMORY", "UP", "REQUESTS", "UNLOADS",
        right=["MEMORY", "REQUESTS"],
    )  # fmt: skip
    for m in models:
        if m.get("active_requests"):
            unloads = f"busy ({m['active_requests']})"
        elif m.get("keep_alive", 0) < 0:
            unloads = "never"
        elif m.get("expires_at"):
            unloads = f"in {_ago(m['expires_at'] - now)}"
        else:
            unloads = "-"
        table.add_row(
            m["id"],
            m["status"],
            str(m.get("pid") or "-"),
            str(m.get("port") or "-"),
            human_size(m.get("memory")),
            _ago(now - m["since"]) if m.get("since") else "-",
            str(m.get("requests_served", 0)),
            unloads,
            styles=[None, STATUS_STYLE.get(m["status"])],
        )
        _replica_rows(table, m.get("replicas") or [])
    return table


def _replica_rows(table: Table, replicas: list[dict[str, Any]]) -> None:
    """One indented row per engine process of a model that has several."""
    if len(replicas) < 2:
        return
    for r in replicas:
        active = r.get("active_requests") or 0
        table.add_row(
            f"  replica {r.get('index', '?')}",
            str(r.get("status", "-")),
            str(r.get("pid") or "-"),
            str(r.get("port") or "-"),
            "",
            "",
            str(r.get("requests_served", 0)),
            f"busy ({active})" if active else "",
        )


def ps(args: argparse.Namespace) -> None:
    """List loaded models: pid, port, memory, uptime, requests, when each unloads, replicas."""
    from hearth.cli.backend import server_for
    from hearth.cli.output import echo

    client = server_for(address_from(args))
    if client is None:
        echo(f"{NO_SERVER} Start one with `hearth serve`.")
        return
    with client:
        models = client.request("GET", "/v1/running")["data"]
    if args.as_json:
        echo(json.dumps(models, indent=2))
    elif not models:
        echo("No model is loaded. Models load on their first request, or `hearth run ID`.")
    else:
        running_table(models).print()


def stop(args: argparse.Namespace) -> None:
    """Unload models now (their in-flight requests finish first unless --force)."""
    from hearth.cli.backend import server_for
    from hearth.cli.output import clean, echo, paint

    client = server_for(address_from(args))
    if client is None:
        echo(NO_SERVER)
        return
    with client:
        for model_id in args.model_ids:
            answer = client.request(
                "POST", f"/v1/models/{model_id}/stop", params={"force": args.force}, timeout=None
            )
            what = "Stopped" if answer["stopped"] else "Was not loaded:"
            echo(f"{what} {paint(clean(model_id), 'bold')}")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """`hearth run`, `load`, `ps` and `stop`."""
    chat = command(sub, "run", run, parents=[common])
    chat.add_argument("model_id", metavar="ID", help="the model to chat with")
    chat.add_argument(
        "prompt", nargs="?", metavar="PROMPT", help="ask this once, print the answer, and exit"
    )
    chat.add_argument("--system", help="a system message for the chat")
    chat.add_argument("--keep-alive", help='how long the model stays loaded after, e.g. "10m", -1')
    chat.add_argument(
        "--verbose", action="store_true", help="after each answer: tokens/s, time to first token"
    )
    loading = command(sub, "load", load, parents=[common])
    loading.add_argument("model_ids", nargs="+", metavar="ID", help="models to load")
    loading.add_argument("--keep-alive", help='how long it stays loaded when idle, e.g. "1h", -1')
    loaded = command(sub, "ps", ps, parents=[common])
    loaded.add_argument(
        "--json", dest="as_json", action="store_true", help="print the API's JSON, not a table"
    )
    stopping = command(sub, "stop", stop, parents=[common])
    stopping.add_argument("model_ids", nargs="+", metavar="ID", help="models to unload")
    stopping.add_argument("--force", action="store_true", help="do not wait for in-flight requests")
