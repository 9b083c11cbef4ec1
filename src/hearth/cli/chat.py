"""The conversation of `hearth run`: history, streamed replies, and the slash commands.

Like `ollama run`: line editing and history (the standard library's `readline` where Python has
it; the history lives in `<home>/history`, shared by every model, 1,000 lines), `\"\"\"` starts and
ends a multi-line message, and `/set parameter NAME VALUE`, `/set system TEXT`, `/show`,
`/load MODEL`, `/clear`, `/bye` (or /exit, Ctrl-D) and `/?` act on the session.

Parameters use Ollama's option names and travel as the OpenAI body fields the server knows
(`num_predict` is `max_tokens`); `num_ctx` is no request field but an engine setting, so it
reloads the model with that context, as Ollama does.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.core.errors import EngineError, HearthError, from_wire
from hearth.core.ollama_options import OLLAMA_OPTIONS

if TYPE_CHECKING:
    from hearth.cli.client import HearthClient

Message = dict[str, str]
Stream = Callable[[list[Message]], Iterator[str]]
EXIT = frozenset({"/exit", "/quit", "/bye"})
MULTILINE = '"""'
HISTORY_FILE = "history"
HISTORY_LENGTH = 1000

#: Ollama's option name -> (the chat request's field, the kind of its value).
OPTIONS: dict[str, tuple[str, type]] = {**OLLAMA_OPTIONS, "stop": ("stop", str)}
RELOAD_OPTIONS = {"num_ctx": "ctx_len"}  # engine settings: a change reloads the model

HELP = """Available commands:
  /set parameter NAME VALUE  set a parameter (num_ctx, num_predict, temperature, top_k, top_p,
                             min_p, repeat_penalty, presence_penalty, frequency_penalty, seed, stop)
  /set system TEXT           set the system message
  /set verbose | quiet       show (or not) timings and token counts after each answer
  /show [info|parameters|system]  what the session uses
  /load MODEL                switch to another model (the conversation is kept)
  /clear                     forget the conversation
  /bye                       leave (also /exit, Ctrl-D)
  /?                         this help
Use \"\"\" to begin and end a message of several lines."""


class ChatSession:
    """A conversation's history; a turn joins it only once its reply has fully arrived.

    (A plain class: `dataclasses` imports `inspect`, ~12 ms of every command's start-up.)"""

    def __init__(self, system: str | None = None) -> None:
        self.system = system
        self.messages: list[Message] = []

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
    client: HearthClient,
    model: str,
    messages: list[Message],
    keep_alive: str | None = None,
    options: dict[str, Any] | None = None,
    stats: dict[str, Any] | None = None,
) -> Iterator[str]:
    """The reply's text pieces as the server streams them (OpenAI's SSE chunks).

    `options` are extra body fields (temperature, max_tokens...). `stats`, when given, receives
    the final chunk's `usage` and llama.cpp's `timings`, and the client's own clock readings
    (`started`, `first`, `ended`), for `--verbose`."""
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True, **(options or {})}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    if stats is not None:
        body["stream_options"] = {"include_usage": True}
        stats.update(started=time.monotonic(), first=None)
    # the API's error, with its message, is raised before the stream starts
    with client.stream("POST", "/v1/chat/completions", json=body, timeout=30.0) as resp:
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if event.get("error"):  # the engine failed mid-stream: its error, by code
                raise from_wire(EngineError.status, event, str(event["error"]))
            if stats is not None:
                _note(stats, event)
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if stats is not None and stats["first"] is None:
                        stats["first"] = time.monotonic()
                    yield piece
    if stats is not None:
        stats["ended"] = time.monotonic()


def _note(stats: dict[str, Any], event: dict[str, Any]) -> None:
    for key in ("usage", "timings"):
        if isinstance(event.get(key), dict):
            stats[key] = event[key]


