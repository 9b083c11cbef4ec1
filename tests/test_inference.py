"""Inference through Hearth: a real server over HTTP, the official `openai` client, and real
SmolLM2 engines. One server for the module (engines load in well under a second); generations
are a few tokens, except where a test cuts a long one short on purpose."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import FAKE_GGUF, make_model
from support.engines import FOREVER_LOADING, add_smol, fake_engine, gone, running, status, until
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

HI = [{"role": "user", "content": "Say hi"}]
LONG = {"ignore_eos": True}  # with max_tokens: exactly that many tokens, however long


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inference") / "home"
    (path / "models").mkdir(parents=True)
    add_smol(path, "smol", {"n_parallel": 2}, model_parameters={"max_tokens": 6, "stream": True})
    add_smol(path, "smol-one", {"n_parallel": 1})
    add_smol(path, "smol-embed", {"embedding": True, "pooling": "mean"})
    return path


@pytest.fixture(scope="module")
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> openai.OpenAI:
    return srv.openai()


@pytest.fixture
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http() as h:
        yield h


def test_chat_fills_model_parameters_and_names_the_model(client: openai.OpenAI) -> None:
    # model.json says max_tokens 6 (and stream true, which is the client's call, not a default)
    reply = client.chat.completions.create(model="smol", messages=HI, extra_body=LONG)
    assert reply.object == "chat.completion" and reply.model == "smol"
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content
    reply = client.chat.completions.create(model="smol", messages=HI, max_tokens=3, extra_body=LONG)
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_chat_streams_chunks_under_the_model_id(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smol", messages=HI, max_tokens=8, stream=True, extra_body=LONG
        )
    )
    assert {c.model for c in chunks} == {"smol"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_legacy_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="smol", prompt="Once upon a time", max_tokens=4, extra_body=LONG
    )
    assert reply.model == "smol" and reply.choices[0].text


def test_embeddings_need_embedding_enabled(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="smol", input=["a cat"])
    assert info.value.code == "embeddings_not_enabled"
    assert "engine_parameters.embedding=true" in info.value.message


def test_embeddings(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="smol-embed", input=["a cat", "a dog"])
    assert [d.index for d in reply.data] == [0, 1]
    assert len(reply.data[0].embedding) == 576  # SmolLM2-135M's n_embd


def test_running_models_are_listed_with_process_facts(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    client.chat.completions.create(model="smol", messages=HI, max_tokens=2)
    assert status(http, "smol") == "running"
    assert {m.id: m.model_extra["status"] for m in client.models.list()}["smol"] == "running"
    smol = running(http)["smol"]
    assert smol["object"] == "running_model" and smol["status"] == "running"
    assert not gone(smol["pid"]) and smol["port"] > 0
    assert smol["memory"] > 10_000_000 and smol["memory_estimate"] > 0
    assert smol["requests_served"] >= 1 and smol["active_requests"] == 0
    assert smol["keep_alive"] == 300 and smol["expires_at"] > time.time()
    assert smol["since"] <= time.time() and smol["load_seconds"] > 0
    assert smol["engine_parameters"]["n_parallel"] == 2
    assert Path(smol["log"]).is_file()


def test_request_keep_alive_zero_unloads_after_the_request(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    client.chat.completions.create(
        model="smol-one", messages=HI, max_tokens=2, extra_body={"keep_alive": "10m"}
    )
    first = running(http)["smol-one"]
    assert first["keep_alive"] == 600
    client.chat.completions.create(
        model="smol-one", messages=HI, max_tokens=2, extra_body={"keep_alive": 0}
    )
    assert until(lambda: "smol-one" not in running(http))
    assert until(lambda: gone(first["pid"]))
    assert status(http, "smol-one") == "ready"


def test_request_errors_are_openai_shaped(
    client: openai.OpenAI, http: httpx.Client, home: Path
) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="nope", messages=HI)
    assert nf.value.code == "model_not_found"
    for body, param in [({"messages": HI}, "model"), ({"model": "smol", "keep_alive": "soon"},
                                                       "keep_alive")]:  # fmt: skip
        answer = http.post("/v1/chat/completions", json=body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    answer = http.post("/v1/chat/completions", content=b"{not json")
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]["message"]

    make_model(home, "no-file", {"sources": [{"filename": "x.gguf", "url": "https://e.x/x.gguf"}]})
    with pytest.raises(openai.ConflictError) as nr:
        client.chat.completions.create(model="no-file", messages=HI)
    assert nr.value.code == "model_not_ready" and "x.gguf" in nr.value.message
    make_model(home, "bad-json", "{oops")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="bad-json", messages=HI)
    assert bad.value.code == "model_invalid" and "not valid JSON" in bad.value.message
    # A prompt over the model's trained context (a shorter one over the loaded context grows
    # it: tests/test_context_fit.py) is a 400 naming the size needed.
    with pytest.raises(openai.BadRequestError) as big:
        client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "hello " * 9000}]
        )
    assert "context" in big.value.message and big.value.code == "context_length_exceeded"


def test_failed_start_shows_failed_with_the_engines_words(
    client: openai.OpenAI, http: httpx.Client, home: Path
) -> None:
    make_model(home, "broken", {"name": "Broken"}, {"broken.gguf": FAKE_GGUF})
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="broken", messages=HI)
    assert info.value.status_code == 502 and info.value.code == "engine_error"
    model = http.get("/v1/models/broken").json()
    assert model["status"] == "failed" and "exited with code" in model["error"]
    # Editing model.json (the likely fix) clears the old failure from the listing.
    http.patch("/v1/models/broken", json={"description": "trying again"})
    assert status(http, "broken") == "ready"


def test_remote_models_go_through_the_openai_compatible_engine(
    client: openai.OpenAI,
    http: httpx.Client,
    home: Path,
    srv: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A remote model whose upstream is this very server's "smol": Hearth relaying to Hearth.
    # Where requests go lives in the user's engines/<name>/engine.json, never in a model.json.
    engine_json = home / "engines" / "this-box" / "engine.json"
    engine_json.parent.mkdir(parents=True)
    engine_json.write_text(json.dumps({"type": "openai-compatible", "base_url": f"{srv.url}/v1"}))
    relay = {"engine": "this-box", "format": "api", "model_parameters": {"top_k": 5},
             "engine_parameters": {"model": "smol"}}  # fmt: skip
    make_model(home, "relay", relay)
    assert status(http, "relay") == "ready"
    reply = client.chat.completions.create(
        model="relay", messages=HI, max_tokens=2, extra_body=LONG
    )
    assert reply.model == "smol" and reply.choices[0].message.content  # the upstream's answer
    chunks = list(client.chat.completions.create(model="relay", messages=HI, max_tokens=2,
                                                 stream=True))  # fmt: skip
    assert chunks and {c.model for c in chunks} == {"smol"}
    assert "relay" not in running(http)  # remote models take no local slot

    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    make_model(home, "jan-groq", {"engine": "groq", "format": "api", "settings": {"ctx_len": 8}})
    with pytest.raises(openai.APIStatusError) as no_key:
        client.chat.completions.create(model="jan-groq", messages=HI)
    assert no_key.value.status_code == 502 and "GROQ_API_KEY" in no_key.value.message
    make_model(home, "mystery", {"engine": "tensorrt-llm"})
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="mystery", messages=HI)
    assert unknown.value.code == "unknown_engine" and "base_url" in unknown.value.message


def test_engine_killed_mid_stream_errors_then_restarts(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    client.chat.completions.create(model="smol", messages=HI, max_tokens=1)
    pid = running(http)["smol"]["pid"]
    stream = client.chat.completions.create(
        model="smol", messages=HI, max_tokens=2000, stream=True, extra_body=LONG
    )
    with pytest.raises(openai.APIError) as info:
        for n, _ in enumerate(stream):
            if n == 2:
                os.kill(pid, signal.SIGKILL)
    assert "exited unexpectedly" in info.value.message
    assert until(lambda: status(http, "smol") == "failed")
    error = http.get("/v1/models/smol").json()["error"]
    assert "code -9" in error and "Last engine output" in error
    reply = client.chat.completions.create(model="smol", messages=HI, max_tokens=2, extra_body=LONG)
    assert reply.choices[0].message.content
    assert running(http)["smol"]["pid"] != pid and status(http, "smol") == "running"


def _cancels(log: Path) -> int:
    return log.read_text(errors="replace").count("cancel task") if log.exists() else 0


def test_client_disconnect_cancels_the_generation(srv: ThreadedServer, http: httpx.Client) -> None:
    body = {"model": "smol-one", "messages": HI, "max_tokens": 3000, **LONG}
    http.post("/v1/models/smol-one/start").raise_for_status()
    engine = running(http)["smol-one"]
    log, before = Path(engine["log"]), _cancels(Path(engine["log"]))
    with (
        httpx.Client(base_url=srv.url, timeout=60) as c,
        c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as resp,
    ):
        lines = resp.iter_lines()  # past the engine's prompt progress (`: prompt n/m`)
        assert next(x for x in lines if x and not x.startswith(":")).startswith("data: ")
    # Closing the client's connection closed Hearth's to the engine: llama.cpp cancelled it.
    assert until(lambda: _cancels(log) == before + 1)
    slots = f"http://127.0.0.1:{engine['port']}/slots"
    runner = srv.services.engines.scheduler.runner_for("smol-one")
    assert runner is not None and runner.first is not None
    auth = runner.first.auth_headers  # the engine's own key
    assert until(lambda: httpx.get(slots, headers=auth).json()[0]["is_processing"] is False)
    # Same for a plain (non-streamed) request whose client gives up.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{srv.url}/v1/chat/completions", json=body, timeout=httpx.Timeout(5, read=1))
    assert until(lambda: _cancels(log) == before + 2)
    assert until(lambda: running(http)["smol-one"]["active_requests"] == 0)


def test_start_with_overrides_then_stop(http: httpx.Client, home: Path) -> None:
    started = http.post("/v1/models/smol-one/start", json={"ctx_len": 512, "keep_alive": "1h"})
    assert started.status_code == 200, started.text
    one = started.json()
    assert one["status"] == "running" and one["engine_parameters"]["ctx_len"] == 512
    assert one["keep_alive"] == 3600 and one["load_seconds"] > 0 and not gone(one["pid"])
    # A request uses the model as started (no restart, overrides kept) ...
    http.post("/v1/chat/completions", json={"model": "smol-one", "messages": HI, "max_tokens": 1})
    again = running(http)["smol-one"]
    assert again["pid"] == one["pid"] and again["engine_parameters"]["ctx_len"] == 512
    # ... until model.json's engine parameters change: then it restarts with those.
    http.patch("/v1/models/smol-one", json={"engine_parameters": {"ctx_len": 768}})
    http.post("/v1/chat/completions", json={"model": "smol-one", "messages": HI, "max_tokens": 1})
    third = running(http)["smol-one"]
    assert third["pid"] != one["pid"] and third["engine_parameters"]["ctx_len"] == 768
    assert gone(one["pid"])
    stopped = http.put("/v1/models/smol-one/stop")
    assert stopped.json() == {"id": "smol-one", "object": "model", "stopped": True,
                              "status": "ready"}  # fmt: skip
    assert gone(third["pid"]) and "smol-one" not in running(http)
    assert http.post("/v1/models/smol-one/stop").json()["stopped"] is False
    bad = http.post("/v1/models/smol-one/start", json={"ctx_lenn": 512})
    assert bad.status_code == 400 and "Did you mean 'ctx_len'" in bad.json()["error"]["message"]
    assert http.post("/v1/models/nope/start").status_code == 404


def test_starting_status_and_cancelling_a_start(tmp_path: Path) -> None:
    # A binary comes only from the user's engine.json, so this one gets a home of its own.
    home = tmp_path / "home"
    binary = fake_engine(tmp_path, "llama-server", FOREVER_LOADING)
    engine_json = home / "engines" / "llama-cpp" / "engine.json"
    engine_json.parent.mkdir(parents=True)
    engine_json.write_text(json.dumps({"binary": binary}))
    make_model(home, "slow", {}, {"slow.gguf": FAKE_GGUF})
    with (
        ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv,
        srv.http() as http,
    ):
        _start_then_cancel(srv, http)


def _start_then_cancel(srv: ThreadedServer, http: httpx.Client) -> None:
    answers: list[httpx.Response] = []
    starter = threading.Thread(
        target=lambda: answers.append(httpx.post(f"{srv.url}/v1/models/slow/start", timeout=120))
    )
    starter.start()
    assert until(lambda: status(http, "slow") == "starting")
    assert running(http)["slow"]["status"] == "starting"
    assert http.post("/v1/models/slow/stop").json()["stopped"] is True
    starter.join(timeout=60)
    assert answers[0].status_code == 503 and "unloaded while it was starting" in answers[0].text
    assert status(http, "slow") == "ready" and "slow" not in running(http)


def test_deleting_a_running_model_stops_its_engine(
    client: openai.OpenAI, http: httpx.Client, home: Path
) -> None:
    add_smol(home, "doomed")
    client.chat.completions.create(model="doomed", messages=HI, max_tokens=1)
    pid = running(http)["doomed"]["pid"]
    assert http.delete("/v1/models/doomed").json()["deleted"] is True
    assert gone(pid) and "doomed" not in running(http)
    assert not (home / "models" / "doomed").exists()


def test_docs_describe_the_inference_routes(http: httpx.Client) -> None:
    spec: dict[str, Any] = http.get("/openapi.json").json()
    body = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert json.dumps(body).count("messages") >= 1
    assert "/v1/running" in spec["paths"] and "/v1/models/{model_id}/start" in spec["paths"]
