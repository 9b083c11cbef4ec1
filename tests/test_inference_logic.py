"""Pure logic of the answers Hearth composes (forced tool calls, `n`, legacy completions) and
of the engine-error rewrite; the end-to-end behaviour is in test_tool_calls.py and
test_inference_exact.py."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.core.errors import EngineError, InvalidParameter
from hearth.engines.events import engine_refusal
from hearth.services.choices import choice_bodies, choice_count, merge_whole, open_choices
from hearth.services.inference import needs_a_look
from hearth.services.legacy import legacy_logprobs, legacy_options, merge_prompts
from hearth.services.toolcalls import (
    CallReader,
    arguments_schema,
    call_prefix,
    call_schema,
    forced_tools,
    function_tools,
    stream_answer,
)

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": CITY}}
TIME = {"type": "function", "function": {"name": "get_time"}}


def _pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    edges = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


@given(
    args=st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
    spaces=st.sampled_from(["", " ", "\n  "]),
)
@pytest.mark.slow
def test_call_reader_gets_name_and_arguments_however_the_text_is_cut(
    args: dict[str, str], cuts: list[int], spaces: str
) -> None:
    arguments = json.dumps(args)
    text = f'{spaces}{{"name":{spaces}"get_weather",{spaces}"arguments": {arguments}{spaces}}}'
    reader = CallReader(None)
    streamed = "".join(reader.feed(piece) for piece in _pieces(text, cuts)) + reader.finish()
    assert reader.name == "get_weather"
    assert json.loads(streamed) == args
    assert json.loads(reader.arguments) == args


def test_call_reader_for_a_named_function_streams_everything() -> None:
    reader = CallReader("f")
    assert reader.feed('{"a": ') + reader.feed("1}") + reader.finish() == '{"a": 1}'
    assert reader.name == "f" and reader.arguments == '{"a": 1}'


def test_call_reader_cut_before_the_name_has_no_call() -> None:
    reader = CallReader(None)
    assert reader.feed('{"na') == "" and reader.finish() == ""
    assert reader.name is None and reader.text == '{"na'


def _completion(text: str, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": reason}
    return {"id": "chatcmpl-7", "created": 17, "model": "m", "choices": [choice], **extra}


def _forced(chunks: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    async def engine() -> Any:
        for chunk in chunks:
            yield chunk

    async def read() -> list[dict[str, Any]]:
        reader = CallReader(name)
        return [c async for c in stream_answer(engine(), reader, include_usage=True)]

    return asyncio.run(read())


def test_a_forced_call_streams_as_openai_streams_calls() -> None:
    """The engine's completion chunks, read through the shared parser, as OpenAI's call deltas:
    role, the call's id and name, its arguments, the finish, then usage with llama.cpp's
    timings; the head is the engine's own id, created and model."""
    usage, timings = {"prompt_tokens": 3, "completion_tokens": 4}, {"predicted_n": 4}
    text = '{"name": "get_weather", "arguments": {"city": "Café"}}'
    chunks = [_completion(text[:9]), _completion(text[9:30]), _completion(text[30:])]
    out = _forced([*chunks, _completion("", "stop", usage=usage, timings=timings)], None)
    head = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 17, "model": "m"}
    assert all({k: c[k] for k in head} == head for c in out)
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in out]
    assert deltas[0] == {"role": "assistant", "content": None}
    call = deltas[1]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["function"] == {"name": "get_weather",
                                                                   "arguments": ""}  # fmt: skip
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-2]]
    assert json.loads("".join(pieces)) == {"city": "Café"}
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls" and deltas[-2] == {}
    assert out[-1] == {**head, "choices": [], "usage": usage, "timings": timings}


def test_a_forced_call_cut_short_or_failed_says_so() -> None:
    cut = _forced([_completion('{"na'), _completion("me", "length")], None)
    assert cut[-2]["choices"][0]["delta"] == {"content": '{"name'}
    assert cut[-1]["choices"][0]["finish_reason"] == "length"
    error = {"error": {"code": 500, "message": "boom", "type": "server_error"}}
    failed = _forced([_completion('{"a": '), error, _completion("1}", "stop")], "f")
    assert failed[-1] == error and len(failed) == 4  # role, call, arguments, the error: the end


