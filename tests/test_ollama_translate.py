"""Ollama <-> OpenAI mapping (`server/ollama/translate.py`, `stream.py`) and capabilities, pure."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hearth.core.errors import InvalidRequest
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
from hearth.models.capabilities import capabilities
from hearth.server.ollama.stream import ndjson
from hearth.server.ollama.translate import (
    Reply,
    Stamp,
    chat_call,
    durations,
    embed_inputs,
    generate_call,
    normalized,
    ollama_tool_call,
    options,
    response_format,
    rfc3339,
)
from hearth.server.web import wants_html

USER = [{"role": "user", "content": "hi"}]


def test_options_map_to_openai_names_and_ignore_unknown_ones() -> None:
    fields, ctx = options(
        {"num_predict": 5, "temperature": 0.2, "top_k": 3, "stop": "END", "seed": 7.0,
         "num_ctx": 2048, "num_gpu": 99, "use_mmap": True, "repeat_penalty": 1.1}
    )  # fmt: skip
    assert fields == {"max_tokens": 5, "temperature": 0.2, "top_k": 3, "stop": ["END"],
                      "seed": 7, "repeat_penalty": 1.1}  # fmt: skip
    assert ctx == 2048
    assert options({"num_predict": -1})[0] == {}  # Ollama's "no limit"


@pytest.mark.parametrize(
    "bad",
    [{"temperature": "hot"}, {"top_k": 1.5}, {"seed": True}, {"num_ctx": 0},
     {"stop": [1]}, {"temperature": float("nan")}, [1]],
)  # fmt: skip
def test_wrong_option_types_are_400s(bad: Any) -> None:
    with pytest.raises(InvalidRequest):
        options(bad)


def test_chat_call_builds_the_openai_body() -> None:
    call = chat_call(
        {"model": "m:latest", "messages": [
            {"role": "user", "content": "look", "images": ["iVBORw0KGgoAAAANSUhEUg=="]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "f", "arguments": {"x": 1}}}]},
            {"role": "tool", "content": "42", "tool_name": "f"}],
         "format": "json", "keep_alive": "5m", "stream": False, "options": {"num_ctx": 512},
         "tools": [{"type": "function", "function": {"name": "f"}}], "think": False},
        "m",
        system_prompt="Be kind.",
    )  # fmt: skip
    body = call.body
    assert call.name == "m:latest" and call.path == "chat/completions" and not call.stream
    assert call.keep_alive == 300 and call.num_ctx == 512 and call.images
    assert body["model"] == "m" and body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": "Be kind."}
    image = body["messages"][1]["content"][1]["image_url"]["url"]
    assert image.startswith("data:image/png;base64,iVBOR")
    tool_call = body["messages"][2]["tool_calls"][0]["function"]
    assert tool_call == {"name": "f", "arguments": '{"x": 1}'}
    assert body["messages"][3]["name"] == "f" and body["tools"][0]["function"]["name"] == "f"
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "stream_options" not in body


def test_a_client_system_message_wins_and_streams_ask_for_usage() -> None:
    call = chat_call(
        {"model": "m", "messages": [{"role": "system", "content": "mine"}, *USER]}, "m", "model's"
    )
    assert [m["content"] for m in call.body["messages"]] == ["mine", "hi"]
    assert call.stream and call.body["stream_options"] == {"include_usage": True}


def test_generate_applies_the_template_unless_raw() -> None:
    templated = generate_call({"model": "m", "prompt": "p", "system": "s"}, "m")
    assert templated.path == "chat/completions"
    assert templated.body["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "p"},
    ]
    raw = generate_call({"model": "m", "prompt": "p", "raw": True, "stream": False}, "m")
    assert raw.path == "completions" and raw.body["prompt"] == "p"


def test_format_schema_and_bad_values() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_format(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "format", "schema": schema},
    }
    assert response_format("") is None
    with pytest.raises(InvalidRequest):
        response_format("yaml")


@pytest.mark.parametrize(
    "body",
    [{"messages": USER}, {"model": "m", "messages": "hi"}, {"model": "m", "messages": [{"a": 1}]},
     {"model": "m", "messages": [{"role": "user", "content": 3}]},
     {"model": "m", "messages": USER, "stream": "yes"}, {"model": "m", "messages": USER,
     "keep_alive": "forever"}, {"model": "m", "messages": USER, "think": 3}],
)  # fmt: skip
def test_bad_chat_bodies_are_400s(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        chat_call(body, "m")


def test_embed_inputs_and_normalized_truncation() -> None:
    assert embed_inputs({"input": "a"}, legacy=False) == ["a"]
    assert embed_inputs({"prompt": "a"}, legacy=True) == ["a"]
    with pytest.raises(InvalidRequest):
        embed_inputs({"input": [1]}, legacy=False)
    assert normalized([3.0, 4.0, 12.0], 2) == [0.6, 0.8]
    assert normalized([1.0, 2.0], None) == [1.0, 2.0]


def test_durations_come_from_the_engines_timings() -> None:
    timings = {"prompt_n": 1, "cache_n": 30, "prompt_ms": 2.5, "predicted_n": 4,
               "predicted_ms": 40.0}  # fmt: skip
    got = durations(timings, {"prompt_tokens": 31}, total_ns=50_000_000, load_ns=0)
    assert got == {
        "total_duration": 50_000_000,
        "load_duration": 1,
        "prompt_eval_count": 31,
        "prompt_eval_duration": 2_500_000,
        "eval_count": 4,
        "eval_duration": 40_000_000,
    }


def test_a_whole_answer_becomes_one_final_object() -> None:
    reply = Reply("m:latest", chat=True)
    reply.add(EventReader().whole(
        {"choices": [{"finish_reason": "tool_calls", "message": {"content": "ok",
          "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}}],
         "usage": {"prompt_tokens": 3, "completion_tokens": 2},
         "timings": {"predicted_n": 2, "predicted_ms": 4.0, "prompt_ms": 1.0}}
    ))  # fmt: skip
    final = reply.final(0, total_ns=9_000_000, load_ns=5, whole=True)
    assert final["message"]["content"] == "ok" and final["done"] is True
    assert final["done_reason"] == "stop" and final["eval_count"] == 2
    assert final["message"]["tool_calls"] == [{"function": {"name": "f", "arguments": {"a": 1}}}]
    assert final["created_at"] == "1970-01-01T00:00:00.000000Z" == rfc3339(0)
    assert ollama_tool_call({"function": {"name": "g", "arguments": "not json"}}) == {
        "function": {"name": "g", "arguments": {}}
    }


def _sse(*events: dict[str, Any]) -> list[bytes]:
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    raw = text.encode()
    return [raw[i : i + 7] for i in range(0, len(raw), 7)]  # split mid-line on purpose


async def _collect(chunks: list[bytes], reply: Reply) -> list[dict[str, Any]]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    lines = [raw async for raw in ndjson(source(), reply, started_ns=0, load_ns=1)]
    assert all(raw.endswith(b"\n") for raw in lines)
    return [json.loads(raw) for raw in lines]


def test_an_sse_stream_becomes_ndjson_with_a_final_line() -> None:
    chunks = _sse(
        {"choices": [{"delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo", "reasoning_content": "hmm"}}]},
        {"choices": [{"delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 4}, "timings": {"predicted_n": 2,
         "predicted_ms": 3.0, "prompt_ms": 1.0}},
    )  # fmt: skip
    got = asyncio.run(_collect(chunks, Reply("m", chat=True)))
    assert [g["message"]["content"] for g in got] == ["Hel", "lo", ""]
    assert got[1]["message"]["thinking"] == "hmm"
    assert got[-1]["done"] and got[-1]["done_reason"] == "length" and got[-1]["eval_count"] == 2
    generate = asyncio.run(_collect(_sse({"choices": [{"text": "x"}]}), Reply("m", chat=False)))
    assert generate[0]["response"] == "x" and generate[-1]["done"]


def test_an_engine_error_mid_stream_becomes_an_error_line() -> None:
    chunks = _sse({"choices": [{"delta": {"content": "a"}}]}, {"error": {"message": "died"}})
    got = asyncio.run(_collect(chunks, Reply("m", chat=True)))
    assert got[-1] == {"error": "died"}


def _old_line(obj: dict[str, Any]) -> bytes:
    """How lines were written before the typed events (a dict, json.dumps): the bytes the
    precomputed writer must keep."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("text", ["Hel", 'a "quote" \\ and\nnew line\t\x01', "é 🙂 中文", ""])
