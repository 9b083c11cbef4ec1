"""One server per home, and the CLI finds it: the home lock and server.json, with real servers.

Servers are `python -m hearth serve` children (HearthProcess) on random ports; CLI commands run
as subprocesses with no HEARTH_PORT, so only server.json can tell them where the server is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import FAKE_GGUF, make_model
from support.server import HearthProcess, free_port

from hearth.core.config import load_settings
from hearth.core.instance import LOCK_FILE, RUNTIME_FILE, HomeInstance, running_server
from hearth.server.background import BackgroundServer
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

KEY = "instance-test-key-0123456789"


def hearth(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A CLI command as a user runs it: its own process, the home's settings, no port given."""
    cmd = [sys.executable, "-m", "hearth", "--home", str(home), *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=full_env)


def runtime_file(home: Path) -> dict[str, object]:
    return json.loads((home / RUNTIME_FILE).read_text(encoding="utf-8"))


def refused(proc: HearthProcess) -> tuple[int, str]:
    """Start a server expected to exit on its own; its exit code and output."""
    return proc.start(wait=False).exited(timeout=60)


def test_a_second_serve_on_the_same_home_exits_naming_the_first(home: Path) -> None:
    with HearthProcess(home) as first:
        assert first.proc is not None
        code, out = refused(HearthProcess(home))
        assert code == 1, out
        assert f"pid {first.proc.pid}" in out and str(first.port) in out
        assert f"kill {first.proc.pid}" in out
        # the lock is taken before binding: on the first's own port it is "home busy" too
        code, out = refused(HearthProcess(home, port=first.port))
        assert code == 1 and f"pid {first.proc.pid}" in out and "already in use" not in out
        assert httpx.get(f"{first.url}/health", timeout=10).status_code == 200
        assert runtime_file(home)["pid"] == first.proc.pid
    # another home is another server: no lock is shared
    with HearthProcess(home.parent / "other-home"):
        pass


def test_server_json_says_where_and_goes_away_on_sigterm(home: Path) -> None:
    proc = HearthProcess(home, "--api-key", KEY).start()
    try:
        assert proc.proc is not None
        text = (home / RUNTIME_FILE).read_text(encoding="utf-8")
        assert KEY not in text  # never the key
        info = json.loads(text)
        assert info["pid"] == proc.proc.pid and info["port"] == proc.port
        assert info["host"] == "127.0.0.1" and info["url"] == proc.url
        assert isinstance(info["started"], float)
        found = running_server(home)
        assert found is not None and found.url == proc.url
    finally:
        assert proc.stop(signal.SIGTERM) == 0, proc.output
    assert not (home / RUNTIME_FILE).exists()
    assert (home / LOCK_FILE).exists() and running_server(home) is None


def test_a_killed_servers_stale_file_is_detected_and_replaced(home: Path) -> None:
    make_model(home, "alpha", {}, {"alpha.gguf": FAKE_GGUF})
    first = HearthProcess(home).start()
    assert first.stop(signal.SIGKILL) != 0
    assert runtime_file(home)["port"] == first.port  # left behind by kill -9...
    assert running_server(home) is None  # ...and known to be stale: nobody holds the lock
    listed = hearth(home, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr  # the folder, not the dead server
    assert [m["id"] for m in json.loads(listed.stdout)] == ["alpha"]
    with HearthProcess(home) as second:
        assert second.proc is not None
        info = runtime_file(home)
        assert info["pid"] == second.proc.pid and info["port"] == second.port


def test_cli_commands_find_the_server_on_its_own_port(home: Path) -> None:
    """`--log-level debug` logs each request: proof that the server, not the folder, answered."""
    make_model(home, "alpha", {}, {"alpha.gguf": FAKE_GGUF})
    proc = HearthProcess(home, "--log-level", "debug", "--api-key", KEY).start()
    key = {"HEARTH_API_KEY": KEY}
    try:
        listed = hearth(home, "models", "list", "--json", env=key)
        assert listed.returncode == 0, listed.stderr
        assert [m["id"] for m in json.loads(listed.stdout)] == ["alpha"]
        ps = hearth(home, "ps", "--json", env=key)
        assert ps.returncode == 0 and json.loads(ps.stdout) == [], ps.stdout + ps.stderr
        # the key still comes from the user's settings: without it, the server refuses
        keyless = hearth(home, "models", "list")
        assert keyless.returncode == 1 and "key" in keyless.stderr.lower()
        # `hearth run` uses this server: no second one in its own process
        run = hearth(home, "run", "nope", "hi", env=key)
        assert run.returncode == 1 and "does not exist" in run.stderr
        assert "serving one in this process" not in run.stderr
    finally:
        assert proc.stop() == 0
    assert proc.output.count("GET /v1/models HTTP/1.1") >= 2
    assert "GET /v1/running HTTP/1.1" in proc.output
    assert "GET /v1/models/nope HTTP/1.1" in proc.output


def test_a_held_home_that_does_not_answer_is_an_error_not_a_second_server(home: Path) -> None:
    dead_port = free_port()  # nothing listens there
    with HomeInstance(home) as instance:
        instance.publish("127.0.0.1", dead_port)
        listed = hearth(home, "models", "list")
        assert listed.returncode == 1
        assert f"pid {os.getpid()}" in listed.stderr and str(dead_port) in listed.stderr
        run = hearth(home, "run", "anything", "hi")
        assert run.returncode == 1 and "serving one in this process" not in run.stderr
        assert f"kill {os.getpid()}" in run.stderr


def test_hearth_runs_own_server_holds_the_home_too(home: Path) -> None:
    settings = load_settings(home=home, env={})
    with BackgroundServer(Services.create(settings)) as url:
        found = running_server(home)
        assert found is not None and found.url == url and found.pid == os.getpid()
        code, out = refused(HearthProcess(home))
        assert code == 1 and f"pid {os.getpid()}" in out and url in out
        ps = hearth(home, "ps", "--json")
        assert ps.returncode == 0 and json.loads(ps.stdout) == []
    assert not (home / RUNTIME_FILE).exists()
    with HearthProcess(home):  # released: the home can be served again
        assert running_server(home) is not None


def test_a_corrupt_or_foreign_server_json_is_ignored(home: Path) -> None:
    with HomeInstance(home):
        (home / RUNTIME_FILE).write_text('{"pid": "x", "url": 3}', encoding="utf-8")
        assert running_server(home) is None
        (home / RUNTIME_FILE).write_text("not json", encoding="utf-8")
        assert running_server(home) is None
    (home / RUNTIME_FILE).write_text("{}", encoding="utf-8")
    with HomeInstance(home):  # a server replaces whatever it finds
        assert not (home / RUNTIME_FILE).exists()
