"""The one parser of an engine's answer (`engines/events.py`), fed what OpenAI-compatible
upstreams really send: every face, thread run and composed answer reads answers through it."""

from __future__ import annotations

from typing import Any

from hearth.engines.events import (
    EventReader,
    Gathered,
    TextDelta,
    ToolCallDelta,
    ToolCallName,
    ToolCallStart,
)
from hearth.server.anthropic.stream import Assembler
from hearth.server.ollama.translate import Reply


def _calls(*fragments: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"tool_calls": list(fragments)}}]}


#: Calls without `index`, each in its own chunk (an upstream that leaves `index` out).
UNINDEXED = [
    _calls({"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":'}}),
    _calls({"function": {"arguments": "1}"}}),
    _calls({"id": "c2", "type": "function", "function": {"name": "g", "arguments": '{"y":2}'}}),
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
]

#: The id first, the name in a later fragment, then the arguments.
LATE_NAME = [
    _calls({"index": 0, "id": "c1", "type": "function"}),
    _calls({"index": 0, "function": {"name": "get_weather"}}),
    _calls({"index": 0, "function": {"arguments": '{"city": "Paris"}'}}),
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
]


def _gathered(chunks: list[dict[str, Any]]) -> Gathered:
    reader, gathered = EventReader(), Gathered()
    for chunk in chunks:
        for event in reader.chunk(chunk):
            gathered.add(event)
    return gathered


def test_calls_without_an_index_are_told_apart_by_their_ids() -> None:
    gathered = _gathered(UNINDEXED)
    calls = [(c.id, c.name, c.arguments) for c in gathered.tool_calls()]
    assert calls == [("c1", "f", '{"x":1}'), ("c2", "g", '{"y":2}')]
    assert gathered.finish == "tool_calls"


def test_a_name_sent_after_the_first_fragment_is_kept() -> None:
    reader = EventReader()
    events = [event for chunk in LATE_NAME for event in reader.chunk(chunk)]
    assert events[0] == ToolCallStart(0, "c1", "")
    assert ToolCallName(0, "get_weather") in events
    assert ToolCallDelta(0, '{"city": "Paris"}') in events
    (call,) = _gathered(LATE_NAME).tool_calls()
    assert (call.id, call.name, call.arguments) == ("c1", "get_weather", '{"city": "Paris"}')


def test_a_whole_message_s_calls_without_index_or_id_stay_apart() -> None:
    message = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]}  # fmt: skip
    reader, gathered = EventReader(), Gathered()
    for event in reader.whole({"choices": [{"index": 0, "message": message}]}):
        gathered.add(event)
    assert [c.name for c in gathered.tool_calls()] == ["f", "g"]


def test_every_face_writes_such_calls_as_the_upstream_meant_them() -> None:
    """Ollama's final line and Anthropic's tool_use blocks, from the same upstream chunks."""
    reader, reply = EventReader(), Reply("m", chat=True)
    for chunk in UNINDEXED:
        reply.partial(reader.chunk(chunk), 0)
    final = reply.final(0, total_ns=1, load_ns=1, whole=False)
    assert final["message"]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"x": 1}}},
        {"function": {"name": "g", "arguments": {"y": 2}}},
    ]

    reader, reply = EventReader(), Reply("m", chat=True)
    for chunk in LATE_NAME:
        reply.partial(reader.chunk(chunk), 0)
    final = reply.final(0, total_ns=1, load_ns=1, whole=False)
    assert final["message"]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]

    reader, assembler = EventReader(), Assembler("m")
    for chunk in UNINDEXED:
        for event in reader.chunk(chunk):
            assembler.add(event)
    assembler.finish_events()
    blocks = assembler.message()["content"]
    assert [(b["type"], b.get("name"), b.get("input")) for b in blocks] == [
        ("tool_use", "f", {"x": 1}),
        ("tool_use", "g", {"y": 2}),
    ]


def test_text_and_a_call_in_one_chunk_keep_their_order() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "Let me look.", "tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}]}}]}  # fmt: skip
    assert EventReader().chunk(chunk) == [
        TextDelta("Let me look."),
        ToolCallStart(0, "c1", "f"),
        ToolCallDelta(0, "{}"),
    ]
