"""Engines are reachable only through Hearth, and leave nothing behind.

Against real processes: a SmolLM2 engine that Hearth started refuses anyone without its
per-launch key, serves no web page and echoes no foreign Origin, while Hearth's own proxy
still answers; a user's `binary` gets the key, no UI and none of the environment that would
move its listener; engine flags cannot change where it listens; groups a SIGKILLed Hearth
left behind are swept at the next start; a file that is not a GGUF never reaches llama.cpp
and its bytes never reach an error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from support.engines import add_smol, fake_engine, gone, running, until
from support.server import ThreadedServer
from support.smollm import cache_dir, smollm2_path

from hearth.core.config import load_settings
from hearth.core.errors import EngineError, InvalidParameter
from hearth.engines.llamacpp import LlamaCppProcess, check_launch_args
from hearth.engines.orphans import EngineRecord, record_engine, start_time, sweep_orphans
from hearth.engines.params import merge_engine_params
from hearth.engines.upstream import EngineClient
from hearth.services import Services

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
CHAT = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2}
EVIL = "http://evil.example"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def srv(home: Path) -> Iterator[ThreadedServer]:
    add_smol(home, "smol")  # linked from the test cache, which import_dirs lets models use
    settings = load_settings(home=home, env={"HEARTH_IMPORT_DIRS": str(cache_dir())})
    with ThreadedServer(Services.create(settings)) as server:
        yield server


def _engine_url_and_key(srv: ThreadedServer) -> tuple[str, dict[str, str]]:
    runner = srv.services.engines.scheduler.runner_for("smol")
    assert runner is not None and runner.first is not None
    return runner.first.base_url, runner.first.auth_headers


def test_hearth_answers_but_its_engine_refuses_everyone_else(srv: ThreadedServer) -> None:
    reply = srv.openai().chat.completions.create(model="smol", **CHAT)
    assert reply.model == "smol" and reply.choices[0].message.content
    with srv.http() as http:
        engine = running(http)["smol"]
    base, auth = _engine_url_and_key(srv)
    assert base == f"http://127.0.0.1:{engine['port']}"
    key = auth["Authorization"].removeprefix("Bearer ")
    assert len(key) >= 40 and key not in " ".join(psutil.Process(engine["pid"]).cmdline())
    with httpx.Client(base_url=base, timeout=60) as direct:
        for method, path in [
            ("POST", "/v1/chat/completions"),
            ("POST", "/completion"),
            ("GET", "/props"),
            ("GET", "/slots"),
        ]:
            body = CHAT if method == "POST" else None
            refused = direct.request(method, path, json=body, headers={"Origin": EVIL})
            assert refused.status_code == 401, (path, refused.text)
            _no_cors_for_evil(refused)
            wrong = direct.request(method, path, json=body, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401, path
        page = direct.get("/", headers={"Accept": "text/html", "Accept-Encoding": "gzip"})
        assert page.status_code == 404 and "text/html" not in page.headers.get("content-type", "")
        preflight = direct.options(
            "/v1/chat/completions",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        )
        _no_cors_for_evil(preflight)
        allowed = direct.post("/v1/chat/completions", json=CHAT, headers={**auth, "Origin": EVIL})
        assert allowed.status_code == 200 and allowed.json()["model"] == "smol"
        _no_cors_for_evil(allowed)


def _no_cors_for_evil(resp: httpx.Response) -> None:
    assert resp.headers.get("access-control-allow-origin") != EVIL
    assert resp.headers.get("access-control-allow-credentials", "").lower() != "true"


async def test_a_non_gguf_model_file_never_reaches_the_engine_nor_the_error(
    tmp_path: Path,
) -> None:
    secret = "hunter2-TOP-SECRET-do-not-quote"
    fake = tmp_path / "notes.gguf"
    fake.write_text(f"{secret}\n", encoding="utf-8")
    params = merge_engine_params(None, {"ctx_len": 256}, None)
    proc = LlamaCppProcess(fake, params, alias="fake", log_path=tmp_path / "e.log")
    with pytest.raises(EngineError) as info:
        await proc.start()
    message = info.value.message
    assert "not a GGUF model" in message and str(fake) in message
    assert secret not in message and secret[:4] not in message
    assert proc.pid is None  # nothing was started
    mm = LlamaCppProcess(smollm2_path(), {**params, "mmproj": str(fake)}, alias="mm")
    with pytest.raises(EngineError, match="multimodal projector") as info:
        await mm.start()
    assert secret[:4] not in info.value.message and mm.pid is None
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    with pytest.raises(EngineError, match="not a regular file"):
        await LlamaCppProcess(fifo, params, alias="fifo").start()  # refused, never blocks


@pytest.mark.parametrize(
    "extra",
    [
        ["--host", "0.0.0.0"],
        ["--port=8080"],
        ["--api-key", "mine"],
        ["--api-key-file", "/tmp/k"],
        ["--ui"],
        ["--webui-mcp-proxy"],
        ["--cors-origins", "*"],
        ["--path", "/"],
        ["--mmproj", "/etc/passwd"],
    ],
)
def test_no_engine_flag_changes_where_it_listens_or_who_may_call(extra: list[str]) -> None:
    own = ["-m", "m.gguf", "--host", "127.0.0.1", "--port", "1234", "--mmproj", "x.gguf"]
    with pytest.raises(InvalidParameter) as info:
        check_launch_args([*extra, *own])
    assert info.value.param == "extra_args" and "only through Hearth" in info.value.message
    check_launch_args(["--no-mmap", "-b", "64", *own])  # tuning flags pass


@pytest.mark.parametrize("argv", [["--host", "0.0.0.0"], ["--port", "1", "--port", "2"]])
def test_the_worker_listens_on_loopback_only(argv: list[str]) -> None:
    cmd = [sys.executable, "-m", "hearth.engines.worker", "-m", "x.gguf", *argv]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "loopback only" in result.stderr or "given twice" in result.stderr


#: A user's `llama-server`: checks the key llama.cpp reads from LLAMA_API_KEY (or, with
#: FAKE_IGNORE_KEY, serves anyone), starts a helper in its own process group, and reports its
#: environment and the helper's pid in FAKE_ENGINE_OUT.
FAKE_LLAMA_SERVER = """
    import json, os, subprocess, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    helper = subprocess.Popen(["sleep", "600"])
    names = ["LLAMA_API_KEY", "LLAMA_ARG_UI", "LLAMA_ARG_WEBUI", "LLAMA_ARG_NO_WEBUI",
             "LLAMA_ARG_CORS_ORIGINS", "LLAMA_ARG_CORS_CREDENTIALS", "LLAMA_ARG_HOST",
             "AIP_MODE", "HEARTH_API_KEY", "HEARTH_ENGINE_KEY", "HF_TOKEN", "KEEP_ME"]
    out = os.environ["FAKE_ENGINE_OUT"]
    with open(out + ".part", "w") as f:
        json.dump({"helper": helper.pid, "argv": sys.argv,
                   "env": {n: os.environ.get(n) for n in names}}, f)
    os.replace(out + ".part", out)
    key = os.environ.get("LLAMA_API_KEY", "")
    open_door = bool(os.environ.get("FAKE_IGNORE_KEY"))
    class Engine(BaseHTTPRequestHandler):
        def answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ok = open_door or self.path == "/health" or (
                key and self.headers.get("Authorization") == "Bearer " + key)
            body = b'{"status": "ok"}' if ok else b'{"error": {"message": "Invalid API Key"}}'
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = answer
        def log_message(self, *args):
            pass
    port = int(sys.argv[sys.argv.index("--port") + 1])
    HTTPServer(("127.0.0.1", port), Engine).serve_forever()
