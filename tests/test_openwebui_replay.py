"""Open WebUI 0.12's native function calling, replayed: the requests it sends a model server on
its OpenAI connection (`POST /v1/chat/completions`) and its Ollama connection (`POST
/api/chat`), a chat's first turn with `tools` and the follow-up carrying the assistant's
`tool_calls` and the tool's result, as recorded in tests/data/agents/openwebui_*.json (where
each part comes from: openwebui_SOURCES.md).

What a user needs from each: a 200 and a well-formed streamed answer, text or a tool call,
that Open WebUI can read (SSE `data:` chunks ending in `[DONE]`; Ollama's NDJSON lines
ending with `done: true`). Two SmolLM2 entries answer them: "hermes", given a template with a
place for tools (tests/support/hermes_template.jinja), and "plain", SmolLM2's own template,
which has none (Hearth's own tool prompt gives it tools: issue 24, point 5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines

DATA = Path(__file__).parent / "data" / "agents"
HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
#: Open WebUI sends no sampling fields of its own: the model's defaults pin what SmolLM2
#: writes (greedy, a seed) and bound it (enough tokens for a whole call).
PINNED = {"temperature": 0, "seed": 42, "max_tokens": 64}
RECORDINGS = ["openai_first", "openai_followup", "ollama_first", "ollama_followup"]
#: what aiohttp sent that httpx sets by itself
TRANSPORT = {"host", "content-length", "accept-encoding"}


def _recording(name: str, model: str) -> dict[str, Any]:
    """A recording with `model` in place of SmolLM2's id (an Ollama connection's ids are the
    names /api/tags gave, with their tag: `smollm2:latest`)."""
    recorded = json.loads((DATA / f"openwebui_{name}.json").read_text(encoding="utf-8"))
    recorded["body"]["model"] = recorded["body"]["model"].replace("smollm2", model)
    return recorded


def _tool_names(recorded: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in recorded["body"]["tools"]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("openwebui") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "hermes", {"chat_template": HERMES}, model_parameters=PINNED)
    add_smol(home, "plain", model_parameters=PINNED)
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


def _replay(srv: ThreadedServer, recorded: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    headers = {k: v for k, v in recorded["headers"].items() if k.lower() not in TRANSPORT}
    with (
        srv.http() as client,
        client.stream(
            recorded["method"], recorded["path"], headers=headers, json=recorded["body"]
        ) as response,
    ):
        lines = list(response.iter_lines())
    return response, lines


def _openai_answer(lines: list[str], tools: set[str]) -> str:
    """The SSE stream as Open WebUI reads it: every event a `data:` JSON chunk, `[DONE]` last;
    returns what was answered, text or the calls' names. Blank lines end SSE events; a line
    that is not `data:` (a `:` comment, a keep-alive) Open WebUI skips
    (utils/middleware.py:4766)."""
    lines = [line for line in lines if line.strip()]
    assert lines[-1] == "data: [DONE]", lines[-3:]
    text, calls, arguments, finish = "", {}, {}, None
    for line in lines[:-1]:
        if line.startswith(":"):  # an SSE comment (a keep-alive)
            continue
        assert line.startswith("data: "), line
        chunk = json.loads(line.removeprefix("data: "))
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                if call.get("id"):
                    calls[call["index"]] = call["function"]["name"]
                    arguments.setdefault(call["index"], "")
                arguments[call["index"]] += call.get("function", {}).get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    assert finish in ("stop", "length", "tool_calls"), finish
    if finish == "tool_calls":
        assert calls and set(calls.values()) <= tools, calls
        for index in calls:
            assert isinstance(json.loads(arguments[index]), dict)
        return " ".join(calls.values())
    assert not calls, calls
    assert text.strip(), "an empty answer"
    return text


def _ollama_answer(lines: list[str], tools: set[str]) -> str:
    """Ollama's NDJSON stream: a JSON object a line, `done: true` on the last one only. Open
    WebUI splits the stream at each newline (utils/misc.py:1291 `stream_chunks_handler`) and
    parses every line, blank ones too, as JSON (utils/response.py:238): a blank line or any
    other keep-alive that is not a whole JSON object would break its stream."""
    while lines and lines[-1] == "":  # the final newline
        lines = lines[:-1]
    chunks = [json.loads(line) for line in lines]
    assert all("error" not in chunk for chunk in chunks), chunks[-1]
    assert chunks[-1]["done"] is True and not any(chunk["done"] for chunk in chunks[:-1])
    assert chunks[-1]["done_reason"] in ("stop", "length")
    text, calls = "", []
    for chunk in chunks:
        message = chunk.get("message") or {}
        assert message.get("role", "assistant") == "assistant"
        text += message.get("content") or ""
        for call in message.get("tool_calls") or []:
            assert call["function"]["name"] in tools, call
            assert isinstance(call["function"]["arguments"], dict), call
            calls.append(call["function"]["name"])
    assert calls or text.strip(), "an empty answer"
    return " ".join(calls) or text


@pytest.mark.parametrize("model", ["hermes", "plain"])
@pytest.mark.parametrize("name", RECORDINGS)
def test_open_webui_native_tools_get_an_answer(srv: ThreadedServer, name: str, model: str) -> None:
    recorded = _recording(name, model)
    response, lines = _replay(srv, recorded)
    assert response.status_code == 200, lines
    if name.startswith("openai"):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert _openai_answer(lines, _tool_names(recorded))
    else:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert _ollama_answer(lines, _tool_names(recorded))


def test_open_webui_lists_the_models(srv: ThreadedServer) -> None:
    """What Open WebUI reads off a connection before a chat: the Ollama version, the models
    (`model`, `name`), the loaded ones (`expires_at` that Python's `fromisoformat` parses, as
    Open WebUI does), and the OpenAI list (`data[].id`)."""
    with srv.http() as client:  # a model loaded, so /api/ps has one to show
        assert client.post("/api/generate", json={"model": "hermes"}).status_code == 200
    recorded = json.loads((DATA / "openwebui_listing.json").read_text(encoding="utf-8"))
    answers = {}
    for request in recorded:
        headers = {k: v for k, v in request["headers"].items() if k.lower() not in TRANSPORT}
        with srv.http() as client:
            response = client.request(request["method"], request["path"], headers=headers)
        assert response.status_code == 200, response.text
        answers[request["path"]] = response.json()
    assert isinstance(answers["/api/version"]["version"], str)
    assert {m["model"] for m in answers["/api/tags"]["models"]} >= {"hermes:latest", "plain:latest"}
    assert all(isinstance(m["name"], str) for m in answers["/api/tags"]["models"])
    loaded = answers["/api/ps"]["models"]
    assert "hermes:latest" in {m["model"] for m in loaded}
    for m in loaded:
        datetime.fromisoformat(m["expires_at"])
    assert {m["id"] for m in answers["/v1/models"]["data"]} >= {"hermes", "plain"}
