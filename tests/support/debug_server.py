"""The real Hearth app served on asyncio's own event loop in debug mode, in a child process, for
tests that fail on any callback that holds the loop too long.

    with DebugLoopServer(home) as server:       # python -m support.debug_server HOME PORT
        ... clients talk to server.url ...
    assert server.slow_callbacks() == []

In debug mode asyncio logs "Executing <Handle ...> took 0.123 seconds" for every callback (one
step of a coroutine: a route's code between two awaits) that ran longer than
`slow_callback_duration`. The child prints those warnings on its output, after a SERVING line
that marks the end of start-up: only what happens while serving counts (the one request that
makes FastAPI build its routing tables is sent before). A child process, not a
thread, so the test's own clients (JSON parsing, HTTP) never share the server's GIL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

SERVING = "DEBUG-LOOP SERVING"
SLOW = "Executing "
#: asyncio's default in debug mode is 0.1 s; the issue asks for the same threshold.
SLOW_CALLBACK_SECONDS = 0.1


class DebugLoopServer:
    """`python -m support.debug_server HOME PORT` with a free port; output kept for checks."""

    def __init__(self, home: Path) -> None:
        from support.server import free_port

        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DebugLoopServer:
        here = Path(__file__).resolve().parent.parent
        env = {**os.environ, "HEARTH_WATCH": "false", "PYTHONPATH": _path(here)}
        cmd = [sys.executable, "-m", "support.debug_server", str(self.home), str(self.port)]
        self._proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self._proc.stdout is not None
        seen = []
        for line in self._proc.stdout:  # start-up ends with SERVING (or the child dies)
            seen.append(line)
            if line.startswith(SERVING):
                return self
        self._proc.kill()
        self._proc.communicate()  # reaps it and closes the pipe
        raise RuntimeError("the debug-loop server did not start:\n" + "".join(seen))

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        try:
            out, _ = self._proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        self.output += out or ""

    def slow_callbacks(self) -> list[str]:
        """The "Executing ... took N seconds" warnings logged while serving."""
        return [line for line in self.output.splitlines() if SLOW in line]


def _path(tests: Path) -> str:
    """The tests folder first (for `support`), then whatever the parent had (the src)."""
    return os.pathsep.join([str(tests), *filter(None, [os.environ.get("PYTHONPATH")])])


async def _serve(home: Path, port: int) -> None:
    import uvicorn

    from hearth.core.config import load_settings
    from hearth.server.app import create_app
    from hearth.services import Services

    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
    services = Services.create(load_settings(home=home, env={"HEARTH_WATCH": "false"}))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(create_app(services), loop="none", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving  # start-up failed: its error
        await asyncio.sleep(0.01)
    # FastAPI builds its routers' tables on the first request that walks them: a path no
    # route has walks them all (a one-time cost of the framework, not of a route).
    await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/no-such-page-warm-up")
    # Start-up (imports, the first scan of settings) is not a request: count from here on.
    logging.getLogger("asyncio").addHandler(_handler())
    print(SERVING, flush=True)
    await serving


def _get(url: str) -> None:
    import httpx

    httpx.get(url, timeout=60)


def _handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return handler


if __name__ == "__main__":
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("asyncio").propagate = False
    asyncio.run(_serve(Path(sys.argv[1]), int(sys.argv[2])))
