"""Streams that wait are kept alive, in every dialect (server/respond.py: `stream_answer`).

A real server and a real SmolLM2 engine, spoken to through the real clients. The pace is
lowered for the tests (`respond.PACE`), which makes the paths deterministic without a clock:
with `first` 0 every streamed request commits its stream before its answer can have opened,
so its first frame is the dialect's keep-alive, and whatever the opening then says (an answer,
a refusal) comes after it; with `every` 10 ms, an engine reading a prompt of a few
hundred tokens (which takes far longer) leaves the stream silent for more than one beat, so a
keep-alive goes out between the head and the first token. No assertion measures time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.server import respond
from hearth.server.respond import Pace
from hearth.services import Services

pytestmark = pytest.mark.slow  # a SmolLM2 engine

COLD = {"temperature": 0, "seed": 42}
HELLO = [{"role": "user", "content": "Say hello."}]
WAITING = Pace(first=0.0, every=0.01)  # commit at once: the answer cannot be open yet
READING = Pace(first=3600.0, every=0.01)  # open in time, then a beat while the prompt is read


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("keepalive") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol", {"ctx_len": 2048}, model_parameters=COLD)
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=300, trust_env=False) as client:
        yield client


@pytest.fixture
def waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(respond, "PACE", WAITING)


@pytest.fixture
def reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(respond, "PACE", READING)


def frames(http: httpx.Client, path: str, body: dict[str, Any]) -> list[str]:
    """The stream's frames as sent: SSE events (blank-line separated) or NDJSON lines."""
    with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        raw = response.read().decode()
    if path.startswith("/api/"):
        return [line for line in raw.split("\n") if line]
    return [frame for frame in raw.split("\n\n") if frame]


def data(frame: str) -> dict[str, Any]:
    line = next(line for line in frame.split("\n") if line.startswith("data: "))
    return json.loads(line[6:])  # type: ignore[no-any-return]


def long_prompt(tag: str) -> str:
    """A few hundred tokens no cache holds (each test its own `tag`)."""
    lines = (f"Line {i} of the {tag} notes: the river was calm." for i in range(40))
    return f"{tag}. " + " ".join(lines)


# ---- a request that waits for its answer: committed, then kept alive ---------------------------


