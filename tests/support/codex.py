"""The real Codex CLI for tests: a pinned npm install cached under ~/.cache/hearth-tests, a
private CODEX_HOME, and a loopback proxy that records what Codex sends to Hearth.

`@openai/codex` ships its native binary as an npm optional dependency; it is installed once per
version (into a temporary folder renamed into place, under a lock, so parallel test runs share
one copy) and reused. The proxy sits between Codex and Hearth: it keeps every request's method,
path, body and Hearth's status and headers, and can pin the first /v1/responses request
(`first_request`) so a test's tool round trip does not depend on what a 135M model chooses.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from support.smollm import cache_dir

VERSION = "0.171.0"  # @openai/codex, pinned


def codex_binary(version: str = VERSION) -> Path:
    """The `codex` launcher of the pinned version, installed from npm on first use (into the
    tests' cache, beside SmolLM2: ~/.cache/hearth-tests or $HEARTH_TEST_CACHE)."""
    cache = cache_dir()
    folder = cache / f"codex-{version}"
    binary = folder / "node_modules" / ".bin" / "codex"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"codex-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            staging = Path(tempfile.mkdtemp(prefix=f"codex-{version}-", dir=cache))
            try:
                subprocess.run(
                    ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(staging),
                     f"@openai/codex@{version}"],
                    check=True, capture_output=True, timeout=600,
                )  # fmt: skip
                staging.rename(folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return binary


def write_home(home: Path, config: str) -> Path:
    """A private CODEX_HOME with `config` as its config.toml and a short instructions file
    (`instructions.md`, for `model_instructions_file`)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "instructions.md").write_text(
        "You are a coding agent in a terminal. Run shell commands with the exec_command tool. "
        "Answer briefly.\n",
        encoding="utf-8",
    )
    (home / "config.toml").write_text(config, encoding="utf-8")
    return home


def run_codex(
    binary: Path, args: list[str], *, home: Path, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`codex <args>` with its own home, no stdin (exec reads a prompt from it otherwise)."""
    full = {**os.environ, "CODEX_HOME": str(home), "NO_COLOR": "1", **env}
    return subprocess.run(
        [str(binary), *args], cwd=cwd, env=full, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@dataclass
class Exchange:
    """One request Codex sent, and what Hearth answered."""

    method: str
    path: str
    body: Any  # the JSON Codex sent (after the proxy's pin, if any)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    answer: bytes = b""


#: Rewrites the first /v1/responses body in place (a test's pin), or None.
Pin = Callable[[dict[str, Any]], None] | None


class RecordingProxy:
    """A loopback HTTP proxy to `upstream` that records each exchange (`exchanges`)."""

    def __init__(self, upstream: str, first_request: Pin = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.first_request = first_request
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def responses(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.endswith("/v1/responses")]

    def _pin(self, exchange: Exchange) -> bytes | None:
        """The pinned body of the first /v1/responses request (None: sent as it came)."""
        with self._lock:
            self.exchanges.append(exchange)
            first = self.first_request is not None and len(self.responses()) == 1
        if not first or not isinstance(exchange.body, dict):
            return None
        assert self.first_request is not None
        self.first_request(exchange.body)
        return json.dumps(exchange.body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                exchange = Exchange(self.command, self.path, body)
                raw = proxy._pin(exchange) or raw
                skip = {"host", "content-length", "accept-encoding", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                with (
                    httpx.Client(timeout=None, trust_env=False) as client,
                    client.stream(
                        self.command, proxy.upstream + self.path, content=raw, headers=headers
                    ) as reply,
                ):
                    exchange.status = reply.status_code
                    exchange.headers = dict(reply.headers)
                    self._relay(reply, exchange)

            def _relay(self, reply: httpx.Response, exchange: Exchange) -> None:
                self.send_response(reply.status_code)
                hop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
                for key, value in reply.headers.items():
                    if key.lower() not in hop:
                        self.send_header(key, value)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for chunk in reply.iter_raw():
                    exchange.answer += chunk
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
