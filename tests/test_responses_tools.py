"""The Responses face's tools as agents send them (`server/responses/tools.py`): Codex CLI's
recorded first request replayed through the translation, namespaces flattened and their calls
named back as OpenAI names them, hosted tools left out, malformed tools refused, and an answer
cut by max_output_tokens marked as OpenAI marks it. No server, no model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from hearth.core.errors import InvalidParameter
from hearth.server.responses import stream, tools, translate

CODEX = Path(__file__).parent / "data" / "agents" / "codex" / "first_request.json"
WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
CRM = {
    "type": "namespace",
    "name": "crm",
    "description": "Customer records.",
    "tools": [{"type": "function", "name": "lookup", "description": "Find a customer.",
               "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}],
}  # fmt: skip


def _codex() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(CODEX.read_text())["body"]
    return body


def test_codex_first_request_translates() -> None:
    """Codex 0.171.0's first request (recorded, ids blanked): its `namespace` tool and hosted
    `web_search` were each a 400 before; now the namespace's functions are offered flat and
    web_search is left out, named for the header."""
    body = _codex()
    kinds = [t["type"] for t in body["tools"]]
    assert "namespace" in kinds and "web_search" in kinds  # the recording is what Codex sends
    call = translate.call(body)
    names = [t["function"]["name"] for t in call.body["tools"]]
    assert "exec_command" in names and "multi_agent_v1__spawn_agent" in names
    assert len(names) == len(set(names))
    assert call.left_out == ["web_search"]
    assert call.names.outward("multi_agent_v1__spawn_agent") == ("spawn_agent", "multi_agent_v1")
    assert call.body["messages"][0]["role"] == "system"  # Codex's developer message
    assert call.stream and call.body["tool_choice"] == "auto"
    echoed = {t["type"] for t in call.echo["tools"]}
    assert echoed == {"function", "namespace"}


def test_namespaced_call_comes_back_with_its_namespace() -> None:
    call = translate.call({"model": "m", "input": "x", "tools": [WEATHER, CRM]})
    reply = {"choices": [{"finish_reason": "tool_calls", "message": {"tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "crm__lookup", "arguments": '{"q":"Ada"}'}}]}}]}  # fmt: skip
    out = translate.response(call, reply, "resp_1", 1)
    parsed = Response.model_validate(out)
    item = parsed.output[0]
    assert item.type == "function_call"
    assert (item.name, item.namespace, item.arguments) == ("lookup", "crm", '{"q":"Ada"}')
    assert [t.type for t in parsed.tools] == ["function", "namespace"]


def test_namespaced_call_sent_back_is_read_under_its_flat_name() -> None:
    items = [
        {"role": "user", "content": "Find Ada."},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "namespace": "crm",
         "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
    ]  # fmt: skip
    call = translate.call({"model": "m", "input": items, "tools": [CRM]})
    sent = call.body["messages"][1]["tool_calls"][0]["function"]
    assert sent["name"] == "crm__lookup"


async def _gen(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _events(body: dict[str, Any], chunks: list[bytes]) -> list[dict[str, Any]]:
    state = stream.Events(translate.call(body), "resp_1", 1)

    async def collect() -> list[bytes]:
        return [event async for event in stream.events(_gen(chunks), state)]

    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    out = []
    for raw in asyncio.run(collect()):
        event = json.loads(raw.decode().split("\n", 1)[1].removeprefix("data: "))
        adapter.validate_python(event)
        out.append(event)
    return out


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


def test_streamed_namespaced_call_is_named_back() -> None:
    body = {"model": "m", "input": "x", "stream": True, "tools": [CRM]}
    call = {"index": 0, "id": "c1", "function": {"name": "crm__lookup", "arguments": "{}"}}
    events = _events(body, [_chunk({"tool_calls": [call]}, "tool_calls")])
    added = next(e for e in events if e["type"] == "response.output_item.added")
    done = events[-1]["response"]["output"][0]
    for item in (added["item"], done):
        assert (item["name"], item["namespace"]) == ("lookup", "crm")


def test_stream_cut_by_max_output_tokens_ends_as_openai_ends_it() -> None:
    """OpenAI ends a cut answer with `response.incomplete`, its last item "incomplete"."""
    body = {"model": "m", "input": "x", "stream": True, "max_output_tokens": 2}
    events = _events(body, [_chunk({"content": "Hel"}), _chunk({"content": "lo"}, "length")])
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert done["item"]["status"] == "incomplete"
    last = events[-1]
    assert last["type"] == "response.incomplete"
    final = Response.model_validate(last["response"])
    assert final.status == "incomplete" and final.output_text == "Hello"
    assert final.output[0].status == "incomplete"
    assert final.incomplete_details and final.incomplete_details.reason == "max_output_tokens"


def test_whole_answer_cut_marks_its_last_item_incomplete() -> None:
    call = translate.call({"model": "m", "input": "x", "max_output_tokens": 2})
    reply = {"choices": [{"finish_reason": "length", "message": {"content": "Hel"}}]}
    parsed = Response.model_validate(translate.response(call, reply, "resp_1", 1))
    assert parsed.output[0].status == "incomplete" and parsed.output_text == "Hel"


@pytest.mark.parametrize(
    "kind",
    ["web_search", "web_search_preview", "file_search", "code_interpreter", "image_generation",
     "computer_use_preview", "local_shell", "custom"],  # mcp: Hearth runs it (issue 26)
)  # fmt: skip
def test_tools_hearth_cannot_run_are_left_out(kind: str) -> None:
    call = translate.call({"model": "m", "input": "x", "tools": [{"type": kind}, WEATHER]})
    assert [t["function"]["name"] for t in call.body["tools"]] == ["get_weather"]
    assert call.left_out == [kind]


def test_only_hosted_tools_leave_no_tools_for_the_engine() -> None:
    call = translate.call({"model": "m", "input": "x", "tools": [{"type": "web_search"}] * 2})
    assert "tools" not in call.body and call.left_out == ["web_search"]


@pytest.mark.parametrize(
    ("tool_list", "param"),
    [
        ([{"type": "wizardry"}], "tools[0].type"),
        (["web_search"], "tools[0]"),
        ([{"type": "function"}], "tools[0].name"),
        ([{**CRM, "tools": []}], "tools[0].tools"),
        ([{**CRM, "tools": [CRM]}], "tools[0].tools[0].type"),
        ([{**CRM, "name": ""}], "tools[0].name"),
        ([{**CRM, "description": 5}], "tools[0].description"),
        ([WEATHER, WEATHER], "tools[1]"),
        ([{**WEATHER, "name": "crm__lookup"}, CRM], "tools[1].tools[0]"),
        ([{**WEATHER, "strict": "yes"}], "tools[0].strict"),
    ],
)  # fmt: skip
def test_malformed_tools_are_refused(tool_list: list[Any], param: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        translate.call({"model": "m", "input": "x", "tools": tool_list})
    assert caught.value.param == param


def test_flat_names_trim_one_stray_underscore_like_codex() -> None:
    assert tools.flat_name("mcp_", "_read") == "mcp__read"
    assert tools.flat_name(None, "read") == "read"