def test_forced_tools() -> None:
    tools = function_tools({"tools": [WEATHER, TIME]})
    assert forced_tools({"tool_choice": "required"}, tools) == tools
    assert forced_tools({"tool_choice": "auto"}, tools) == []
    assert forced_tools({}, tools) == []
    named = {"tool_choice": {"type": "function", "function": {"name": "get_time"}}}
    assert forced_tools(named, tools) == [TIME]
    assert forced_tools({"tool_choice": {"type": "function", "name": "get_time"}}, tools) == [TIME]
    with pytest.raises(InvalidParameter):
        forced_tools({"tool_choice": {"type": "function", "function": {"name": "x"}}}, tools)
    with pytest.raises(InvalidParameter):
        function_tools({"tools": [{"type": "function"}]})


def test_schemas_close_objects_and_name_the_function() -> None:
    assert arguments_schema(WEATHER)["additionalProperties"] is False
    assert arguments_schema(TIME) == {"type": "object"}
    one = call_schema([WEATHER])
    assert one["properties"]["name"] == {"const": "get_weather"}
    assert len(call_schema([WEATHER, TIME])["anyOf"]) == 2


def test_call_prefix_follows_the_template() -> None:
    assert call_prefix("... <tool_call> ...", None) == "<tool_call>\n"
    assert call_prefix('<tool_call>{\\"name\\": x, \\"arguments\\": y}', "f") == (
        '<tool_call>\n{"name": "f", "arguments": '
    )
    assert call_prefix('{"name": function name, "parameters": dict}', "f") == (
        '{"name": "f", "parameters": '
    )


def test_needs_a_look_leaves_plain_requests_alone() -> None:
    plain = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert not needs_a_look("chat/completions", plain)
    assert needs_a_look("chat/completions", {**plain, "tools": []})
    assert needs_a_look("chat/completions", {**plain, "n": 2})
    image = [{"type": "image_url", "image_url": {"url": "data:,"}}]
    assert needs_a_look("chat/completions", {"messages": [{"role": "user", "content": image}]})
    assert needs_a_look("completions", {"prompt": "x"})
    assert not needs_a_look("embeddings", {"input": "x"})
    assert needs_a_look("embeddings", {"input": "x", "dimensions": 3})


def test_choices() -> None:
    with pytest.raises(InvalidParameter):
        choice_count({"n": 0})
    assert choice_count({"n": 1}) == 1
    bodies = choice_bodies({"seed": 5, "stream": True}, 3)
    assert [b["seed"] for b in bodies] == [5, 6, 7]
    assert all(b["stream_options"] == {"include_usage": True} for b in bodies)
    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    merged = merge_whole(
        [{"id": "a", "choices": [{"index": 0, "text": "x"}], "usage": usage}] * 2
    )
    assert [c["index"] for c in merged["choices"]] == [0, 1]
    assert merged["usage"] == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}


def test_legacy_logprobs() -> None:
    content = [
        {"token": " a", "logprob": -1.0, "top_logprobs": [{"token": " a", "logprob": -1.0}]},
        {"token": "bc", "logprob": -2.0, "top_logprobs": []},
    ]
    legacy, end = legacy_logprobs({"content": content}, 0, top_wanted=True)
    assert legacy == {"tokens": [" a", "bc"], "token_logprobs": [-1.0, -2.0],
                      "top_logprobs": [{" a": -1.0}, {}], "text_offset": [0, 2]}  # fmt: skip
    assert end == 4
    with pytest.raises(InvalidParameter):
        legacy_options({"prompt": ["a"], "echo": True})
    assert legacy_options({"prompt": "p", "echo": True}) == ("p", False)


