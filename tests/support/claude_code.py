"""The real Claude Code for tests: a pinned npm install, run non-interactively against Hearth.

`claude_bin()` installs `@anthropic-ai/claude-code` at `VERSION` once into
~/.cache/hearth-tests/claude-code-<VERSION> (`npm install --prefix`; the package's postinstall
copies the native binary for this platform) and reuses it. `run_claude` runs `claude -p` with a
private HOME and the settings that keep it offline and quiet (no telemetry, no updater, no
traffic but the API's). `RecordingProxy` sits between it and Hearth on loopback: it records
every request (to assert what Claude Code sent and what reached Hearth) and may rewrite a
request's body first (`rewrite`), which is how a test pins sampling and forces a tool call.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from support.smollm import cache_dir

VERSION = "2.1.337"
PACKAGE = f"@anthropic-ai/claude-code@{VERSION}"
#: Hop-by-hop headers and those the proxy recomputes: never forwarded as they came.
DROPPED = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


def claude_bin() -> Path:
    """The pinned `claude` executable, installed on first use (safe across processes)."""
    prefix = cache_dir() / f"claude-code-{VERSION}"
    binary = prefix / "node_modules" / ".bin" / "claude"
    if binary.exists():
        return binary
    prefix.mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".claude-code.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            subprocess.run(
                ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                 "--no-save", PACKAGE],
                check=True, timeout=600,
            )  # fmt: skip
    return binary


def claude_env(home: Path, base_url: str, model: str) -> dict[str, str]:
    """What a user sets to point Claude Code at Hearth (README, "Agents"), plus a private HOME
    and the switches that keep it from reaching anything but `base_url`."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    return {
        **keep,
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "unused",  # Hearth without --api-key takes any key
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,  # its small/fast model (titles, checks)
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_SUBAGENT_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "API_TIMEOUT_MS": "600000",
        "CI": "1",
    }


def run_claude(
    home: Path, cwd: Path, base_url: str, model: str, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`claude -p <args>` as a user runs it in `cwd`; its output is the caller's to read."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(claude_bin()), "-p", "--output-format", "json", "--model", model, *args],
        env=claude_env(home, base_url, model),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Recorded:
    """One request as the client sent it, and the body as forwarded (after `rewrite`)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, or None
    forwarded: Any = None
    status: int = 0


@dataclass
class RecordingProxy:
    """A loopback HTTP proxy to `target` that records each request and may rewrite its JSON
    body (`rewrite(index, body) -> body`, index counting POSTs to /v1/messages). Answers are
    passed through as they stream (SSE included), then the connection closes."""

    target: str
    rewrite: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def messages(self) -> list[Recorded]:
        """The recorded POSTs to /v1/messages (not count_tokens), in order."""
        return [r for r in self.requests if r.method == "POST" and r.path.split("?")[0] ==
                "/v1/messages"]  # fmt: skip

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the answer ends when the connection closes

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            def do_POST(self) -> None:
                proxy._forward(self)

            def do_HEAD(self) -> None:
                proxy._forward(self)

        return Handler

    def _record(self, handler: BaseHTTPRequestHandler) -> tuple[Recorded, bytes]:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in handler.headers.items()}
        record = Recorded(handler.command, handler.path, headers, body, body)
        with self.lock:
            self.requests.append(record)
            is_message = handler.command == "POST" and handler.path.split("?")[0] == "/v1/messages"
            index = len(self.messages()) - 1
        if is_message and isinstance(body, dict) and self.rewrite is not None:
            record.forwarded = self.rewrite(index, json.loads(json.dumps(body)))
            raw = json.dumps(record.forwarded).encode()
        return record, raw

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        record, raw = self._record(handler)
        headers = {k: v for k, v in record.headers.items() if k not in DROPPED}
        timeout = httpx.Timeout(900, connect=10)
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream(
                handler.command, self.target + handler.path, headers=headers, content=raw
            ) as answer,
        ):
            record.status = answer.status_code
            handler.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in DROPPED and key.lower() != "content-encoding":
                    handler.send_header(key, value)
            handler.end_headers()
            for chunk in answer.iter_bytes():
                handler.wfile.write(chunk)
                handler.wfile.flush()