"""


def _binary_params(binary: str) -> dict[str, Any]:
    """`binary` belongs to the user's engine.json (the trusted base layer)."""
    return merge_engine_params({"binary": binary}, {"ctx_len": 256}, None)


async def test_a_users_binary_gets_the_key_and_none_of_the_risky_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "seen.json"
    monkeypatch.setenv("FAKE_ENGINE_OUT", str(out))
    for name, value in [("LLAMA_ARG_HOST", "0.0.0.0"), ("AIP_MODE", "PREDICTION"),
                        ("HEARTH_API_KEY", "hearth-secret"), ("LLAMA_ARG_UI", "1"),
                        ("HF_TOKEN", "hf_secret"), ("KEEP_ME", "yes")]:  # fmt: skip
        monkeypatch.setenv(name, value)
    binary = fake_engine(tmp_path, "llama-server", FAKE_LLAMA_SERVER)
    proc = LlamaCppProcess(smollm2_path(), _binary_params(binary), alias="bin", env={})
    await proc.start(timeout=60)
    try:
        seen = json.loads(out.read_text())
        key = proc.auth_headers["Authorization"].removeprefix("Bearer ")
        assert seen["env"] == {
            "LLAMA_API_KEY": key, "LLAMA_ARG_UI": "0", "LLAMA_ARG_WEBUI": "0",
            "LLAMA_ARG_NO_WEBUI": "1", "LLAMA_ARG_CORS_ORIGINS": proc.base_url,
            "LLAMA_ARG_CORS_CREDENTIALS": "0", "LLAMA_ARG_HOST": None, "AIP_MODE": None,
            "HEARTH_API_KEY": None, "HEARTH_ENGINE_KEY": None, "HF_TOKEN": None,
            "KEEP_ME": "yes",
        }  # fmt: skip
        assert key not in " ".join(seen["argv"])
        client = EngineClient()
        try:
            host, port = "127.0.0.1", int(proc.port or 0)
            body = json.dumps(CHAT).encode()
            without = await client.post(host, port, "/v1/chat/completions", body, {})
            assert without.status_code == 401
            await without.aclose()
            auth = proc.auth_head
            with_key = await client.post(host, port, "/v1/chat/completions", body, {}, auth)
            assert with_key.status_code == 200
            await with_key.aclose()
        finally:
            client.close()
    finally:
        await proc.stop()
    assert until(lambda: gone(seen["helper"]))  # stopping an engine stops its whole process group


