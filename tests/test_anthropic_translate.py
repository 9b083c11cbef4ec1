"""The Messages <-> chat-completions mapping (`server/anthropic/translate.py`), without a server.

Tool calls are checked here on recorded llama.cpp stream chunks (the shape its `--jinja` parser
streams for a Hermes-style `<tool_call>`), since the test model does not call tools itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hearth.core.errors import (
    Conflict,
    EngineError,
    Forbidden,
    HearthError,
    InvalidParameter,
    InvalidRequest,
    NotFound,
    RequestTooLarge,
    Unauthorized,
    Unavailable,
)
from hearth.engines.events import (
    EventReader,
    Failure,
    Finish,
    ReasoningDelta,
    TextDelta,
    Timings,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from hearth.engines.remote import RemoteEngine
from hearth.server.anthropic.stream import AFTER_STOP, Assembler, events, sse
from hearth.server.anthropic.translate import count_body, messages_call, parse_input
from hearth.server.faces import FACES

BASE: dict[str, Any] = {
    "model": "m",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "hi"}],
}
WEATHER = {"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


USAGE = {"usage": {"prompt_tokens": 50, "completion_tokens": 7}}
#: What llama.cpp streams for one parsed <tool_call> (name first, arguments in fragments).
TOOL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk({"tool_calls": [{"index": 0, "id": "call_abc", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({}, "tool_calls"),
    {"choices": [], **USAGE},
]  # fmt: skip


def run(reply: Assembler, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = reply.start()
    reader = EventReader()
    for c in chunks:
        for event in reader.chunk(c):
            out += reply.add(event)
    return out + reply.finish_events()


# ---- requests -----------------------------------------------------------------------------


def test_plain_request_maps_the_documented_fields_only() -> None:
    body = {**BASE, "system": [{"type": "text", "text": "Be brief."}], "temperature": 0.2,
            "top_p": 0.9, "top_k": 40, "metadata": {"user_id": "u"}, "stream": True,
            "n_gpu_layers": 99, "thinking": {"type": "enabled"}}  # fmt: skip
    call = messages_call(body)
    assert call.stream is True and call.name == "m"
    assert call.body == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 10, "temperature": 0.2, "top_p": 0.9, "top_k": 40,
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip


def test_blocks_become_openai_messages() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm"},
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": [{"type": "text", "text": "sun"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
            {"type": "text", "text": "and now?"}]},
    ]  # fmt: skip
    out = messages_call({**BASE, "messages": messages}).body["messages"]
    assert out[0]["content"][1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
    assert out[1] == {"role": "assistant", "content": "calling", "tool_calls": [
        {"id": "toolu_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "P"}'}}]}  # fmt: skip
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sun"}
    assert out[3] == {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"}
    assert out[4] == {"role": "user", "content": "and now?"}


@pytest.mark.parametrize(
    ("choice", "wanted", "names"),
    [
        ({"type": "auto"}, "auto", ["get_weather", "other"]),
        ({"type": "any"}, "required", ["get_weather", "other"]),
        ({"type": "none"}, "none", ["get_weather", "other"]),
        ({"type": "tool", "name": "other"}, "required", ["other"]),
    ],
)
def test_tool_choice(choice: dict[str, Any], wanted: str, names: list[str]) -> None:
    tools = [WEATHER, {**WEATHER, "name": "other"}]
    body = messages_call({**BASE, "tools": tools, "tool_choice": choice}).body
    assert body["tool_choice"] == wanted
    assert [t["function"]["name"] for t in body["tools"]] == names
    assert body["tools"][0]["function"]["parameters"] == {"type": "object"}


@pytest.mark.parametrize(
    "change",
    [
        {"max_tokens": None}, {"max_tokens": 0}, {"max_tokens": True}, {"max_tokens": 1.5},
        {"model": ""}, {"messages": []}, {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "document"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "source": {
            "type": "url", "url": "http://169.254.169.254/"}}]}]},
        {"stop_sequences": ["x"] * 17}, {"stop_sequences": [""]}, {"temperature": "hot"},
        {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
        {"tools": [{"name": "a b", "input_schema": {}}]}, {"tools": [WEATHER] * 300},
        {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
        {"tools": [WEATHER], "tool_choice": "auto"}, {"stream": "yes"}, {"system": 5},
    ],
)  # fmt: skip
def test_bad_requests_are_400(change: dict[str, Any]) -> None:
    body = {**BASE, **change}
    with pytest.raises((InvalidRequest, InvalidParameter)):
        messages_call({k: v for k, v in body.items() if v is not None})


def test_count_body_asks_for_one_token_whole() -> None:
    body = count_body(messages_call({**BASE, "stream": True}))
    assert body["max_tokens"] == 1 and body["stream"] is False and "stream_options" not in body


# ---- answers ------------------------------------------------------------------------------


def test_text_stream_in_anthropic_order() -> None:
    reply = Assembler("m")
    start = chunk({"role": "assistant", "content": None})
    parts = [chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop")]
    out = run(reply, [start, *parts, {"choices": [], **USAGE}])
    assert [e["type"] for e in out] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert out[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert out[-2]["usage"] == {"input_tokens": 50, "output_tokens": 7}
    message = reply.message()
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert message["id"].startswith("msg_") and message["stop_reason"] == "end_turn"


def test_length_is_max_tokens() -> None:
    reply = Assembler("m")
    run(reply, [chunk({"content": "a"}), chunk({}, "length")])
    assert reply.message()["stop_reason"] == "max_tokens"
    assert reply.message()["usage"] == {"input_tokens": 0, "output_tokens": 1}


def test_tool_call_stream_becomes_tool_use() -> None:
    reply = Assembler("m")
    out = run(reply, [chunk({"content": "Sure."}), *TOOL_STREAM])
    kinds = [(e["type"], e.get("index")) for e in out]
    assert kinds == [
        ("message_start", None), ("ping", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_stop", 1), ("message_delta", None), ("message_stop", None),
    ]  # fmt: skip
    assert out[5]["content_block"] == {"type": "tool_use", "id": "call_abc",
                                       "name": "get_weather", "input": {}}  # fmt: skip
    assert out[6]["delta"] == {"type": "input_json_delta", "partial_json": '{"city": '}
    assert out[-2]["delta"]["stop_reason"] == "tool_use"
    message = reply.message()
    assert message["content"][1] == {"type": "tool_use", "id": "call_abc",
                                     "name": "get_weather", "input": {"city": "Paris"}}  # fmt: skip
    assert message["stop_reason"] == "tool_use"


def test_parallel_tool_calls_are_two_blocks() -> None:
    function = {"name": "get_time", "arguments": "{}"}
    second = [chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": function}]})]
    reply = Assembler("m")
    run(reply, [*TOOL_STREAM[:4], *second, *TOOL_STREAM[4:]])
    names = [b["name"] for b in reply.message()["content"]]
    assert names == ["get_weather", "get_time"]


def test_stop_sequence_is_cut_and_named_even_across_chunks() -> None:
    reply = Assembler("m", ["END", "##"])
    out = run(reply, [chunk({"content": "one E"}), chunk({"content": "ND two"}),
                      chunk({"content": "never"})])  # fmt: skip
    texts = "".join(e["delta"]["text"] for e in out if e["type"] == "content_block_delta")
    assert texts == "one " and reply.done
    message = reply.message()
    assert message["stop_reason"] == "stop_sequence" and message["stop_sequence"] == "END"
    assert message["content"] == [{"type": "text", "text": "one "}]


def test_held_back_text_is_flushed_when_no_stop_comes() -> None:
    reply = Assembler("m", ["STOP"])
    run(reply, [chunk({"content": "ab"}), chunk({"content": "ST"}), chunk({}, "stop")])
    assert reply.message()["content"] == [{"type": "text", "text": "abST"}]
    assert reply.message()["stop_reason"] == "end_turn"


def test_bad_arguments_are_an_empty_input() -> None:
    assert parse_input("not json") == {} and parse_input("[1]") == {} and parse_input("") == {}


def test_engine_error_mid_stream_is_an_error_event() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        yield b'data: {"error": {"message": "engine died"}}\n\n'

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in events(chunks(), Assembler("m"))]

    out = asyncio.run(collect())
    assert out[-1] == {"type": "error", "error": {"type": "api_error", "message": "engine died"}}
    assert sse(out[-1]).startswith(b"event: error\ndata: {")


def _timed(text: str, prompt_n: int, cache_n: int) -> bytes:
    """One chunk as llama.cpp streams it with `timings_per_token`: text and its counters."""
    timings = {"prompt_n": prompt_n, "cache_n": cache_n, "predicted_n": 1}
    delta = {"choices": [{"index": 0, "delta": {"content": text}}], "timings": timings}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


@pytest.mark.parametrize("first", [True, False])
def test_stop_sequence_answer_counts_its_input(first: bool) -> None:
    """The stop can come in the first chunk, before any counters: they come in the same
    chunk (after its text), and the reader waits for them; the stream ends there."""
    read: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        if not first:
            read.append(0)
            yield _timed("a", 40, 2)
        read.append(1)
        yield _timed("b END", 40, 2)
        read.append(2)
        yield _timed("never", 40, 2)

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in events(chunks(), Assembler("m", ["END"]))]

    out = asyncio.run(collect())
    assert out[-2]["delta"]["stop_reason"] == "stop_sequence"
    assert out[-2]["usage"]["input_tokens"] == 42
    assert read[-1] == 1  # the chunk after the stop was never asked for


def test_an_upstream_without_counters_is_not_waited_for() -> None:
    """An OpenAI-style upstream sends no timings: after the stop, reading ends within
    AFTER_STOP events (input unknown, 0) rather than at the end of the whole generation."""
    read: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(1000):
            read.append(i)
            text = "a END" if i == 0 else "x"
            yield b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % text.encode()

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in events(chunks(), Assembler("m", ["END"]))]

    out = asyncio.run(collect())
    assert out[-2]["delta"]["stop_reason"] == "stop_sequence"
    assert out[-2]["usage"]["input_tokens"] == 0 and len(read) == 1 + AFTER_STOP


def test_stop_sequences_ask_the_engine_for_its_counters() -> None:
    assert messages_call({**BASE, "stop_sequences": ["x"]}).body["timings_per_token"] is True
    assert "timings_per_token" not in messages_call(BASE).body
    remote = RemoteEngine(base_url="https://api.example.com/v1", model="up")
    sent = remote.rewrite_body({"model": "m", "timings_per_token": True, "top_p": 1})
    assert sent == {"model": "up", "top_p": 1}  # llama.cpp's own field stays home


# ---- the writer: typed engine events in, Anthropic's events out ----------------------------


def test_writer_takes_typed_events() -> None:
    reply = Assembler("m")
    out: list[Any] = []
    for event in (
        ReasoningDelta("hmm"),  # the model's thinking is not shown (as before)
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta("other choice", choice=1),
        Finish("stop"),
        Usage(12, 3, {"prompt_tokens": 12, "completion_tokens": 3}),
        Timings({"predicted_n": 3}),
    ):
        out += reply.add(event)
    assert out == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    ]  # fmt: skip
    assert reply.finish_events() == [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"input_tokens": 12, "output_tokens": 3}},
        {"type": "message_stop"},
    ]  # fmt: skip
    assert reply.message()["content"] == [{"type": "text", "text": "Hello"}]


def test_writer_tool_call_whose_id_and_name_come_in_a_later_fragment() -> None:
    """An upstream that names the call after its first fragment: the block is opened by the
    first fragment (its start is already written), so it gets a made id and no second block;
    every argument fragment joins it."""
    reader, reply = EventReader(), Assembler("m")
    late = [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_late", "type": "function",
                               "function": {"name": "get_weather", "arguments": ':"P"}'}}]}),
        chunk({}, "tool_calls"),
    ]  # fmt: skip
    out = [e for c in late for event in reader.chunk(c) for e in reply.add(event)]
    out += reply.finish_events()
    starts = [e for e in out if e["type"] == "content_block_start"]
    assert len(starts) == 1
    block = starts[0]["content_block"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    deltas = [e["delta"]["partial_json"] for e in out if e["type"] == "content_block_delta"]
    assert deltas == ['{"city"', ':"P"}']
    message = reply.message()
    assert message["content"] == [{**block, "input": {"city": "P"}}]
    assert message["stop_reason"] == "tool_use"


def test_writer_arguments_before_the_start_open_one_block() -> None:
    reply = Assembler("m")
    out = reply.add(TextDelta("Sure."))
    out += reply.add(ToolCallDelta(0, '{"a":'))
    out += reply.add(ToolCallStart(0, "call_1", "f"))  # too late: its block is written
    out += reply.add(ToolCallDelta(0, "1}"))
    out += reply.add(ToolCallStart(1, "call_2", "g"))
    out += reply.finish_events()
    kinds = [(e["type"], e.get("index")) for e in out]
    assert kinds == [
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1),
        ("content_block_stop", 1), ("content_block_start", 2), ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None),
    ]  # fmt: skip
    content = reply.message()["content"]
    assert content[1]["input"] == {"a": 1} and content[1]["name"] == ""
    assert content[2] == {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}


def test_writer_engine_failure_mid_stream_ends_with_an_error_event() -> None:
    reply = Assembler("m", ["STOP"])
    out = reply.add(TextDelta("held back"))
    assert reply.add(Failure("engine died", "engine_error")) == [
        {"type": "error", "error": {"type": "api_error", "message": "engine died"}}
    ]
    assert reply.failure is not None and not reply.done
    # what was held back for the stop sequence ("ack") never goes out: the stream stops here
    shown = "".join(e["delta"]["text"] for e in out if e["type"] == "content_block_delta")
    assert shown == "held b"


def test_writer_stop_sequence_cut_counts_the_pieces_seen() -> None:
    reply = Assembler("m", ["END"])
    out: list[Any] = []
    for text in ("a", "b E", "ND c", "never"):
        out += reply.add(TextDelta(text))
    out += reply.add(Usage(5, 9, {}))  # usage may still come: it counts
    out += reply.finish_events()
    assert "".join(e["delta"]["text"] for e in out if e["type"] == "content_block_delta") == "ab "
    assert out[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert out[-2]["usage"] == {"input_tokens": 5, "output_tokens": 9}
    cut = Assembler("m", ["END"])
    for text in ("a", "b E", "ND c", "never"):
        cut.add(TextDelta(text))
    cut.finish_events()
    assert cut.counts() == {"input_tokens": 0, "output_tokens": 3}  # "never" came after


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidRequest("x"), "invalid_request_error"),
        (Unauthorized("x"), "authentication_error"),
        (Forbidden("x"), "permission_error"),
        (NotFound("x"), "not_found_error"),
        (RequestTooLarge("x"), "request_too_large"),
        (Conflict("x"), "invalid_request_error"),
        (Unavailable("x"), "overloaded_error"),
        (EngineError("x"), "api_error"),
    ],
)
def test_errors_on_messages_paths_are_anthropic_shaped(exc: HearthError, kind: str) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        assert FACES.error(path)(exc) == {
            "type": "error",
            "error": {"type": kind, "message": "x"},
        }
    assert "type" not in FACES.error("/v1/messagesx")(exc)  # OpenAI's shape elsewhere
