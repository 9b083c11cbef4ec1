"""The real engine: SmolLM2 served by our xllamacpp worker under LlamaCppProcess, plus fake
`binary` engines for the failure paths. Nothing asserts on speed; waits poll a condition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import FOREVER_LOADING, fake_engine, gone, until
from support.smollm import smollm2_path

from hearth.core.errors import EngineError, InvalidParameter
from hearth.engines.llamacpp import LlamaCppProcess
from hearth.engines.params import merge_engine_params
from hearth.engines.remote import RemoteEngine
from hearth.engines.templates import jan_to_jinja, render_chat_template

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SMALL = {"ctx_len": 512, "cpu_threads": 2}
CHAT = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8, "temperature": 0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def engine(params: dict[str, Any], tmp_path: Path, **kw: Any) -> LlamaCppProcess:
    """`binary` comes from the user's engine.json (the trusted base layer), the rest from the
    model's engine_parameters."""
    base = {"binary": params.pop("binary")} if "binary" in params else None
    merged = merge_engine_params(base, {**SMALL, **params}, None)
    model = kw.pop("model_path", smollm2_path())
    return LlamaCppProcess(model, merged, alias="smol-test", log_path=tmp_path / "e.log", **kw)


async def test_worker_serves_chat_and_streams_under_the_alias(tmp_path: Path) -> None:
    proc = engine({}, tmp_path)
    t0 = time.monotonic()
    await proc.start()
    took = time.monotonic() - t0
    mb = proc.rss_bytes() / 1e6
    print(f"\nSmolLM2 via worker: ready in {proc.load_seconds:.2f} s (start() {took:.2f} s)")
    print(f"engine RSS after load: {mb:.0f} MB")
    pid = proc.pid
    assert pid is not None and proc.alive and proc.started_at is not None
    assert proc.base_url == f"http://127.0.0.1:{proc.port}"
    assert proc.rss_bytes() > 10_000_000
    headers = proc.auth_headers  # the engine's per-launch key: it answers nobody else
    async with httpx.AsyncClient(base_url=proc.base_url, timeout=60, headers=headers) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        reply = (await client.post("/v1/chat/completions", json=CHAT)).json()
        assert reply["model"] == "smol-test"
        assert reply["choices"][0]["message"]["content"]
        chunks = []
        async with client.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "stream": True}
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    chunks.append(line[6:])
        assert chunks[-1] == "[DONE]"
        events = [json.loads(c) for c in chunks[:-1]]
        assert {e["model"] for e in events} == {"smol-test"}
        assert "".join(
            e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]
        )

        # The openai-compatible engine, pointed at this real server, passes a request through.
        remote = RemoteEngine.from_params(
            {"base_url": proc.base_url + "/v1", "model": "smol-test"}, model_id="alias-here"
        )
        await remote.check_reachable()
        body = remote.rewrite_body({**CHAT, "model": "alias-here"})
        up = await client.post(f"{remote.base_url}/chat/completions", json=body)
        assert up.json()["model"] == "smol-test"

    await proc.stop()
    assert proc.returncode == 0 and not proc.alive and not proc.unexpected_exit
    assert gone(pid)
    assert await proc.wait_exit() == 0
    log = (tmp_path / "e.log").read_text()
    assert "starting:" in log and "ready in" in log and "stopped by Hearth" in log


async def test_embeddings_and_the_converted_jan_template_in_the_engine(tmp_path: Path) -> None:
    template = "<|im_start|>system\n{system_message}<|im_end|>\n<|im_start|>user\n{prompt}" \
        "<|im_end|>\n<|im_start|>assistant\n{{ literal }} {% raw %}\n"  # fmt: skip
    proc = engine({"embedding": True, "pooling": "mean", "prompt_template": template}, tmp_path)
    await proc.start()
    try:
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ]
        async with httpx.AsyncClient(
            base_url=proc.base_url, timeout=60, headers=proc.auth_headers
        ) as client:
            emb = (await client.post("/v1/embeddings", json={"input": ["a cat", "a dog"]})).json()
            assert len(emb["data"]) == 2
            assert len(emb["data"][0]["embedding"]) == 576  # SmolLM2-135M's n_embd
            applied = (await client.post("/apply-template", json={"messages": messages})).json()
        # llama.cpp's own Jinja engine renders our conversion exactly like Hearth's sandbox does.
        expected = render_chat_template(jan_to_jinja(template), messages)
        assert applied["prompt"] == expected
        assert expected.endswith("<|im_start|>assistant\n{{ literal }} {% raw %}\n")
    finally:
        await proc.stop()