def verbose_lines(stats: dict[str, Any]) -> list[str]:
    """After an answer, with --verbose: time to first token, token counts and rates.

    The engine's own timings (llama.cpp's `timings`) when it sent them, else the stream's
    `usage` over the client's clock."""
    started, first, ended = stats.get("started"), stats.get("first"), stats.get("ended")
    usage = stats.get("usage") or {}
    timings = stats.get("timings") or {}
    lines: list[str] = []
    if started is not None and ended is not None:
        lines.append(f"total duration:       {ended - started:.2f}s")
    if started is not None and first is not None:
        lines.append(f"time to first token:  {first - started:.3f}s")
    prompt_n = timings.get("prompt_n", usage.get("prompt_tokens"))
    eval_n = timings.get("predicted_n", usage.get("completion_tokens"))
    if isinstance(prompt_n, int):
        lines.append(f"prompt eval count:    {prompt_n} token(s)")
    if isinstance(timings.get("prompt_per_second"), (int, float)):
        lines.append(f"prompt eval rate:     {timings['prompt_per_second']:.2f} tokens/s")
    if isinstance(eval_n, int):
        lines.append(f"eval count:           {eval_n} token(s)")
    rate = timings.get("predicted_per_second")
    if not isinstance(rate, (int, float)) and isinstance(eval_n, int) and first and ended:
        rate = eval_n / (ended - first) if ended > first else None
    if isinstance(rate, (int, float)):
        lines.append(f"eval rate:            {rate:.2f} tokens/s")
    return lines


def parse_option(name: str, raw: str) -> tuple[str, Any]:
    """(`/set parameter` name, value) checked: the value in its kind; a clear error if not."""
    from hearth.cli.common import UsageError

    name = name.lower()
    if name in RELOAD_OPTIONS:
        kind: type = int
    elif name in OPTIONS:
        kind = OPTIONS[name][1]
    else:
        known = ", ".join(sorted([*OPTIONS, *RELOAD_OPTIONS]))
        raise UsageError(f"Unknown parameter '{name}'. Known: {known}.")
    try:
        return name, kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise UsageError(f"{name} must be {what}, not '{raw}'.") from None


def request_options(options: dict[str, Any]) -> dict[str, Any]:
    """Ollama-named session options -> the chat request's body fields (`stop` is a list)."""
    body: dict[str, Any] = {}
    for name, value in options.items():
        if name in OPTIONS:
            body[OPTIONS[name][0]] = value
    return body


def enable_history(home: Path) -> Callable[[], None]:
    """Line editing and history for `input()`, where Python has `readline`; gives the function
    that saves the history (call it on the way out). Without readline: plain input, no-op."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline, or a Python built without it
        return lambda: None
    path = home / HISTORY_FILE
    with contextlib.suppress(OSError, ValueError):  # no history yet, or unreadable: afresh
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)

    def save() -> None:
        with contextlib.suppress(OSError):  # a read-only home: not worth an error
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)

    return save


def read_message(interactive: bool) -> str | None:
    """One message: a line, or the lines between two \"\"\" (None at the end of input)."""
    line = _read_line(interactive, ">>> ")
    if line is None or not line.lstrip().startswith(MULTILINE):
        return line
    first = line.lstrip()[len(MULTILINE) :]
    if first.rstrip().endswith(MULTILINE) and first.strip():
        return first.rstrip()[: -len(MULTILINE)]
    parts = [first] if first else []
    while (more := _read_line(interactive, "... ")) is not None:
        if more.rstrip().endswith(MULTILINE):
            parts.append(more.rstrip()[: -len(MULTILINE)])
            break
        parts.append(more)
    return "\n".join(parts).strip("\n")


def _read_line(interactive: bool, prompt: str) -> str | None:
    try:
        if interactive:
            return input(prompt)
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None
    except EOFError:
        return None


