"""Issue 22, point 2, end to end: a schema over Hearth's limits is a 400 in the caller's dialect
on every face (before any engine sees it), a realistic schema is answered, and a client that
leaves while the engine is still compiling its schema or reading its prompt frees the engine's
one slot. A real server, the official clients, a real SmolLM2 engine (`n_parallel` 1)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from support.engines import add_smol, running, until
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
PINNED = {"temperature": 0, "seed": 42}
ASK = [{"role": "user", "content": "Pick a colour."}]
#: The issue's schema: one property, an enum of 100,000 strings (a few MB of JSON).
HUGE = {"type": "object", "properties": {"v": {"enum": [f"colour {i}" for i in range(100_000)]}}}
#: Costly but allowed: nearly the most enum values, and a free string the model may fill to
#: its last token.
COSTLY = {
    "type": "object",
    "properties": {
        "v": {"enum": [f"colour number {i}" for i in range(1_900)]},
        "why": {"type": "string"},
    },
    "required": ["v", "why"],
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("schemas") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol", {"chat_template": HERMES, "n_parallel": 1}, model_parameters=PINNED)
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=300) as h:
        yield h


def _tool(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "pick", "parameters": schema}}


def _openai_error(caught: pytest.ExceptionInfo[openai.BadRequestError]) -> dict[str, Any]:
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "schema_too_large", body
    assert "2,000 in all" in body["message"] and "Limits on schemas" in body["message"]
    return body


def test_openai_faces_refuse_the_huge_enum_before_any_engine(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    client = srv.openai()
    fmt = {"type": "json_schema", "json_schema": {"name": "colour", "schema": HUGE}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smol", messages=ASK, response_format=fmt)  # type: ignore[arg-type]
    assert _openai_error(caught)["param"] == "response_format.json_schema.schema"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="smol",
            messages=ASK,
            tools=[_tool(HUGE)],
            tool_choice="required",  # type: ignore[list-item]
        )
    assert _openai_error(caught)["param"] == "tools[0].function.parameters"
    text = {"format": {"type": "json_schema", "name": "colour", "schema": HUGE}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="smol", input="Pick a colour.", text=text)  # type: ignore[arg-type]
    _openai_error(caught)
    # llama.cpp's own fields, on chat and legacy completions
    for path, extra in [
        ("/v1/completions", {"prompt": "Colour:", "json_schema": HUGE}),
        ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_object",
                                                                       "schema": HUGE}}),
        ("/v1/chat/completions", {"messages": ASK, "grammar": 'root ::= "a"' * 30_000}),
    ]:  # fmt: skip
        refused = http.post(path, json={"model": "smol", **extra})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "schema_too_large"
    assert "smol" not in running(http)  # refused before anything loaded


def test_ollama_and_anthropic_faces_refuse_it_in_their_own_shape(srv: ThreadedServer) -> None:
    client = srv.keep(ollama.Client(host=srv.url))
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="smol", messages=ASK, format=HUGE)
    assert caught.value.status_code == 400 and "2,000 in all" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate(model="smol", prompt="Pick a colour.", format=HUGE)
    assert caught.value.status_code == 400 and "Limits on schemas" in caught.value.error
    claude = srv.keep(anthropic.Anthropic(base_url=srv.url, api_key="unused", max_retries=0))
    tool = {"name": "pick", "description": "Pick one.", "input_schema": HUGE}
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.messages.create(
            model="smol",
            max_tokens=8,
            messages=ASK,
            tools=[tool],
            tool_choice={"type": "any"},  # type: ignore[list-item]
        )
    error = refused.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "The parameter schema of tool 'pick'" in error["error"]["message"]
    with httpx.Client(base_url=srv.url) as http:
        assert "smol" not in running(http)


def test_a_schema_within_the_limits_is_answered(srv: ThreadedServer) -> None:
    schema = {
        "type": "object",
        "properties": {
            "colour": {"enum": ["red", "green", "blue"]},
            "shade": {"anyOf": [{"type": "string", "maxLength": 12}, {"type": "integer"}]},
        },
        "required": ["colour", "shade"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "colour", "schema": schema}}
    answer = srv.openai().chat.completions.create(
        model="smol",
        messages=ASK,
        response_format=fmt,
        max_tokens=120,  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "stop"
    assert json.loads(answer.choices[0].message.content or "")["colour"] in ("red", "green", "blue")


def _cancels(log: Path) -> int:
    return log.read_text(errors="replace").count("cancel task") if log.exists() else 0


def _leave_early(srv: ThreadedServer, http: httpx.Client, body: dict[str, Any]) -> None:
    """Send `body` on a raw connection, wait until the engine has it, and hang up."""
    host, port = srv.url.removeprefix("http://").split(":")
    raw = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + raw)
        assert until(lambda: running(http).get("smol", {}).get("active_requests") == 1)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_during_the_prompt_frees_the_slot(
    srv: ThreadedServer, http: httpx.Client, stream: bool
) -> None:
    http.post("/v1/models/smol/start").raise_for_status()
    log = Path(running(http)["smol"]["log"])
    before = _cancels(log)
    # a new prompt each time (the engine's prompt cache would skip reading a repeated one)
    prompt = f"{stream}: " + "Describe every colour you know, one by one, in detail. " * 60
    fmt = {"type": "json_schema", "json_schema": {"name": "colour", "schema": COSTLY}}
    body = {"model": "smol", "messages": [{"role": "user", "content": prompt}], "stream": stream,
            "response_format": fmt, "max_tokens": 4000}  # fmt: skip
    _leave_early(srv, http, body)
    # Hearth closed its connection to the engine, and llama.cpp cancelled the task...
    assert until(lambda: _cancels(log) == before + 1, limit=300)
    assert until(lambda: running(http)["smol"]["active_requests"] == 0)
    # ... so the one slot takes the next request.
    small = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    answer = http.post("/v1/chat/completions", json=small)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["role"]