def test_engine_refusals_get_string_codes_and_a_fix() -> None:
    numeric = json.dumps({"error": {"code": 400, "message": "bad field", "type": "x"}}).encode()
    error = engine_refusal(400, numeric, "m")
    assert error.status == 400 and error.code == "invalid_request" and "bad field" in error.message
    ctx = {"error": {"code": 400, "message": "too long", "type": "exceed_context_size_error"}}
    error = engine_refusal(400, json.dumps(ctx).encode(), "m")
    assert error.code == "context_length_exceeded" and "ctx_len" in error.message
    assert isinstance(engine_refusal(500, b"not json", "m"), EngineError)
    assert engine_refusal(501, b"{}", "m").status == 400


class _FakeAnswer:
    """An engine answer of `count` SSE chunks, recording whether it was closed."""

    status_code = 200
    content_type = "text/event-stream"
    is_event_stream = True
    remote = False

    def __init__(self, count: int) -> None:
        self.count = count
        self.closed = False

    async def read(self) -> bytes:
        return b""

    async def stream(self) -> Any:
        for i in range(self.count):
            chunk = {"id": "x", "choices": [{"index": 0, "delta": {"content": str(i)}}]}
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True


def test_streamed_choices_end_and_close_when_the_client_stops_reading() -> None:
    """A client that leaves after a few events: every choice's engine answer is closed and
    nothing waits forever on the full queue (a regression: pumps blocked in `finally`)."""
    answers: list[_FakeAnswer] = []

    async def open_one(body: dict[str, Any]) -> Any:
        answers.append(_FakeAnswer(500))
        return answers[-1]

    async def scenario() -> None:
        composed = await open_choices(open_one, {"stream": True}, 3, model="m")
        stream = composed.stream()
        for _ in range(3):
            await stream.__anext__()
        await asyncio.sleep(0.05)  # the pumps fill the queue meanwhile
        await asyncio.wait_for(stream.aclose(), timeout=2)

    asyncio.run(scenario())
    assert len(answers) == 3 and all(a.closed for a in answers)


def test_streamed_choices_interleave_and_finish() -> None:
    async def open_one(body: dict[str, Any]) -> Any:
        return _FakeAnswer(3)

    async def scenario() -> bytes:
        composed = await open_choices(open_one, {"stream": True}, 2, model="m")
        return await asyncio.wait_for(composed.read(), timeout=2)

    events = asyncio.run(scenario()).split(b"\n\n")
    indices = [json.loads(e[6:])["choices"][0]["index"] for e in events if e.startswith(b"data: {")]
    assert sorted(indices) == [0, 0, 0, 1, 1, 1] and events[-2] == b"data: [DONE]"


def test_a_failing_choice_is_its_own_error_not_a_500() -> None:
    async def open_one(body: dict[str, Any]) -> Any:
        raise InvalidParameter("bad", param="echo")

    with pytest.raises(InvalidParameter):
        asyncio.run(open_choices(open_one, {}, 2, model="m"))


def test_stream_options_must_be_an_object() -> None:
    with pytest.raises(InvalidParameter) as caught:
        choice_bodies({"stream": True, "stream_options": "x"}, 2)
    assert caught.value.param == "stream_options"


def test_several_tools_keep_their_defs_resolvable() -> None:
    def tool(name: str) -> dict[str, Any]:
        point = {"type": "object", "properties": {"x": {"type": "number"}}}
        params = {"type": "object", "properties": {"p": {"$ref": "#/$defs/Point"}},
                  "$defs": {"Point": point}}  # fmt: skip
        return {"type": "function", "function": {"name": name, "parameters": params}}

    schema = call_schema([tool("a"), tool("b")])
    assert set(schema["$defs"]) == {"t0_Point", "t1_Point"}
    refs = [o["properties"]["arguments"]["properties"]["p"]["$ref"] for o in schema["anyOf"]]
    assert refs == ["#/$defs/t0_Point", "#/$defs/t1_Point"]


def test_several_prompts_merge_into_one_legacy_answer() -> None:
    usage = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    merged = merge_prompts([{"id": "a", "choices": [{"index": 0, "text": t}], "usage": usage}
                            for t in ("x", "y")])  # fmt: skip
    assert [(c["index"], c["text"]) for c in merged["choices"]] == [(0, "x"), (1, "y")]
    assert merged["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
