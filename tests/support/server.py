"""Real Hearth servers for tests, on free loopback ports, spoken to over HTTP.

- `ThreadedServer`: the app under uvicorn in a background thread (fast to start; one per test).
- `HearthProcess`: `python -m hearth serve` as a child process, as a user runs it (for signals,
  start-up refusals, exit codes). Like vLLM's RemoteOpenAIServer: polls /health and fails fast
  with the child's output if it dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import uvicorn

from hearth.server.app import create_app
from hearth.server.httpproto import TargetKeepingProtocol
from hearth.services import Services

#: A client (openai, anthropic, ollama, httpx): anything with `close()`.
Client = TypeVar("Client")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadedServer:
    def __init__(self, services: Services, **app_kwargs: Any) -> None:
        self.services = services
        self.app = create_app(services, **app_kwargs)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, http=TargetKeepingProtocol, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})
        self._clients: list[Any] = []  # handed out by `openai()`, closed with the server

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        while self._clients:  # an unclosed client's sockets are a ResourceWarning, an error here
            self._clients.pop().close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def http(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def openai(self, api_key: str = "unused") -> Any:
        """An `openai` client of this server; closed when the server stops."""
        import openai

        return self.keep(openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0))

    def keep(self, client: Client) -> Client:
        """`client`, closed when the server stops (for clients a test does not close itself)."""
        self._clients.append(client)
        return client


class HearthProcess:
    #: Every one started; conftest's `_no_process_left` closes those a test left behind.
    started: ClassVar[list[HearthProcess]] = []

    def __init__(
        self,
        home: Path,
        *args: str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        launcher: list[str] | None = None,
    ) -> None:
        """`cwd`: the folder `hearth serve` starts in; `launcher`: what runs it (default
        `python -m hearth`; the `hearth` console script puts no folder of the user's on
        sys.path)."""
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.args = [
            *(launcher or [sys.executable, "-m", "hearth"]),
            "--home",
            str(home),
            "serve",
            "--port",
            str(self.port),
            *args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""
        self._clients: list[Any] = []

    def keep(self, client: Client) -> Client:
        """`client`, closed when the server stops (for clients a test does not close itself)."""
        self._clients.append(client)
        return client

    def start(self, wait: bool = True, timeout: float = 60) -> HearthProcess:
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        HearthProcess.started.append(self)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, _ = self.proc.communicate()  # reads and closes the pipe
                raise RuntimeError(f"hearth exited with {self.proc.returncode}:\n{out}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("hearth did not become healthy in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.output += out or ""
        return self.proc.returncode

    def __enter__(self) -> HearthProcess:
        return self.start()

    def exited(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for a server expected to exit on its own: its exit code and output (the pipe
        is read to the end and closed)."""
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        self.output += out or ""
        return self.proc.returncode, out or ""

    def close(self) -> None:
        """Stop it if it still runs and close its output pipe (also when it exited by itself
        or was killed: an open pipe is a ResourceWarning, an error in this suite)."""
        while self._clients:
            self._clients.pop().close()
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.stop()

    def __exit__(self, *exc: object) -> None:
        self.close()