def test_partial_lines_from_events_keep_the_bytes_of_a_json_encoding(text: str) -> None:
    ns = 1_765_000_000_123_456_789
    stamp = rfc3339(1_765_000_000.123456)
    chat = Reply('m:"latest"', chat=True)
    assert chat.partial([TextDelta(text or "x")], ns) == _old_line(
        {"model": 'm:"latest"', "created_at": stamp,
         "message": {"role": "assistant", "content": text or "x"}, "done": False}
    )  # fmt: skip
    both = chat.partial([ReasoningDelta("hmm"), TextDelta(text)], ns)
    assert both == _old_line(
        {"model": 'm:"latest"', "created_at": stamp,
         "message": {"role": "assistant", "content": text, "thinking": "hmm"}, "done": False}
    )  # fmt: skip
    generate = Reply("g", chat=False)
    assert generate.partial([TextDelta(text), ReasoningDelta("t")], ns) == _old_line(
        {"model": "g", "created_at": stamp, "response": text, "thinking": "t", "done": False}
    )


def test_events_without_text_write_no_line_and_other_choices_are_ignored() -> None:
    reply = Reply("m", chat=True)
    assert reply.partial([], 0) is None
    assert reply.partial([TextDelta("other", choice=1)], 0) is None
    assert reply.partial([Finish("length"), Usage(3, 1, {"prompt_tokens": 3})], 0) is None
    assert reply.gathered.finish == "length" and not reply.failed