class ChatLoop:
    """`hearth run`'s conversation with one model (switchable with /load) on one server."""

    def __init__(
        self,
        client: HearthClient,
        model_id: str,
        *,
        system: str | None,
        keep_alive: str | None,
        verbose: bool,
        interactive: bool,
    ) -> None:
        self.client, self.model_id = client, model_id
        self.session = ChatSession(system)
        self.keep_alive, self.verbose, self.interactive = keep_alive, verbose, interactive
        self.options: dict[str, Any] = {}  # Ollama names -> values, for every request
        self.engine: dict[str, Any] = {}  # engine overrides for loads (num_ctx -> ctx_len)

    def load(self, model_id: str) -> None:
        """Load `model_id` now (with the session's engine overrides), a spinner meanwhile."""
        from hearth.cli.render import err_console, shown

        self.client.get_model(model_id)  # a clear "does not exist" before anything loads
        body: dict[str, Any] = dict(self.engine)
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        spinner = err_console.status(f"Loading {shown(model_id)}...") if self.interactive else None
        with spinner or contextlib.nullcontext():
            self.client.request(
                "POST", f"/v1/models/{model_id}/start", json=body or None, timeout=None
            )
        self.model_id = model_id

    def reply(self, text: str) -> None:
        """Stream the answer to stdout; an error or Ctrl-C ends the turn, not the chat."""
        from hearth.cli.output import clean_text
        from hearth.cli.render import err_console, shown

        stats: dict[str, Any] | None = {} if self.verbose else None

        def stream(messages: list[Message]) -> Iterator[str]:
            options = request_options(self.options)
            return stream_chat(
                self.client, self.model_id, messages, self.keep_alive, options, stats
            )

        try:
            for piece in self.session.ask(text, stream):
                sys.stdout.write(clean_text(piece))
                sys.stdout.flush()
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            err_console.print("[dim](stopped; that turn is forgotten)[/dim]")
            return
        except HearthError as exc:  # keep chatting: the next message may well work (a restart)
            sys.stdout.write("\n")
            err_console.print(f"[red]Error:[/red] {shown(exc.message, 4000)}", highlight=False)
            return
        sys.stdout.write("\n")
        sys.stdout.flush()
        if stats is not None:
            err_console.print("\n".join(verbose_lines(stats)), highlight=False)

    def run(self) -> None:
        """Read messages until /bye or the end of input."""
        while (text := read_message(self.interactive)) is not None:
            if text.strip().startswith("/") and "\n" not in text:
                if not self.command(text.strip()):
                    return
            elif text.strip():
                self.reply(text)

    def command(self, text: str) -> bool:
        """Act on a slash command; False when it is time to leave."""
        from hearth.cli.common import UsageError
        from hearth.cli.render import err_console, shown

        verb, _, rest = text.partition(" ")
        try:
            if verb in EXIT:
                return False
            if verb == "/clear":
                self.session.clear()
                err_console.print("[dim](conversation forgotten)[/dim]")
            elif verb in ("/help", "/?"):
                err_console.print(HELP, markup=False, highlight=False)
            elif verb == "/set":
                self.set(rest.strip())
            elif verb == "/show":
                self.show(rest.strip())
            elif verb == "/load" and rest.strip():
                self.load(rest.strip())
                err_console.print(f"Loaded {shown(self.model_id)}.", highlight=False)
            else:
                err_console.print(
                    f"Unknown command {shown(text)}. Type /? for help.", highlight=False
                )
        except (UsageError, HearthError) as exc:
            message = exc.message if isinstance(exc, HearthError) else str(exc)
            err_console.print(f"[red]Error:[/red] {shown(message, 4000)}", highlight=False)
        return True

    def set(self, rest: str) -> None:
        """/set parameter NAME VALUE..., /set system TEXT, /set verbose, /set quiet."""
        from hearth.cli.common import UsageError
        from hearth.cli.render import err_console, shown

        what, _, value = rest.partition(" ")
        if what == "system":
            self.session.system = value.strip() or None
            err_console.print("Set system message.")
        elif what in ("verbose", "quiet"):
            self.verbose = what == "verbose"
            err_console.print(f"Set '{what}' mode.")
        elif what == "parameter":
            name, _, raw = value.strip().partition(" ")
            if not raw.strip():
                raise UsageError(
                    "Usage: /set parameter NAME VALUE (e.g. /set parameter temperature 0.5)"
                )
            if name.lower() == "stop":
                self.options["stop"] = raw.split()
            else:
                key, parsed = parse_option(name, raw.strip())
                if key in RELOAD_OPTIONS:
                    self.engine[RELOAD_OPTIONS[key]] = parsed
                    self.load(self.model_id)
                self.options[key] = parsed
            err_console.print(f"Set parameter '{shown(name.lower())}' to '{shown(raw.strip())}'.")
        else:
            raise UsageError("Usage: /set parameter NAME VALUE | /set system TEXT | /set verbose")

    def show(self, what: str) -> None:
        """/show info (the model), /show parameters (the model's and the session's), /show
        system."""
        from hearth.cli.info import overview, parameters_of, system_of
        from hearth.cli.output import clean, clean_text, echo

        model = self.client.get_model(self.model_id)
        if what in ("", "info"):
            echo("\n".join(overview(model)).rstrip())
        elif what == "parameters":
            rows = [*parameters_of(model), *self.options.items()]
            echo("\n".join(f"{clean(n, 60):<20}{clean(v, 200)}" for n, v in rows) or "(none)")
        elif what == "system":
            system = self.session.system or system_of(model)
            echo(clean_text(system) if system else "(no system message)")
        else:
            from hearth.cli.common import UsageError

            raise UsageError("Usage: /show [info|parameters|system]")