def test_openai_chat_waits_alive(srv: ThreadedServer, http: httpx.Client, waiting: None) -> None:
    body = {"model": "smol", "messages": HELLO, "max_tokens": 8, "stream": True}
    sent = frames(http, "/v1/chat/completions", body)
    assert sent[0] == ": keep-alive"
    chunks = [data(f) for f in sent if f.startswith("data: ") and f != "data: [DONE]"]
    assert chunks and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert sent[-1] == "data: [DONE]"
    stream = srv.openai().chat.completions.create(
        model="smol",
        messages=HELLO,
        max_tokens=8,
        stream=True,  # type: ignore[arg-type]
    )
    pieces = list(stream)  # the SDK skips the comments
    text = "".join(p.choices[0].delta.content or "" for p in pieces if p.choices)
    assert text and pieces[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_completions_wait_alive(
    srv: ThreadedServer, http: httpx.Client, waiting: None
) -> None:
    body = {"model": "smol", "prompt": "Once upon a time", "max_tokens": 8, "stream": True}
    assert frames(http, "/v1/completions", body)[0] == ": keep-alive"
    stream = srv.openai().completions.create(
        model="smol", prompt="Once upon a time", max_tokens=8, stream=True
    )
    pieces = list(stream)
    assert "".join(p.choices[0].text for p in pieces if p.choices)
    assert pieces[-1].choices[0].finish_reason in ("stop", "length")


def test_anthropic_waits_alive(srv: ThreadedServer, http: httpx.Client, waiting: None) -> None:
    body = {"model": "smol", "max_tokens": 8, "messages": HELLO, "stream": True}
    sent = frames(http, "/v1/messages", body)
    assert sent[0] == 'event: ping\ndata: {"type":"ping"}'
    kinds = [f.split("\n")[0].removeprefix("event: ") for f in sent]
    assert kinds[kinds.index("message_start") :].count("message_stop") == 1
    client = srv.keep(anthropic.Anthropic(base_url=srv.url, api_key="x", max_retries=0))
    with client.messages.stream(model="smol", max_tokens=8, messages=HELLO) as stream:
        message = stream.get_final_message()  # `ping` before message_start is skipped
    assert message.content and message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_responses_wait_alive(srv: ThreadedServer, http: httpx.Client, waiting: None) -> None:
    body = {"model": "smol", "input": "Say hello.", "max_output_tokens": 8, "stream": True}
    sent = frames(http, "/v1/responses", body)
    assert sent[0] == ": keep-alive"
    assert next(f for f in sent if f != ": keep-alive").startswith("event: response.created")
    events = list(
        srv.openai().responses.create(
            model="smol", input="Say hello.", max_output_tokens=8, stream=True
        )
    )
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_ollama_waits_alive(srv: ThreadedServer, waiting: None) -> None:
    client = srv.keep(ollama.Client(host=srv.url))
    options = {"num_predict": 8, "temperature": 0, "seed": 42}
    parts = list(client.chat(model="smol", messages=HELLO, stream=True, options=options))
    assert parts[0].message.content == "" and parts[0].done is False  # the keep-alive
    assert "".join(p.message.content or "" for p in parts) and parts[-1].done is True
    pieces = list(client.generate(model="smol", prompt="Hello", stream=True, options=options))
    assert pieces[0].response == "" and pieces[0].done is False
    assert "".join(p.response for p in pieces) and pieces[-1].done is True
    assert pieces[-1].eval_count and pieces[-1].eval_count <= 8


def test_thread_run_waits_alive(http: httpx.Client, waiting: None) -> None:
    thread = http.post(
        "/v1/threads", json={"model": "smol", "messages": HELLO, "parameters": {"max_tokens": 8}}
    ).json()
    sent = frames(http, f"/v1/threads/{thread['id']}/runs", {})
    assert sent[0] == ": keep-alive"
    chunks = [data(f) for f in sent if f.startswith("data: ") and f != "data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    listed = http.get(f"/v1/threads/{thread['id']}/messages", params={"order": "asc"}).json()
    answer = listed["data"][-1]
    assert text and answer["role"] == "assistant" and answer["status"] == "ready"
    assert answer["content"][0]["text"]["value"] == text


# ---- a refusal after the stream is committed: the dialect's in-stream error --------------------


def test_refusal_after_commit_is_an_error_event(srv: ThreadedServer, waiting: None) -> None:
    """Each client raises the error it reads in the stream (a 200), not an error status."""
    with pytest.raises(openai.APIError, match="nope") as chat:
        list(
            srv.openai().chat.completions.create(
                model="nope",
                messages=HELLO,
                stream=True,  # type: ignore[arg-type]
            )
        )
    assert not isinstance(chat.value, openai.APIStatusError)  # in the stream, not a 404
    with pytest.raises(openai.APIError, match="nope") as responses:
        list(srv.openai().responses.create(model="nope", input="Hi", stream=True))
    assert not isinstance(responses.value, openai.APIStatusError)
    client = srv.keep(anthropic.Anthropic(base_url=srv.url, api_key="x", max_retries=0))
    with (
        pytest.raises(anthropic.APIStatusError, match="nope") as raised,
        client.messages.stream(model="nope", max_tokens=8, messages=HELLO) as stream,
    ):
        stream.get_final_message()
    assert raised.value.status_code == 200  # the stream's status: the error came in it
    assert raised.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    # the engine's own refusal: a prompt longer than the model was trained for (8192 tokens)
    client_ollama = srv.keep(ollama.Client(host=srv.url))
    huge = [{"role": "user", "content": "tea " * 9000}]
    with pytest.raises(ollama.ResponseError, match="context") as refused:
        list(client_ollama.chat(model="smol", messages=huge, stream=True))
    assert refused.value.status_code == -1  # read from an `{"error": ...}` line, not a status


# ---- an engine reading a long prompt: kept alive between the head and the first token ---------


def test_prompt_read_keeps_alive(srv: ThreadedServer, http: httpx.Client, reading: None) -> None:
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": long_prompt("openai")}],
        "max_tokens": 4,
        "stream": True,
    }
    sent = frames(http, "/v1/chat/completions", body)
    first = next(i for i, f in enumerate(sent) if f.startswith("data: "))
    before = set(sent[:first])
    assert ": keep-alive" in before  # Hearth's beat; beside it the engine's progress comments
    assert all(f.startswith(":") for f in before)  # comments only (llama.cpp's own too)
    assert sent[-1] == "data: [DONE]"
    message = {"role": "user", "content": long_prompt("anthropic")}
    anthropic_body = {"model": "smol", "max_tokens": 4, "messages": [message], "stream": True}
    kinds = [f.split("\n")[0] for f in frames(http, "/v1/messages", anthropic_body)]
    assert kinds[0] == "event: message_start" and kinds[-1] == "event: message_stop"
    start = kinds.index("event: content_block_start")
    assert kinds[1:start].count("event: ping") >= 2  # Hearth's own, beside the one it always sent


def test_in_time_refusals_keep_their_status(http: httpx.Client) -> None:
    """The default pace: a request refused at once is refused with its status, as always."""
    body = {"model": "nope", "messages": HELLO, "stream": True}
    assert http.post("/v1/chat/completions", json=body).status_code == 404
    anthropic_body = {**body, "max_tokens": 8}
    refused = http.post("/v1/messages", json=anthropic_body)
    assert refused.status_code == 404 and refused.json()["error"]["type"] == "not_found_error"


def test_refusal_body_paths() -> None:
    """`respond._passed_error`: an upstream's error body read for a stream past its status."""
    from fastapi import Response

    passed = respond._passed_error(Response(b'{"error": {"message": "slow down"}}', 429))
    assert passed.message == "slow down" and passed.status == 429
    assert "answered 502" in respond._passed_error(Response(b"<html>", 502)).message


# ---- the engine's prompt progress: comments on OpenAI's streams, raw for a client that asked ---

QUIET = Pace(first=3600.0, every=3600.0)  # no beat of Hearth's own: only the engine's progress


def test_prompt_progress_becomes_comments(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(respond, "PACE", QUIET)
    message = {"role": "user", "content": long_prompt("progress")}
    body = {"model": "smol", "messages": [message], "max_tokens": 4, "stream": True}
    sent = frames(http, "/v1/chat/completions", body)
    first = next(i for i, f in enumerate(sent) if f.startswith("data: "))
    read = [f.removeprefix(": prompt ").split("/") for f in sent[:first]]
    assert read and all(len(r) == 2 and 0 <= int(r[0]) <= int(r[1]) > 0 for r in read), sent[:first]
    assert not any("prompt_progress" in f for f in sent)
    assert sent[-1] == "data: [DONE]"
    legacy = {"model": "smol", "prompt": long_prompt("legacy"), "max_tokens": 4, "stream": True}
    sent = frames(http, "/v1/completions", legacy)  # an answer Hearth composes (legacy shape)
    assert not any("prompt_progress" in f for f in sent) and sent[-1] == "data: [DONE]"
    chunks = [data(f) for f in sent if f.startswith("data: {")]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    # a client that asked for it itself gets the engine's chunks as they are
    asked = {**body, "messages": [{**message, "content": long_prompt("asked")}]}
    sent = frames(http, "/v1/chat/completions", {**asked, "return_progress": True})
    assert "prompt_progress" in data(sent[0]) and not any(f.startswith(": prompt") for f in sent)
