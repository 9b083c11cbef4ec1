"""Context that fits (issue 24, point 4): the size a too-long request needs, named in every
dialect; a model reloaded once with a larger context when a request fits its trained context
and the memory budget (unless the `grow_context` setting is off, or Ollama's num_ctx named the
context); and conversations that outgrow even that, under their policy ("drop-oldest" or
"stop"). Real servers and real SmolLM2 engines (trained context 8192), loaded with ctx_len 512
so that "too long" is cheap: a prompt of "word " x N is about N tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines

PINNED = {"temperature": 0, "seed": 42}
TRAINED = 8192
LONG = "word " * 1400  # about 1,400 tokens: over 512, far under 8,192


def _home(tmp: Path, settings: dict[str, object]) -> Path:
    home = tmp / "home"
    (home / "models").mkdir(parents=True)
    (home / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    add_smol(home, "short", {"ctx_len": 512}, model_parameters=PINNED)
    return home


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """grow_context on (the default)."""
    home = _home(tmp_path_factory.mktemp("grow"), {})
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    """grow_context off: a too-long request is a 400, a too-long conversation meets its policy."""
    home = _home(tmp_path_factory.mktemp("fixed"), {"grow_context": False})
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


def _running_ctx(server: ThreadedServer, model: str = "short") -> int:
    with server.http() as http:
        rows = http.get("/v1/running").json()["data"]
    return int(next(r for r in rows if r["id"] == model)["engine_parameters"]["ctx_len"])


def test_a_request_over_the_loaded_context_is_answered_after_one_reload(
    srv: ThreadedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hearth.engines.manager")
    client = srv.openai()
    client.chat.completions.create(model="short", messages=[{"role": "user", "content": "Hi"}],
                                   max_tokens=2)  # fmt: skip
    assert _running_ctx(srv) == 512
    answer = client.chat.completions.create(
        model="short", messages=[{"role": "user", "content": LONG}], max_tokens=4
    )
    assert answer.usage is not None and 512 < answer.usage.prompt_tokens < 2048
    assert _running_ctx(srv) == 2048  # the prompt + max_tokens 4, to the next power of two
    logged = [r.getMessage() for r in caplog.records]
    reloads = [line for line in logged if "reloading with a context" in line]
    assert len(reloads) == 1 and "short" in reloads[0] and "2048" in reloads[0]
    assert "(was 512)" in reloads[0]
    model_json = json.loads((srv.services.settings.models_dir / "short" / "model.json").read_text())
    assert model_json["engine_parameters"]["ctx_len"] == 512  # the running engine's, not saved


def test_a_request_over_the_trained_context_names_both(srv: ThreadedServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        srv.openai().chat.completions.create(
            model="short", messages=[{"role": "user", "content": "word " * 9000}], max_tokens=4
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    message = error["message"]
    assert "trained for 8,192" in message and "The request needs 9," in message


def test_ollama_num_ctx_is_never_grown_and_the_refusal_names_the_size(srv: ThreadedServer) -> None:
    body = {"model": "short", "messages": [{"role": "user", "content": LONG}], "stream": False,
            "options": {"num_ctx": 512, "num_predict": 4}}  # fmt: skip
    with srv.http() as http:
        response = http.post("/api/chat", json=body, timeout=120)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "The request needs 1," in error and "loaded with 512" in error
    assert "num_ctx" in error and "ctx_len=2048" in error
    assert _running_ctx(srv) == 512


def test_with_growth_off_every_dialect_names_the_size_needed(fixed: ThreadedServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        fixed.openai().chat.completions.create(
            model="short", messages=[{"role": "user", "content": LONG}], max_tokens=4
        )
    message = caught.value.body["message"]  # type: ignore[index]
    assert "The request needs 1," in message and "`grow_context` setting" in message
    assert "ctx_len=2048" in message and "16384" not in message
    claude = anthropic.Anthropic(base_url=fixed.url, api_key="none", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(model="short", max_tokens=4,
                               messages=[{"role": "user", "content": LONG}])  # fmt: skip
    assert "The request needs 1," in str(refused.value) and "ctx_len=2048" in str(refused.value)
    with pytest.raises(openai.BadRequestError) as responded:
        fixed.openai().responses.create(model="short", input=LONG, max_output_tokens=16)
    assert "The request needs 1," in str(responded.value)
    assert _running_ctx(fixed) == 512


def _thread(server: ThreadedServer, metadata: dict[str, str] | None = None) -> str:
    """Two old turns of ~260 tokens each, then a short question: over 512 tokens in all."""
    old = [("alpha " * 260, "A."), ("beta " * 260, "B.")]
    messages = []
    for user, assistant in old:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": "Say hi."})
    body = {"model": "short", "instructions": "You are brief.", "messages": messages,
            "parameters": {"max_tokens": 4}, "metadata": metadata or {}}  # fmt: skip
    with server.http() as http:
        return str(http.post("/v1/threads", json=body).json()["id"])


def test_a_conversation_over_the_context_drops_its_oldest_turns(fixed: ThreadedServer) -> None:
    thread = _thread(fixed)
    with fixed.http() as http:
        response = http.post(f"/v1/threads/{thread}/runs", json={"stream": False}, timeout=120)
        assert response.status_code == 200, response.text
        message = response.json()
        stored = http.get(f"/v1/threads/{thread}/messages").json()["data"]
    meta = message["metadata"]
    assert message["status"] == "ready" and meta["context_dropped"] == 2  # the alpha turn
    # What the model saw: the system prompt, the beta turn and the question (~280 tokens), not
    # the alpha turn too (~540, over the 512 context).
    assert 260 < meta["usage"]["prompt_tokens"] < 512 - 4
    assert len(stored) == 6  # the conversation itself is kept whole


def test_a_conversation_under_stop_says_so(fixed: ThreadedServer) -> None:
    thread = _thread(fixed, {"context_overflow": "stop"})
    with fixed.http() as http:
        response = http.post(f"/v1/threads/{thread}/runs", json={"stream": False}, timeout=120)
        stored = http.get(f"/v1/threads/{thread}/messages").json()["data"]
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "no longer fits" in error["message"] and '"stop"' in error["message"]
    assert stored[-1]["status"] == "error" and "no longer fits" in json.dumps(stored[-1])


def test_a_conversation_whose_latest_message_alone_is_too_long(fixed: ThreadedServer) -> None:
    body = {"model": "short", "messages": [{"role": "user", "content": LONG}]}
    with fixed.http() as http:
        thread = http.post("/v1/threads", json=body).json()["id"]
        response = http.post(f"/v1/threads/{thread}/runs", json={"stream": False}, timeout=120)
    assert response.status_code == 400
    assert "latest message does not fit" in response.json()["error"]["message"]