def test_created_at_is_formatted_once_a_second_and_matches_rfc3339() -> None:
    stamp = Stamp()
    second = 1_765_000_000
    for ns in [0, 999_999, 1_000_000_000, second * 10**9, second * 10**9 + 999_999_999,
               (second + 1) * 10**9 + 5_000, (second + 1) * 10**9 + 42_000]:  # fmt: skip
        micros = ns // 1000
        assert stamp(ns) == rfc3339(micros // 10**6 + (micros % 10**6) / 1e6)


def test_tool_calls_arriving_in_fragments_are_gathered_for_the_final_line() -> None:
    reply = Reply("m", chat=True)
    reader = EventReader()

    def calls(*fragments: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [{"delta": {"tool_calls": list(fragments)}}]}

    chunks = [
        calls({"index": 0, "id": "c1", "type": "function",
               "function": {"name": "get_weather", "arguments": ""}}),
        calls({"index": 0, "function": {"arguments": '{"ci'}}),
        calls({"index": 0, "function": {"arguments": 'ty": '}}),
        calls({"index": 0, "function": {"arguments": '"Paris"}'}},
              {"index": 1, "id": "c2", "function": {"name": "now", "arguments": "{}"}}),
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12},
         "timings": {"predicted_n": 12, "predicted_ms": 6.0, "prompt_ms": 2.0}},
    ]  # fmt: skip
    events = [reader.chunk(chunk) for chunk in chunks]
    assert [reply.partial(batch, 0) for batch in events] == [None] * len(chunks)
    assert any(isinstance(e, ToolCallStart) for e in events[0])
    assert any(isinstance(e, ToolCallDelta) for e in events[2])
    final = reply.final(0, total_ns=1, load_ns=1, whole=False)
    assert final["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "now", "arguments": {}}},
        ],
    }
    assert final["done_reason"] == "stop" and final["eval_count"] == 12
    assert final["prompt_eval_count"] == 9 and final["eval_duration"] == 6_000_000


def test_a_failure_mid_stream_is_the_last_line() -> None:
    reply = Reply("m", chat=True)
    assert reply.partial([TextDelta("a")], 0) is not None
    written = reply.partial([Timings({"predicted_n": 1}), Failure("the engine died", "oom")], 0)
    assert written == b'{"error":"the engine died"}\n' and reply.failed
    chunks = _sse(
        {"choices": [{"delta": {"content": "a"}}]},
        {"error": {"message": "died", "type": "server_error"}},
        {"choices": [{"delta": {"content": "never"}}]},
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
    )
    got = asyncio.run(_collect(chunks, Reply("m", chat=True)))
    assert got == [got[0], {"error": "died"}] and got[0]["message"]["content"] == "a"


def test_text_that_is_not_unicode_from_an_upstream_does_not_break_the_stream() -> None:
    chunks = _sse({"choices": [{"delta": {"content": "a\ud800b"}}]})  # a lone surrogate escape
    got = asyncio.run(_collect(chunks, Reply("m", chat=False)))
    assert got[0]["response"] == "a?b" and got[-1]["done"] is True


def test_a_whole_generate_answer_with_thinking() -> None:
    reply = Reply("g", chat=False)
    reply.add(EventReader().whole({"choices": [{"finish_reason": "length", "message": {
        "content": "yes", "reasoning_content": "so"}}]}))  # fmt: skip
    final = reply.final(0, total_ns=5, load_ns=1, whole=True)
    assert (final["response"], final["thinking"], final["done_reason"]) == ("yes", "so", "length")
    assert final["eval_count"] == 0 and final["total_duration"] == 5


def test_capabilities_from_architecture_template_and_parameters() -> None:
    qwen = "{% if tools %}<tool_call>{% endif %}<think>"
    assert capabilities(architecture="qwen3", chat_template=qwen) == [
        "completion",
        "tools",
        "thinking",
    ]
    assert capabilities(architecture="bert", chat_template=None) == ["embedding"]
    assert capabilities(
        architecture="llama",
        chat_template="{{ messages }}",
        engine_parameters={"embedding": "true", "mmproj": "mmproj.gguf"},
    ) == ["completion", "embedding", "vision", "tools"]


def test_liveness_answers_html_only_to_browsers() -> None:
    assert wants_html("text/html,application/xhtml+xml,*/*;q=0.8")
    assert not wants_html("*/*") and not wants_html("") and not wants_html("application/json")
