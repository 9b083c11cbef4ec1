"""OpenAI's Responses API (`POST /v1/responses`) through Hearth: a real server, the official
`openai` client, a real SmolLM2 engine. One server for the module; answers are kept short, and
where a test needs status "completed" it asks for a tiny JSON schema, which the engine's grammar
finishes in a few tokens (then only end-of-generation is allowed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

# Qwen2.5's tool template (Hermes-style <tool_call> tags), for a model whose own has no tools.
HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
OK_SCHEMA = {
    "type": "json_schema",
    "name": "answer",
    "schema": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    },
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("responses") / "home"
    (path / "models").mkdir(parents=True)
    # sampling pinned for every request: a 3-token answer cannot end early by chance
    pinned = {"temperature": 0, "seed": 42}
    add_smol(path, "smol", {"chat_template": HERMES, "n_parallel": 2}, model_parameters=pinned)
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


def _sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of a raw SSE body."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_string_input_answers_with_output_text_and_usage(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="smol", input="Say hi", max_output_tokens=12, temperature=0, metadata={"k": "v"}
    )
    assert reply.object == "response" and reply.id.startswith("resp_") and reply.model == "smol"
    assert reply.output_text and reply.output[0].type == "message"
    assert reply.output[0].content[0].type == "output_text"
    assert reply.usage is not None and 0 < reply.usage.output_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    assert reply.metadata == {"k": "v"}
    assert reply.status in ("completed", "incomplete")


def test_items_and_instructions_reach_the_model(client: openai.OpenAI) -> None:
    items: Any = [
        {"role": "developer", "content": "Answer in JSON."},
        {"role": "user", "content": [{"type": "input_text", "text": "Is water wet?"}]},
    ]
    plain = client.responses.create(model="smol", input=items, text={"format": OK_SCHEMA})
    told = client.responses.create(
        model="smol", input=items, instructions="Be brief.", text={"format": OK_SCHEMA}
    )
    assert plain.status == told.status == "completed" and plain.incomplete_details is None
    assert json.loads(plain.output_text).keys() == {"ok"}
    assert plain.usage and told.usage and told.usage.input_tokens > plain.usage.input_tokens
    assert told.instructions == "Be brief."


def test_max_output_tokens_cuts_to_incomplete(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="smol", input="Tell a long story.", max_output_tokens=3)
    assert reply.status == "incomplete"
    assert reply.incomplete_details and reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage and reply.usage.output_tokens == 3 and reply.max_output_tokens == 3


def test_json_object_format(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="smol", input="Give a JSON object.", text={"format": {"type": "json_object"}},
        max_output_tokens=40,
    )  # fmt: skip
    assert reply.output_text.lstrip().startswith("{")


def test_stream_events_in_openai_order(http: httpx.Client) -> None:
    body = {
        "model": "smol",
        "input": "Is water wet?",
        "stream": True,
        "text": {"format": OK_SCHEMA},
    }
    raw = http.post("/v1/responses", json=body)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = _sse(raw.text)
    names = [name for name, _ in events]
    assert [data["type"] for _, data in events] == names
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    head = ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[:4] == [*head, "response.content_part.added"]
    assert set(names[4:-4]) == {"response.output_text.delta"}
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    final = events[-1][1]["response"]
    assert final["output"][0]["content"][0]["text"] == deltas and json.loads(deltas)
    assert final["usage"]["output_tokens"] > 0 and final["status"] == "completed"


def test_stream_helper_gives_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="smol", input="Is water wet?", text={"format": OK_SCHEMA}
    ) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts) and json.loads(final.output_text)["ok"] in (0, 1)


def test_stream_cut_short_ends_with_incomplete(client: openai.OpenAI) -> None:
    events = list(
        client.responses.create(
            model="smol", input="Tell a long story.", stream=True, max_output_tokens=2
        )
    )
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


def test_hosted_tools_are_left_out_and_named(client: openai.OpenAI) -> None:
    """Codex sends web_search and a namespace on every request: the answer comes, made without
    web_search, and says so in a header."""
    crm = {"type": "namespace", "name": "crm", "description": "Records.", "tools": [WEATHER]}
    raw = client.responses.with_raw_response.create(
        model="smol", input="Is water wet?", tools=[{"type": "web_search"}, crm],  # type: ignore[list-item]
        tool_choice="none", text={"format": OK_SCHEMA},
    )  # fmt: skip
    assert raw.headers["x-hearth-tools-left-out"] == "web_search"
    reply = raw.parse()
    assert reply.status == "completed" and json.loads(reply.output_text)
    assert [t.type for t in reply.tools] == ["namespace"]


def test_function_call_output_round_trip_is_accepted(client: openai.OpenAI) -> None:
    """The tool round trip reaches the engine (the Hermes template renders the call and its
    result). Whether SmolLM2-135M then calls a tool is chance (it mostly writes prose), so the
    function_call items of an answer are tested on recorded engine answers in
    test_responses_translate.py."""
    items: Any = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C"},
    ]  # fmt: skip
    reply = client.responses.create(
        model="smol", input=items, tools=[WEATHER], max_output_tokens=16, temperature=0,
        tool_choice={"type": "function", "name": "get_weather"},  # sent on as "required"
    )  # fmt: skip
    assert reply.output and reply.usage and reply.usage.input_tokens > 40
    assert reply.tools[0].type == "function" and reply.tools[0].name == "get_weather"


def test_previous_response_id_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="smol", input="hi", previous_response_id="resp_1")
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "previous_response_id"
    assert "does not store responses" in error["message"]


def test_unknown_model_is_openai_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="no-such-model", input="hi")
    assert isinstance(caught.value.body, dict) and isinstance(caught.value.body["code"], str)


def test_stored_responses_do_not_exist(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not store"):
        client.responses.retrieve("resp_123")


@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b"{not json",
        {"input": "hi"},
        {"model": "smol"},
        {"model": "smol", "input": 5},
        {"model": "smol", "input": [{"role": "wizard", "content": "x"}]},
        {"model": "smol", "input": [{"type": "web_search_call"}]},
        {"model": "smol", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
        {"model": "smol", "input": "hi", "tools": [{"type": "wizardry"}]},
        {"model": "smol", "input": "hi", "tools": [{"type": "namespace", "name": "n"}]},
        {"model": "smol", "input": "hi", "tool_choice": {"type": "function", "name": "x"}},
        {"model": "smol", "input": "hi", "max_output_tokens": -1},
        {"model": "smol", "input": "hi", "temperature": "hot"},
        {"model": "smol", "input": "hi", "text": {"format": {"type": "xml"}}},
        {"model": "smol", "input": "hi", "metadata": {"k": 1}},
        {"model": "smol", "input": "hi", "stream": "yes"},
    ],
)
def test_bad_bodies_are_400_in_openai_shape(http: httpx.Client, body: Any) -> None:
    if isinstance(body, bytes):
        reply = http.post(
            "/v1/responses", content=body, headers={"content-type": "application/json"}
        )
    else:
        reply = http.post("/v1/responses", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and isinstance(error["code"], str)
