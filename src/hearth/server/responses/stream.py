"""An engine's chat-completion chunks, rewritten on the fly as Responses API events.

OpenAI's order, each event an SSE `event: <type>` line plus `data: {...}` with a
`sequence_number`: response.created, response.in_progress, then per output item
output_item.added, (text) content_part.added, output_text.delta..., output_text.done,
content_part.done / (call) function_call_arguments.delta..., function_call_arguments.done,
then output_item.done; last response.completed (response.incomplete when cut by
max_output_tokens). Text goes out as soon as a chunk brings it (no buffering beyond the current
SSE event). An engine error mid-answer becomes an `error` event, which the official client
raises as APIError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from hearth.server.engine_events import engine_chunks, engine_error, sse
from hearth.server.responses.translate import (
    Call,
    call_item,
    envelope,
    finished,
    message_item,
    new_id,
)

Event = dict[str, Any]


class Events:
    """The state of one streamed Response: which item is open, what it holds so far."""

    def __init__(self, call: Call, response_id: str, created: int) -> None:
        self.base = envelope(call, response_id, created)
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # finished items
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.text = ""  # the open message's text so far
        self.tool_index: Any = None  # the engine's index of the open tool call
        self.finish_reason: Any = None
        self.usage: Any = None

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self.base),
            self._event("response.in_progress", response=self.base),
        ]

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output)}

    def _open(self, item: dict[str, Any]) -> list[Event]:
        self.open = item
        added = dict(item)  # a snapshot: the open item changes as deltas arrive
        index = len(self.output)
        events = [self._event("response.output_item.added", output_index=index, item=added)]
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._event("response.content_part.added", **self._where(),
                                      content_index=0, part=part))  # fmt: skip
            self.text = ""
        return events

    def close(self) -> list[Event]:
        """Finish the open item (if any): its .done events, and it joins the output."""
        item, self.open = self.open, None
        if item is None:
            return []
        where = {"item_id": item["id"], "output_index": len(self.output)}
        if item["type"] == "message":
            done = message_item(item["id"], self.text)
            part = done["content"][0]
            events = [
                self._event("response.output_text.done", **where, content_index=0,
                            text=part["text"], logprobs=[]),
                self._event("response.content_part.done", **where, content_index=0, part=part),
            ]  # fmt: skip
        else:
            done = {**item, "status": "completed"}
            events = [self._event("response.function_call_arguments.done", **where,
                                  arguments=item["arguments"])]  # fmt: skip
        events.append(self._event("response.output_item.done", output_index=where["output_index"],
                                  item=done))  # fmt: skip
        self.output.append(done)
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open["type"] != "message":
            events += self.close() + self._open(message_item(new_id("msg"), "", "in_progress"))
        assert self.open is not None
        self.text += text
        events.append(self._event("response.output_text.delta", **self._where(), content_index=0,
                                  delta=text, logprobs=[]))  # fmt: skip
        return events

    def _tool(self, delta: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        function = delta.get("function") or {}
        index = delta.get("index", 0)
        if self.open is None or self.open["type"] != "function_call" or index != self.tool_index:
            self.tool_index = index
            call_id = str(delta.get("id") or new_id("call"))
            item = call_item(new_id("fc"), call_id, str(function.get("name") or ""), "",
                             "in_progress")  # fmt: skip
            events += self.close() + self._open(item)
        assert self.open is not None
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self.open["arguments"] += arguments
            events.append(self._event("response.function_call_arguments.delta", **self._where(),
                                      delta=arguments))  # fmt: skip
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """One chat.completion.chunk -> the events it makes."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        events: list[Event] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                events += self._text(text)
            for tool in delta.get("tool_calls") or []:
                if isinstance(tool, dict):
                    events += self._tool(tool)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[Event]:
        """Close what is open; the final response.completed (or .incomplete)."""
        events = self.close()
        final = finished(self.base, self.output, self.finish_reason, self.usage)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=final)]

    def failed(self, message: str) -> Event:
        """An `error` event; `error` is repeated so the official client raises APIError."""
        error = {"type": "server_error", "code": "engine_error", "message": message, "param": None}
        return self._event("error", code="engine_error", message=message, param=None, error=error)


async def events(chunks: AsyncIterator[bytes], state: Events) -> AsyncIterator[bytes]:
    """The Responses event stream for an engine's chat-completion event stream."""
    for event in state.start():
        yield sse(event)
    async for chunk in engine_chunks(chunks):
        error = engine_error(chunk)
        if error is not None:
            yield sse(state.failed(error))
            return
        for event in state.feed(chunk):
            yield sse(event)
    for event in state.finish():
        yield sse(event)
