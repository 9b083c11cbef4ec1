"""`hearth run`, `hearth ps`, `hearth stop`: chat in the terminal; see and stop loaded models.

`hearth run` talks to the running server for this home; when none runs it starts one inside
this process for the length of the chat (its engine stops when you leave). `ps` and `stop`
need a running server: without one, nothing is loaded.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from hearth.cli.common import friendly_errors, settings_from
from hearth.errors import EngineError, HearthError, from_wire

if TYPE_CHECKING:
    from rich.table import Table

    from hearth.client import HearthClient
    from hearth.config import Settings

Message = dict[str, str]
Stream = Callable[[list[Message]], Iterator[str]]
HELP = "Commands: /clear forgets the conversation, /exit (or Ctrl-D) leaves."
EXIT = frozenset({"/exit", "/quit", "/bye"})
NO_SERVER = "No Hearth server is running for this home, so no model is loaded."


@dataclass
class ChatSession:
    """A conversation's history; a turn joins it only once its reply has fully arrived."""

    system: str | None = None
    messages: list[Message] = field(default_factory=list)

    def ask(self, text: str, stream: Stream) -> Iterator[str]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        question = {"role": "user", "content": text}
        pieces: list[str] = []
        for piece in stream([*system, *self.messages, question]):
            pieces.append(piece)
            yield piece
        self.messages += [question, {"role": "assistant", "content": "".join(pieces)}]

    def clear(self) -> None:
        self.messages.clear()


def stream_chat(
    client: HearthClient, model: str, messages: list[Message], keep_alive: str | None = None
) -> Iterator[str]:
    """The reply's text pieces as the server streams them (OpenAI's SSE chunks)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    # the API's error, with its message, is raised before the stream starts
    with client.stream("POST", "/v1/chat/completions", json=body, timeout=30.0) as resp:
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            event = json.loads(data)
            if event.get("error"):  # the engine failed mid-stream: its error, by code
                raise from_wire(EngineError.status, event, str(event["error"]))
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece


@contextlib.contextmanager
def session_client(settings: Settings) -> Iterator[HearthClient]:
    """The home's running server's client, or one for a server started here for this session
    (`hearth.runtime.serve_in_background`: it holds the home's lock like `hearth serve`)."""
    from hearth.cli.backend import server_for
    from hearth.cli.render import err_console
    from hearth.client import HearthClient

    running = server_for(settings)
    if running is not None:
        with running:
            yield running
        return
    from hearth.runtime import serve_in_background

    err_console.print(
        "[dim]No server runs for this home; serving one in this process until you leave.[/dim]"
    )
    with serve_in_background(settings) as url, HearthClient(url, settings.api_key) as client:
        yield client


def _read_line(interactive: bool) -> str | None:
    try:
        if interactive:
            return input(">>> ")
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None
    except EOFError:
        return None


def _reply(
    session: ChatSession, text: str, stream: Callable[[list[Message]], Iterator[str]]
) -> None:
    from hearth.cli.render import err_console

    try:
        for piece in session.ask(text, stream):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        err_console.print("[dim](stopped; that turn is forgotten)[/dim]")
        return
    except HearthError as exc:  # keep chatting: the next message may well work (a restart)
        sys.stdout.write("\n")
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        return
    sys.stdout.write("\n")
    sys.stdout.flush()


@friendly_errors
def run(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., metavar="ID", help="The model to chat with."),
    prompt: str | None = typer.Argument(None, help="Ask this once, print the answer, and exit."),
    system: str | None = typer.Option(None, "--system", help="A system message for the chat."),
    keep_alive: str | None = typer.Option(
        None, "--keep-alive", help='How long the model stays loaded after, e.g. "10m", -1.'
    ),
) -> None:
    """Chat with a model in the terminal (streams the reply; /clear, /exit)."""
    from hearth.cli.render import err_console

    settings = settings_from(ctx)
    interactive = sys.stdin.isatty() and prompt is None
    with session_client(settings) as client:
        client.get_model(model_id)  # a clear "does not exist" before anything loads
        body = {"keep_alive": keep_alive} if keep_alive is not None else None
        loading = err_console.status(f"Loading {model_id}...") if interactive else None
        with loading or contextlib.nullcontext():
            client.request("POST", f"/v1/models/{model_id}/start", json=body, timeout=None)
        session = ChatSession(system=system)

        def stream(messages: list[Message]) -> Iterator[str]:
            return stream_chat(client, model_id, messages, keep_alive)

        if prompt is not None:
            _reply(session, prompt, stream)
            return
        if interactive:
            err_console.print(f"Chatting with [bold]{model_id}[/bold]. {HELP}")
        while (line := _read_line(interactive)) is not None:
            text = line.strip()
            if text in EXIT:
                break
            if text == "/clear":
                session.clear()
                err_console.print("[dim](conversation forgotten)[/dim]")
            elif text in ("/help", "/?"):
                err_console.print(HELP)
            elif text.startswith("/"):
                err_console.print(f"Unknown command {text}. {HELP}")
            elif text:
                _reply(session, text, stream)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def running_table(models: list[dict[str, Any]], now: float | None = None) -> Table:
    from rich.table import Table

    from hearth.cli.render import human_size

    now = time.time() if now is None else now
    table = Table(show_edge=False, header_style="bold")
    for column in ("ID", "STATUS", "PID", "PORT", "MEMORY", "UP", "REQUESTS", "UNLOADS"):
        table.add_column(column, justify="right" if column in ("MEMORY", "REQUESTS") else "left")
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


@friendly_errors
def ps(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON instead of a table."),
) -> None:
    """List loaded models: pid, port, memory, uptime, requests, when each unloads, replicas."""
    from hearth.cli.backend import server_for
    from hearth.cli.render import console

    client = server_for(settings_from(ctx))
    if client is None:
        console.print(f"{NO_SERVER} Start one with `hearth serve`.")
        return
    with client:
        models = client.request("GET", "/v1/running")["data"]
    if as_json:
        console.print_json(json.dumps(models))
    elif not models:
        console.print("No model is loaded. Models load on their first request, or `hearth run ID`.")
    else:
        console.print(running_table(models))


@friendly_errors
def stop(
    ctx: typer.Context,
    model_ids: list[str] = typer.Argument(..., metavar="ID...", help="Models to unload."),
    force: bool = typer.Option(False, "--force", help="Do not wait for in-flight requests."),
) -> None:
    """Unload models now (their in-flight requests finish first unless --force)."""
    from hearth.cli.backend import server_for
    from hearth.cli.render import console

    client = server_for(settings_from(ctx))
    if client is None:
        console.print(NO_SERVER)
        return
    with client:
        for model_id in model_ids:
            answer = client.request(
                "POST", f"/v1/models/{model_id}/stop", params={"force": force}, timeout=None
            )
            what = "Stopped" if answer["stopped"] else "Was not loaded:"
            console.print(f"{what} [bold]{model_id}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("ps")(ps)
    app.command("stop")(stop)
