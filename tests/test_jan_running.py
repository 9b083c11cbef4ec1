"""Jan running beside Hearth (issue 25, point 6): Jan's own server on Hearth's default port, and
Jan's desktop app on the same data folder.

The holder of the port is a small loopback server that answers as Jan's Local API Server does
(`GET /openapi.json` titled "Jan API Server Endpoints", no key needed: janhq/jan
src-tauri/src/core/server/proxy.rs): it is the thing being detected. `hearth serve` runs as a
real process told that this port is its default (the launcher sets
`hearth.core.home.DEFAULT_PORT` before anything reads it). The running Jan is a real process
named `Jan` (a symlink to this Python, so the kernel's process name is `Jan`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from hearth.core.config import load_settings
from hearth.core.errors import ServeError
from hearth.core.instance import RunningServer, running_server
from hearth.server.neighbours import JAN_SERVER, is_jan, jan_processes, port_holder
from hearth.server.serve import bind_socket
from hearth.services import Services
from tests.support.janfolder import make_jan_folder
from tests.support.server import HearthProcess, ThreadedServer, free_port
from tests.test_jan_providers import PROVIDERS, SECRET

JAN_OPENAPI = {"openapi": "3.0.0", "info": {"title": "Jan API Server Endpoints", "version": "1.0"}}
#: `python -c` as `hearth`, with the default port moved to the test's (read from the env).
LAUNCHER = [
    sys.executable,
    "-c",
    "import os, sys\n"
    "import hearth.core.home as home\n"
    "home.DEFAULT_PORT = int(os.environ['TEST_DEFAULT_PORT'])\n"
    "from hearth.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n",
]


class _JanLike(BaseHTTPRequestHandler):
    """Answers as Jan's Local API Server: its docs without a key, everything else needs one."""

    def do_GET(self) -> None:
        if self.path == "/openapi.json":
            body, status, kind = json.dumps(JAN_OPENAPI).encode(), 200, "application/json"
        else:
            body, status, kind = b"Missing authorization header", 401, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def jan_server() -> Iterator[int]:
    """A loopback server answering like Jan's on a free port; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JanLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def fake_jan_app(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose name is `Jan` (as Jan's desktop app on Linux), idle until stopped."""
    link = tmp_path / "bin" / "Jan"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(sys.executable)
    proc = subprocess.Popen(
        [str(link), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while psutil.Process(proc.pid).name() != "Jan" and time.monotonic() < deadline:
            time.sleep(0.05)  # between fork and exec the child still has this one's name
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # it reads stdin to the end: this ends it
        proc.wait(timeout=10)


@pytest.mark.slow  # over ~0.4 s: out of the fast loop
def test_the_holder_is_told_apart_by_its_answer(tmp_path: Path) -> None:
    with jan_server() as port:
        assert port_holder("127.0.0.1", port) == JAN_SERVER
    services = Services.create(load_settings(home=tmp_path / "home", env={}))
    with ThreadedServer(services) as hearth:
        assert port_holder("127.0.0.1", hearth.port) == "another Hearth"


@pytest.mark.slow  # over ~0.4 s: out of the fast loop
def test_a_chosen_port_taken_by_jan_is_an_error_naming_it_and_the_fix(tmp_path: Path) -> None:
    with jan_server() as port:
        for settings in (
            load_settings(home=tmp_path / "h", flags={"port": port}, env={}),
            load_settings(home=tmp_path / "h", env={"HEARTH_PORT": str(port)}),
        ):
            with pytest.raises(ServeError) as caught:
                bind_socket(settings)
            message = caught.value.message
            assert f"Port {port}" in message and "Jan's Local API Server" in message
            assert "--port" in message and "Settings > Local API Server" in message


def test_the_jan_process_matcher() -> None:
    assert is_jan("Jan", None) and is_jan("Jan.exe", []) and is_jan("jan", ["x"])
    assert is_jan("AppRun", ["/tmp/.mount_Jan/usr/bin/Jan"])
    assert is_jan(None, ["C:\\Program Files\\Jan\\Jan.exe"])
    assert not is_jan("janitor", ["/usr/bin/janitor"]) and not is_jan("python3", ["python3"])
    assert not is_jan(None, None)


@pytest.mark.slow
def test_default_port_held_by_jan_moves_hearth_and_the_cli_finds_it(tmp_path: Path) -> None:
    """`hearth serve` with the default port held by Jan's server: serves on another port, says
    so in one line, and `hearth ps` / `hearth ls` find it through server.json; Jan's app
    running on the same data folder is warned about once."""
    data = make_jan_folder(tmp_path / "data", providers=PROVIDERS)
    with jan_server() as jan_port, fake_jan_app(tmp_path) as jan_app:
        assert jan_app.pid in jan_processes()
        server = HearthProcess(
            data,
            "--no-starter",
            "--log-level",
            "debug",
            launcher=LAUNCHER,
            env={"TEST_DEFAULT_PORT": str(jan_port)},
        )
        at = server.args.index("--port")
        del server.args[at : at + 2]  # the port comes from the (moved) default
        server.start(wait=False)
        published = _published(data / "hearth", server)
        server.url = published.url
        server.wait_healthy()
        env = {**os.environ, "HEARTH_HOME": ""}
        hearth = [sys.executable, "-m", "hearth", "--home", str(data)]
        ps = subprocess.run([*hearth, "ps", "--json"], capture_output=True, text=True, env=env)
        ls = subprocess.run([*hearth, "ls"], capture_output=True, text=True, env=env)
        server.stop()
    assert published.port != jan_port
    assert ps.returncode == 0 and json.loads(ps.stdout) == [], ps.stdout + ps.stderr
    assert ls.returncode == 0, ls.stdout + ls.stderr
    assert "Jan's remote providers" in ls.stdout
    assert "GET /v1/jan/providers" in server.output  # ls asked the server (its access log)
    assert SECRET not in ls.stdout + ls.stderr and SECRET not in server.output
    out = server.output
    assert f"Port {jan_port} (Hearth's default) is taken by Jan's Local API Server" in out
    assert f"Hearth serves on http://127.0.0.1:{published.port} instead" in out
    assert f"Jan is running (pid {jan_app.pid})" in out
    assert "may be overwritten by Jan" in out


def _published(state: Path, server: HearthProcess) -> RunningServer:
    """The server.json of the home once `hearth serve` has bound (it exits on failure)."""
    assert server.proc is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = running_server(state)
        if found is not None:
            return found
        if server.proc.poll() is not None:
            raise AssertionError(f"hearth serve exited: {server.exited()[1]}")
        time.sleep(0.05)
    raise AssertionError("hearth serve never published its port")


@pytest.mark.slow
def test_port_flag_taken_by_jan_fails_clearly(tmp_path: Path) -> None:
    with jan_server() as jan_port:
        server = HearthProcess(tmp_path / "home", "--no-starter", port=jan_port).start(wait=False)
        code, out = server.exited()
    assert code != 0
    assert f"Port {jan_port} on 127.0.0.1 is already in use by Jan's Local API Server" in out
    assert "--port N" in out and "Settings > Local API Server" in out


@pytest.mark.slow  # over ~0.4 s: out of the fast loop
def test_a_silent_holder_is_another_program(tmp_path: Path) -> None:
    """A holder that accepts and never answers: named 'another program' after the probe's
    timeout, never a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        assert port_holder("127.0.0.1", silent.getsockname()[1], timeout=0.2) == "another program"
    assert port_holder("127.0.0.1", free_port(), timeout=0.2) == "another program"
