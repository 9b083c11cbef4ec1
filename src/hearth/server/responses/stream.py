"""An engine's answer events (`engines/events.py`), written on the fly as Responses API events.

OpenAI's order, each event an SSE `event: <type>` line plus `data: {...}` with a
`sequence_number`: response.created, response.in_progress, then per output item
output_item.added, (text) content_part.added, output_text.delta..., output_text.done,
content_part.done / (call) function_call_arguments.delta..., function_call_arguments.done,
then output_item.done; last response.completed (response.incomplete when cut by
max_output_tokens). Text goes out as soon as a chunk brings it (no buffering beyond the current
SSE event). An engine error mid-answer (`Failure`) becomes an `error` event, which the official
client raises as APIError.

`Events` is the writer: `add` takes one typed event and returns the Responses events it makes.
What the engine said is folded in one `Gathered`; the writer keeps only what it has written
(the open item, where its text or arguments start, the sequence number).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from hearth.core.errors import HearthError
from hearth.engines.events import (
    AnswerEvent,
    Failure,
    Finish,
    Gathered,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    answer_events,
)
from hearth.server.respond import SSE_KEEP_ALIVE, Beats, sse
from hearth.server.responses.shapes import (
    Event,
    FunctionCallItem,
    MessageItem,
    OutputItem,
    Status,
)
from hearth.server.responses.translate import (
    Call,
    call_item,
    envelope,
    finished,
    gathered_usage,
    message_item,
    new_id,
)


class Events:
    """The writer of one streamed Response: which item is open, where its text or arguments
    start in what the engine said (`seen`), the next sequence number."""

    __slots__ = (
        "arguments_from", "base", "failure", "names", "open", "output", "seen", "sequence",
        "text_from", "tool_index",
    )  # fmt: skip

    def __init__(self, call: Call, response_id: str, created: int) -> None:
        self.base = envelope(call, response_id, created)
        self.names = call.names  # flat name -> a namespaced function's own name
        self.sequence = 0
        self.output: list[OutputItem] = []  # finished items
        self.open: MessageItem | FunctionCallItem | None = None  # the item being streamed
        self.seen = Gathered()  # what the engine said
        self.text_from = 0  # the open message's text is seen.text[text_from:]
        self.tool_index: int | None = None  # the engine's index of the open tool call
        self.arguments_from = 0  # its arguments: seen.calls[tool_index].arguments[this:]
        self.failure: Failure | None = None

    def _event(self, kind: str, **fields: object) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self.base),
            self._event("response.in_progress", response=self.base),
        ]

    def add(self, event: AnswerEvent) -> list[Event]:
        """One engine event -> the Responses events it makes (reasoning is not shown)."""
        match event:
            case TextDelta(choice=0):
                return self._text(event)
            case ToolCallStart(choice=0):
                return self._call(event)
            case ToolCallDelta(choice=0):
                return self._arguments(event)
            case Finish(choice=0) | Usage():
                self.seen.add(event)
            case Failure(message=message):
                self.failure = event
                return [self.failed(message)]
        return []

    def _open(self, item: MessageItem | FunctionCallItem) -> list[Event]:
        self.open = item
        index = len(self.output)
        events = [self._event("response.output_item.added", output_index=index, item=item)]
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._event("response.content_part.added", item_id=item["id"],
                                      output_index=index, content_index=0, part=part))  # fmt: skip
            self.text_from = len(self.seen.text)
        return events

    def close(self, status: Status = "completed") -> list[Event]:
        """Finish the open item (if any): its .done events, and it joins the output
        ("incomplete" when max_output_tokens cut it)."""
        item, self.open = self.open, None
        if item is None:
            return []
        where = {"item_id": item["id"], "output_index": len(self.output)}
        done: OutputItem
        if item["type"] == "message":
            done = message_item(item["id"], self.seen.text[self.text_from :], status)
            part = done["content"][0]
            events = [
                self._event("response.output_text.done", **where, content_index=0,
                            text=part["text"], logprobs=[]),
                self._event("response.content_part.done", **where, content_index=0, part=part),
            ]  # fmt: skip
        else:
            assert self.tool_index is not None
            arguments = self.seen.calls[self.tool_index].arguments[self.arguments_from :]
            done = {**item, "arguments": arguments, "status": status}
            events = [self._event("response.function_call_arguments.done", **where,
                                  arguments=arguments)]  # fmt: skip
        events.append(self._event("response.output_item.done", output_index=where["output_index"],
                                  item=done))  # fmt: skip
        self.output.append(done)
        return events

    def _text(self, event: TextDelta) -> list[Event]:
        events = []
        open_item = self.open
        if open_item is None or open_item["type"] != "message":
            events = self.close() + self._open(message_item(new_id("msg"), "", "in_progress"))
            open_item = self.open
            assert open_item is not None
        self.seen.add(event)
        sequence = self.sequence
        self.sequence = sequence + 1
        events.append(
            {"type": "response.output_text.delta", "sequence_number": sequence,
             "item_id": open_item["id"], "output_index": len(self.output), "content_index": 0,
             "delta": event.text, "logprobs": []}
        )  # fmt: skip
        return events

    def _call(self, event: ToolCallStart) -> list[Event]:
        """A new tool call: its item opens (a repeated start of the open call changes nothing)."""
        if self._is_open(event.index):
            return []
        self.seen.add(event)
        return self._open_call(event.index, event.id, event.name)

    def _arguments(self, event: ToolCallDelta) -> list[Event]:
        events = []
        if not self._is_open(event.index):  # arguments of a call not open: it opens, unnamed
            events = self._open_call(event.index, None, "")
        self.seen.add(event)
        assert self.open is not None
        events.append(self._event("response.function_call_arguments.delta",
                                  item_id=self.open["id"], output_index=len(self.output),
                                  delta=event.arguments))  # fmt: skip
        return events

    def _is_open(self, index: int) -> bool:
        return (
            self.open is not None
            and self.open["type"] == "function_call"
            and index == self.tool_index
        )

    def _open_call(self, index: int, call_id: str | None, name: str) -> list[Event]:
        events = self.close()
        self.tool_index = index
        known = self.seen.calls.get(index)
        self.arguments_from = len(known.arguments) if known is not None else 0
        item = call_item(new_id("fc"), call_id or new_id("call"), name, "", "in_progress",
                         self.names)  # fmt: skip
        return events + self._open(item)

    def finish(self) -> list[Event]:
        """Close what is open; the final response.completed (or .incomplete, as OpenAI ends an
        answer cut by max_output_tokens: the official Python client's `get_final_response()`
        (openai 3.63) raises on that event from OpenAI too; iterate the events instead)."""
        events = self.close("incomplete" if self.seen.finish == "length" else "completed")
        final = finished(self.base, self.output, self.seen.finish, gathered_usage(self.seen))
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=final)]

    def failed(self, message: str) -> Event:
        """An `error` event; `error` is repeated so the official client raises APIError."""
        error = {"type": "server_error", "code": "engine_error", "message": message, "param": None}
        return self._event("error", code="engine_error", message=message, param=None, error=error)


def _failed(error: HearthError) -> bytes:
    """A refusal after the stream began: the Responses `error` event (with `error` repeated, as
    `Events.failed` writes it, so the `openai` SDKs raise APIError)."""
    body = error.to_openai()["error"]
    fields = {"code": error.code, "message": error.message, "param": error.param}
    return sse({"type": "error", "sequence_number": 0, **fields, "error": body})


#: A waiting stream's frames (server/respond.py): SSE comments, which every SSE client skips.
BEATS = Beats(lambda: SSE_KEEP_ALIVE, _failed)


async def events(chunks: AsyncIterator[bytes], state: Events) -> AsyncIterator[bytes]:
    """The Responses event stream for an engine's chat-completion event stream."""
    for event in state.start():
        yield sse(event)
    async for answer in answer_events(chunks):
        for event in state.add(answer):
            yield sse(event)
        if state.failure is not None:
            return
    for event in state.finish():
        yield sse(event)