async def test_bad_model_file_is_refused_before_the_engine_starts(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"BAD!magic and private-contents")
    proc = engine({}, tmp_path, model_path=bad)
    with pytest.raises(EngineError) as info:
        await proc.start()
    assert "is not a GGUF model" in info.value.message and str(bad) in info.value.message
    assert "BAD!" not in info.value.message and "private" not in info.value.message
    assert proc.pid is None  # llama.cpp never saw it, so its "invalid magic" cannot be quoted


async def test_a_corrupt_gguf_is_an_engine_error_quoting_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.gguf"
    with open(smollm2_path(), "rb") as model:
        bad.write_bytes(model.read(4096))  # a real header, cut short
    proc = engine({}, tmp_path, model_path=bad)
    with pytest.raises(EngineError) as info:
        await proc.start()
    assert "exited with code 1" in info.value.message
    assert "failed to start" in info.value.message  # the worker's own words, then the log
    assert proc.pid is not None and gone(proc.pid)


def test_worker_rejects_unknown_flags() -> None:
    cmd = [sys.executable, "-m", "hearth.engines.worker", "-m", "x.gguf", "--frobnicate", "3"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unsupported llama-server option(s): --frobnicate 3" in result.stderr


def test_killing_the_parent_leaves_no_orphan(tmp_path: Path) -> None:
    """A parent that started the worker is SIGKILLed: the worker must notice and exit."""
    parent_code = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-m", "hearth.engines.worker",
            "-m", {str(smollm2_path())!r}, "--port", "0", "-c", "256", "-t", "1"],
            stderr=subprocess.DEVNULL)
        print(child.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        worker_pid = int(parent.stdout.readline())
        assert until(lambda: not gone(worker_pid))
        time.sleep(0.5)  # let it get into (or through) loading; either state must work
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert until(lambda: gone(worker_pid), limit=60), "worker survived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def fake_binary(tmp_path: Path, body: str) -> str:
    return fake_engine(tmp_path, "llama-server", body)


async def test_fake_binary_that_exits(tmp_path: Path) -> None:
    binary = fake_binary(
        tmp_path, "import sys\nprint('boom: cannot open', sys.argv[1:3], flush=True)\nsys.exit(3)\n"
    )
    proc = engine({"binary": binary}, tmp_path)
    with pytest.raises(EngineError) as info:
        await proc.start()
    assert "exited with code 3" in info.value.message
    assert "boom: cannot open ['-m'," in info.value.message
    assert proc.command[0] == binary


async def test_fake_binary_that_stalls_is_killed(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, "import time\nprint('hello', flush=True)\ntime.sleep(600)\n")
    proc = engine({"binary": binary}, tmp_path, stall_timeout=1.0)
    with pytest.raises(EngineError) as info:
        await proc.start(timeout=120)
    assert "stalled" in info.value.message and "hello" in info.value.message
    assert proc.pid is not None and gone(proc.pid)


async def test_fake_binary_still_loading_waits_until_the_timeout(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path, FOREVER_LOADING)
    # stall_timeout is shorter than timeout: the 503s count as progress, so it is not "stalled".
    proc = engine({"binary": binary}, tmp_path, stall_timeout=0.5)
    with pytest.raises(EngineError) as info:
        await proc.start(timeout=2.5)
    assert "still loading after 2.5 s" in info.value.message
    assert proc.pid is not None and gone(proc.pid)


async def test_binary_must_be_an_executable(tmp_path: Path) -> None:
    proc = engine({"binary": str(tmp_path / "missing-llama-server")}, tmp_path)
    with pytest.raises(InvalidParameter) as info:
        await proc.start()
    assert info.value.param == "binary"


async def test_unreachable_remote_is_an_engine_error() -> None:
    remote = RemoteEngine.from_params({"base_url": "http://127.0.0.1:9/v1"}, model_id="m")
    with pytest.raises(EngineError, match="not reachable"):
        await remote.check_reachable(timeout=5)
