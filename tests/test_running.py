"""Which models run, and for how long: limits through a real server, engine.json, the CLI's
`run`/`ps`/`stop`, and `hearth serve` leaving no engine behind when it is stopped."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from support.cli import CliRunner
from support.engines import add_smol, gone, running, status, until
from support.server import HearthProcess, ThreadedServer

from hearth.cli.main import main as app
from hearth.cli.run import ChatSession
from hearth.core.config import Settings, load_settings
from hearth.server.serve import bind_socket
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

HI = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2}


def chat(http: httpx.Client, model: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, **HI})


@pytest.fixture
def serve(home: Path) -> Iterator[ThreadedServer]:
    """A server with room for one loaded model, for the scheduler's limits."""
    settings = load_settings(home=home, env={"HEARTH_MAX_LOADED_MODELS": "1"})
    with ThreadedServer(Services.create(settings)) as srv:
        yield srv


def test_one_slot_evicts_the_idle_model_and_engine_json_is_the_base(
    serve: ThreadedServer, home: Path
) -> None:
    add_smol(home, "first")
    add_smol(home, "second")
    engine_json = home / "engines" / "llama-cpp" / "engine.json"
    assert not engine_json.exists()
    with serve.http() as http:
        assert chat(http, "first").status_code == 200
        assert json.loads(engine_json.read_text()) == {"ctx_len": 4096, "n_parallel": 1}
        first = running(http)["first"]["pid"]
        assert chat(http, "second").status_code == 200
        assert set(running(http)) == {"second"} and gone(first)
        assert status(http, "first") == "ready" and status(http, "second") == "running"

        # engine.json applies to every model (model.json wins): a new keep_alive restarts nothing
        engine_json.write_text(json.dumps({"ctx_len": 2048, "keep_alive": "2h"}))
        assert chat(http, "second").status_code == 200
        assert running(http)["second"]["keep_alive"] == 7200
        engine_json.write_text('{"ctx_len": "big"}')
        broken = chat(http, "first")
        assert broken.status_code == 400
        assert str(engine_json) in broken.json()["error"]["message"]
        assert status(http, "first") == "failed"


def test_a_model_over_the_memory_budget_is_refused(home: Path) -> None:
    add_smol(home, "smol")
    settings = load_settings(home=home, env={"HEARTH_MEMORY_BUDGET": "1000000"})
    with ThreadedServer(Services.create(settings)) as srv, srv.http() as http:
        answer = chat(http, "smol")
        assert answer.status_code == 503
        error = answer.json()["error"]
        assert error["code"] == "unavailable" and "memory_budget" in error["message"]
        assert running(http) == {}


def test_served_connections_send_without_nagle_delay(settings: Settings) -> None:
    """Streamed chunks must leave at once: a listening socket made with proto 0 gives accepted
    connections no TCP_NODELAY, which cost ~40 ms per streamed response on kept-alive ones."""
    listener = bind_socket(settings.model_copy(update={"port": 0}))

    async def accepted_nodelay() -> int:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        try:
            return await got
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) == 1


def test_the_keep_alive_setting_takes_durations_too(home: Path) -> None:
    assert load_settings(home=home, env={"HEARTH_KEEP_ALIVE": "10m"}).keep_alive == 600


def test_chat_session_keeps_history_only_for_finished_turns() -> None:
    seen: list[list[dict[str, str]]] = []

    def echo(messages: list[dict[str, str]]) -> Iterator[str]:
        seen.append(messages)
        yield from ("you said: ", messages[-1]["content"])

    session = ChatSession(system="Be brief.")
    assert "".join(session.ask("one", echo)) == "you said: one"
    assert "".join(session.ask("two", echo)) == "you said: two"
    assert [m["content"] for m in seen[1]] == ["Be brief.", "one", "you said: one", "two"]

    def broken(messages: list[dict[str, str]]) -> Iterator[str]:
        yield "half"
        raise RuntimeError("engine died")

    with pytest.raises(RuntimeError):
        list(session.ask("three", broken))
    assert len(session.messages) == 4  # the failed turn is not part of the conversation
    session.clear()
    assert session.messages == []


def test_ps_and_stop_through_the_running_server(home: Path) -> None:
    add_smol(home, "smol")
    cli = CliRunner()
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        env = {"HEARTH_PORT": str(srv.port)}
        result = cli.invoke(app, ["--home", str(home), "ps"], env=env)
        assert result.exit_code == 0 and "No model is loaded" in result.output
        with srv.http() as http:
            assert chat(http, "smol").status_code == 200
            pid = running(http)["smol"]["pid"]
        result = cli.invoke(app, ["--home", str(home), "ps"], env=env)
        assert result.exit_code == 0, result.output
        assert "smol" in result.output and str(pid) in result.output and "in 4m" in result.output
        result = cli.invoke(app, ["--home", str(home), "ps", "--json"], env=env)
        assert json.loads(result.output)[0]["pid"] == pid
        result = cli.invoke(app, ["--home", str(home), "stop", "smol"], env=env)
        assert result.exit_code == 0 and "Stopped smol" in result.output
        assert gone(pid)
        result = cli.invoke(app, ["--home", str(home), "stop", "smol"], env=env)
        assert "Was not loaded: smol" in result.output
    result = cli.invoke(app, ["--home", str(home), "ps"])
    assert result.exit_code == 0 and "No Hearth server is running" in result.output


def _engines_of(home: Path) -> list[psutil.Process]:
    """Live engine processes serving a model from this home."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if alive and str(home) in cmdline and "hearth.engines.worker" in cmdline:
            found.append(proc)
    return found


def test_hearth_run_chats_in_the_terminal_with_a_server_of_its_own(home: Path) -> None:
    add_smol(home, "smol", model_parameters={"max_tokens": 6})
    talk = "Hello!\nTell me more.\n/clear\n/nope\n/exit\n"
    cmd = [sys.executable, "-m", "hearth", "--home", str(home), "run", "smol"]
    done = subprocess.run(cmd, input=talk, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    replies = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(replies) >= 2  # one streamed answer per message
    assert "serving one in this process" in done.stderr
    assert "conversation forgotten" in done.stderr and "Unknown command /nope" in done.stderr
    assert _engines_of(home) == []  # its engine stopped with it

    done = subprocess.run([*cmd[:-1], "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "does not exist" in done.stderr


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_serve_stops_every_engine_on_exit(home: Path, sig: str) -> None:
    add_smol(home, "smol")
    with HearthProcess(home, "--no-starter") as proc:
        with httpx.Client(base_url=proc.url, timeout=120) as http:
            assert chat(http, "smol").status_code == 200
            pid = running(http)["smol"]["pid"]
        assert not gone(pid)
        assert proc.stop(getattr(signal, sig)) == 0, proc.output
    assert until(lambda: gone(pid), limit=10), "the engine outlived hearth serve"
    assert "Hearth stopped." in proc.output