async def test_an_engine_that_serves_without_the_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ENGINE_OUT", str(tmp_path / "seen.json"))
    monkeypatch.setenv("FAKE_IGNORE_KEY", "1")
    binary = fake_engine(tmp_path, "llama-server", FAKE_LLAMA_SERVER)
    proc = LlamaCppProcess(smollm2_path(), _binary_params(binary), alias="old")
    with pytest.raises(EngineError, match="lacked Hearth's key") as info:
        await proc.start(timeout=60)
    assert "LLAMA_API_KEY" in info.value.message
    helper = json.loads((tmp_path / "seen.json").read_text())["helper"]
    assert proc.pid is not None and gone(proc.pid) and until(lambda: gone(helper))


#: A stand-in for Hearth: starts the fake llama-server with a registry, then waits to be killed.
FAKE_HEARTH = """
    import asyncio, sys
    from hearth.engines.llamacpp import LlamaCppProcess
    from hearth.engines.params import merge_engine_params
    async def main():
        params = merge_engine_params({{"binary": {binary!r}}}, {{"ctx_len": 256}}, None)
        proc = LlamaCppProcess({model!r}, params, alias="orphan", registry_dir={registry!r})
        await proc.start(timeout=60)
        print(proc.pid, flush=True)
        await asyncio.sleep(600)
    asyncio.run(main())
"""


def test_groups_a_killed_hearth_left_behind_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, registry = tmp_path / "seen.json", tmp_path / "logs" / "engines"
    monkeypatch.setenv("FAKE_ENGINE_OUT", str(out))
    binary = fake_engine(tmp_path, "llama-server", FAKE_LLAMA_SERVER)
    code = FAKE_HEARTH.format(binary=binary, model=str(smollm2_path()), registry=str(registry))
    hearth = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE)
    helper: int | None = None
    try:
        assert hearth.stdout is not None
        engine_pid = int(hearth.stdout.readline())
        helper = int(json.loads(out.read_text())["helper"])
        record = json.loads((registry / f"{engine_pid}.json").read_text())
        assert record["pgid"] == engine_pid and record["model_id"] == "orphan"
        assert record["owner_pid"] == hearth.pid
        assert sweep_orphans(registry) == [] and not gone(helper)  # its Hearth still runs
        os.kill(hearth.pid, signal.SIGKILL)
        hearth.wait()
        assert until(lambda: gone(engine_pid))  # PR_SET_PDEATHSIG reaches the direct child...
        assert not gone(helper)  # ...but not what it started: the orphan this is about
        swept = sweep_orphans(registry)
        assert [r.pgid for r in swept] == [engine_pid]
        assert until(lambda: gone(helper)) and list(registry.iterdir()) == []
    finally:
        if hearth.poll() is None:
            hearth.kill()
            hearth.wait()
        if hearth.stdout is not None:
            hearth.stdout.close()
        if helper is not None and not gone(helper):
            os.kill(helper, signal.SIGKILL)


def test_a_record_whose_pid_now_names_another_process_kills_nothing(tmp_path: Path) -> None:
    registry = tmp_path / "engines"
    dead_owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                capture_output=True, text=True, check=True)  # fmt: skip
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        created = start_time(other.pid)
        assert created is not None
        for shift, killed in ((1000.0, False), (0.0, True)):
            record = EngineRecord(other.pid, other.pid, created + shift, "m",
                                  int(dead_owner.stdout), 1.0)  # fmt: skip
            registry.mkdir(parents=True, exist_ok=True)
            (registry / f"{other.pid}.json").write_text(json.dumps(asdict(record)))
            (registry / ".junk.tmp").write_text("half a record")
            assert [r.pid for r in sweep_orphans(registry)] == ([other.pid] if killed else [])
            assert list(registry.iterdir()) == []
            assert until(lambda: other.poll() is not None) if killed else other.poll() is None
    finally:
        if other.poll() is None:
            other.kill()
        other.wait()
    assert record_engine(registry, pid=other.pid, model_id="m") is None  # gone: no record
