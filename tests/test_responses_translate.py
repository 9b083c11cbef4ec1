"""The Responses API <-> chat translation (`server/responses/translate.py`, `stream.py`) on
recorded engine answers: no server, no model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from hearth.core.errors import EngineError, InvalidParameter, InvalidRequest
from hearth.engines.events import (
    Failure,
    Finish,
    ReasoningDelta,
    TextDelta,
    Timings,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from hearth.server.respond import whole_object
from hearth.server.responses import stream, translate

TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
# A llama.cpp chat completion with a parsed <tool_call> (recorded shape, ids shortened).
TOOL_REPLY = {
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
}


def test_string_input_and_instructions_become_messages() -> None:
    call = translate.call(
        {"model": "m", "input": "hi", "instructions": "Be brief.", "max_output_tokens": 5,
         "temperature": 0.2, "keep_alive": "5m", "user": "ignored", "seed": 1}
    )  # fmt: skip
    assert call.body == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "temperature": 0.2,
    }
    assert call.keep_alive == 300 and not call.stream


def test_items_map_to_chat_messages() -> None:
    items = [
        {"role": "developer", "content": [{"type": "input_text", "text": "sys"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "two"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
    ]  # fmt: skip
    messages = translate.call({"model": "m", "input": items}).body["messages"]
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assistant = messages[2]
    assert assistant["content"] == "calling"
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert messages[3:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]


def test_tools_tool_choice_and_format() -> None:
    body = {"model": "m", "input": "x", "tools": [TOOL, {**TOOL, "name": "other"}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"},
                                "strict": True}}}  # fmt: skip
    call = translate.call(body)
    assert [t["function"]["name"] for t in call.body["tools"]] == ["get_weather"]
    assert call.body["tool_choice"] == "required"
    assert call.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True},
    }
    assert call.echo["tool_choice"] == {"type": "function", "name": "get_weather"}
    json_object = {"type": "json_object"}
    assert translate.response_format({"format": json_object}) == json_object
    assert translate.response_format({"format": {"type": "text"}}) is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
         "input[0][0].image_url"),
        ({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "http://169.254.169.254/"}]}]},
         "input[0][0].image_url"),
        ({"model": "m", "input": [{"role": "assistant", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,AA"}]}]}, "input[0]"),
        ({"model": "m", "input": "x", "tools": [TOOL] * 129}, "tools"),
        ({"model": "m", "input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"model": "m", "input": "x", "top_p": 2}, "top_p"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        translate.call(body)
    assert caught.value.param == param


def test_a_body_without_model_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        translate.call({"input": "x"})


def test_stream_asks_the_engine_for_usage() -> None:
    call = translate.call({"model": "m", "input": "x", "stream": True})
    assert call.stream and call.body["stream_options"] == {"include_usage": True}


def test_whole_answer_with_tool_call_is_a_valid_response() -> None:
    call = translate.call({"model": "m", "input": "x", "tools": [TOOL]})
    out = translate.response(call, TOOL_REPLY, "resp_1", 1)
    parsed = Response.model_validate(out)
    item = parsed.output[0]
    assert item.type == "function_call" and item.call_id == "abc" and item.name == "get_weather"
    assert item.id and item.id.startswith("fc_") and item.status == "completed"
    assert parsed.status == "completed" and parsed.output_text == ""
    assert parsed.usage and parsed.usage.total_tokens == 62


def test_whole_answer_cut_by_length_is_incomplete() -> None:
    call = translate.call({"model": "m", "input": "x", "max_output_tokens": 2})
    reply = {"choices": [{"finish_reason": "length", "message": {"content": "Hel"}}]}
    parsed = Response.model_validate(translate.response(call, reply, "resp_1", 1))
    assert parsed.output_text == "Hel" and parsed.status == "incomplete"
    assert parsed.incomplete_details and parsed.incomplete_details.reason == "max_output_tokens"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def _gen(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _run(chunks: list[bytes]) -> list[dict[str, Any]]:
    call = translate.call({"model": "m", "input": "x", "stream": True, "tools": [TOOL]})
    state = stream.Events(call, "resp_1", 1)

    async def collect() -> list[bytes]:
        return [event async for event in stream.events(_gen(chunks), state)]

    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    out = []
    for raw in asyncio.run(collect()):
        name, data = raw.decode().split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        adapter.validate_python(event)  # each event parses as the client's own type
        out.append(event)
    return out


def test_stream_of_text_then_tool_call() -> None:
    tool = {"index": 0, "id": "abc", "function": {"name": "get_weather", "arguments": '{"ci'}}
    more = {"index": 0, "function": {"arguments": 'ty":"Paris"}'}}
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}\n\n'
    chunks = [_chunk({"content": "Let"}), _chunk({"content": " me"}),
              _chunk({"tool_calls": [tool]}), _chunk({"tool_calls": [more]}, "tool_calls"),
              usage, b"data: [DONE]\n\n"]  # fmt: skip
    events = _run(chunks)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "Let me"
    call = final.output[1]
    assert call.type == "function_call" and call.arguments == '{"city":"Paris"}'
    assert events[9]["item"]["arguments"] == ""  # the added item is a snapshot, not updated
    assert final.usage and final.usage.total_tokens == 7


def test_stream_engine_error_becomes_error_event() -> None:
    chunks = [_chunk({"content": "a"}), b'data: {"error": {"message": "boom"}}\n\n']
    events = _run(chunks)
    assert events[-1]["type"] == "error" and events[-1]["message"] == "boom"


# ---- the writer: typed engine events in, Responses events out ------------------------------


def _writer() -> stream.Events:
    call = translate.call({"model": "m", "input": "x", "stream": True, "tools": [TOOL]})
    return stream.Events(call, "resp_1", 1)


def _valid(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event)  # each event parses as the client's own type
    return events


def test_writer_takes_typed_events() -> None:
    writer = _writer()
    out = writer.start()
    for event in (
        ReasoningDelta("hmm"),  # the model's thinking is not shown (as before)
        TextDelta("Hi"),
        TextDelta("ignored", choice=1),
        ToolCallStart(0, None, "get_weather"),
        ToolCallDelta(0, '{"city":"P"}'),
        Finish("tool_calls"),
        Usage(3, 4, {"prompt_tokens": 3, "completion_tokens": 4}),
        Timings({"predicted_n": 4}),
    ):
        out += writer.add(event)
    out = _valid(out + writer.finish())
    assert [e["type"] for e in out] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    final = Response.model_validate(out[-1]["response"])
    assert final.output_text == "Hi" and final.usage and final.usage.total_tokens == 7
    call = final.output[1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_") and call.arguments == '{"city":"P"}'


def test_writer_tool_call_whose_id_and_name_come_in_a_later_fragment() -> None:
    """The first fragment opens the item (already written); a later id or name does not open
    a second one, and every argument fragment joins it."""
    first = {"index": 0, "function": {"arguments": '{"ci'}}
    late = {"index": 0, "id": "abc", "function": {"name": "get_weather", "arguments": 'ty":1}'}}
    events = _run([_chunk({"tool_calls": [first]}), _chunk({"tool_calls": [late]}, "tool_calls")])
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert len(added) == 1
    final = Response.model_validate(events[-1]["response"])
    assert len(final.output) == 1
    call = final.output[0]
    assert call.type == "function_call" and call.call_id.startswith("call_")
    assert call.arguments == '{"city":1}'


def test_writer_interleaved_calls_keep_each_item_to_its_own_fragments() -> None:
    writer = _writer()
    for event in (
        ToolCallStart(0, "a", "f"),
        ToolCallDelta(0, "{"),
        ToolCallStart(1, "b", "g"),
        ToolCallDelta(1, "{}"),
        ToolCallDelta(0, "}"),  # back to call 0: a new item, as before
    ):
        writer.add(event)
    out = _valid(writer.finish())
    final = Response.model_validate(out[-1]["response"])
    arguments = [item.arguments for item in final.output if item.type == "function_call"]
    assert arguments == ["{", "{}", "}"]


def test_writer_engine_failure_mid_stream_is_an_error_event() -> None:
    writer = _writer()
    out = writer.start() + writer.add(TextDelta("a"))
    error = writer.add(Failure("engine died", "engine_error"))
    assert writer.failure is not None
    assert _valid(error) == [
        {"type": "error", "sequence_number": len(out), "code": "engine_error",
         "message": "engine died", "param": None,
         "error": {"type": "server_error", "code": "engine_error", "message": "engine died",
                   "param": None}},
    ]  # fmt: skip


@pytest.mark.parametrize("content", [b"[1]", b"{not json", b'"text"', b"null"])
def test_a_whole_answer_that_is_not_an_object_is_the_engines_failure(content: bytes) -> None:
    """Read by /v1/responses and /v1/messages/count_tokens: a 502 naming the engine, where a
    JSON list used to be a 500."""
    with pytest.raises(EngineError, match="engine answered"):
        whole_object(content)
