"""An engine's answer events (`engines/events.py`), written as Anthropic's stream events.

`Assembler` is the writer: `add` takes one typed event and returns the Anthropic events it
makes, as they come (no buffering beyond held-back stop-sequence text), so the decode rate
through /v1/messages stays /v1/chat/completions' (bench/bench_anthropic.py). What the engine
said is folded in one `Gathered`; the writer keeps only what it has written (which blocks, how
much of the text). A non-streamed request is assembled from the same events
(`Assembler.message`), so both shapes come from one code path.

Stop sequences are matched here rather than by the engine: llama.cpp stops on them but does
not say whether it stopped on one or on end-of-turn, while Anthropic's `stop_reason:
"stop_sequence"` and `stop_sequence` must name it. Text is held back by at most the longest
sequence's length minus one character, so a stream never shows part of a stop sequence. When
one matched, `done` turns true: the caller reads on only until it knows the prompt's size
(`settled`: llama.cpp's timings, which the face asks for in every chunk when there are stop
sequences, or the usage), then closing the engine's stream cancels the generation. An engine
failure mid-answer (`Failure`) becomes Anthropic's `error` event, which the `anthropic`
client raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from hearth.core.errors import HearthError
from hearth.engines.events import (
    AnswerEvent,
    Failure,
    Finish,
    Gathered,
    TextDelta,
    Timings,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    answer_events,
)
from hearth.server.anthropic.shapes import (
    ContentBlock,
    ContentBlockStart,
    ContentBlockStop,
    ErrorEvent,
    Event,
    Message,
    MessageDelta,
    ToolUseBlock,
)
from hearth.server.anthropic.shapes import Usage as Counts
from hearth.server.anthropic.translate import new_id, parse_input
from hearth.server.respond import EVENT_STREAM, Beats, sse

__all__ = ["BEATS", "SSE", "Assembler", "error_event", "events", "sse"]

SSE = EVENT_STREAM
FINISH = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
#: Events read after a stop sequence matched, waiting for the prompt's size: llama.cpp sends
#: its timings in the stop's own chunk; an upstream that sends none is not waited for longer.
AFTER_STOP = 8


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def error_event(message: str, kind: str = "api_error") -> ErrorEvent:
    return {"type": "error", "error": {"type": kind, "message": message}}


#: Anthropic's error types by status, as `faces.anthropic_error` writes them in a response.
_KINDS = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
          413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}  # fmt: skip
_PING = sse({"type": "ping"})


def _failed(error: HearthError) -> bytes:
    """A refusal after the stream began: Anthropic's `error` event, typed as its status would
    have been (the `anthropic` SDKs raise it as APIError with that type)."""
    fallback = "invalid_request_error" if error.status < 500 else "api_error"
    return sse(error_event(error.message, _KINDS.get(error.status, fallback)))


#: A waiting stream's frames (server/respond.py): `ping`, Anthropic's own keep-alive event.
BEATS = Beats(lambda: _PING, _failed)


@dataclass(slots=True)
class TextSpan:
    """A text block as written: `seen.text[start:end]`."""

    start: int
    end: int


@dataclass(slots=True)
class ToolUse:
    """A tool_use block as written; its arguments are the engine's call `index` in `seen`."""

    index: int
    block: ToolUseBlock


@dataclass(slots=True)
class Assembler:
    """One answer being written in Anthropic's shape from the engine's events.

    `add` takes one event and returns the events it makes; `finish_events` the closing ones.
    `done` turns true when a stop sequence matched, `failure` is set when the engine failed:
    either way the caller stops feeding. `message` is the whole Message for a non-streamed
    request, after `finish_events`.
    """

    name: str
    stops: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: new_id("msg"))
    seen: Gathered = field(default_factory=Gathered)  # what the engine said, until `done`
    blocks: list[TextSpan | ToolUse] = field(default_factory=list)  # what has been written
    open_kind: str | None = None  # "text" or "tool_use": the block now being written
    tool_blocks: dict[int, int] = field(default_factory=dict)  # engine call index -> block
    written: int = 0  # how much of seen.text is out; the rest is held back (stop sequences)
    stop_sequence: str | None = None
    done: bool = False
    after_stop: int = 0  # events read since `done`
    failure: Failure | None = None

    def start(self) -> list[Event]:
        """`message_start` and a `ping`, sent as soon as the engine accepted the request."""
        return [{"type": "message_start", "message": self._message([], None)}, {"type": "ping"}]

    def add(self, event: AnswerEvent) -> list[Event]:
        """One engine event -> the Anthropic events it makes (reasoning is not shown)."""
        if self.done:
            self.after_stop += 1
            if isinstance(event, Usage | Timings):
                self.seen.add(event)
            return []
        match event:
            case TextDelta(text=text, choice=0):
                self.seen.add(event)
                return self._text(text)
            case ToolCallStart(choice=0) | ToolCallDelta(choice=0):
                return self._tool(event)
            case Finish(choice=0) | Usage() | Timings():
                self.seen.add(event)
            case Failure(message=message):
                self.failure = event
                return [error_event(message)]
        return []

    def finish_events(self) -> list[Event]:
        """Flush held-back text, close the open block, say why and how much."""
        events = self._flush() if not self.done else []
        events += self._close()
        reason = self.stop_reason()
        end: MessageDelta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": self.stop_sequence},
            "usage": self.counts(),
        }
        return [*events, end, {"type": "message_stop"}]

    def stop_reason(self) -> str:
        if self.stop_sequence is not None:
            return "stop_sequence"
        if self.tool_blocks:
            return "tool_use"
        return FINISH.get(self.seen.finish or "stop", "end_turn")

    @property
    def settled(self) -> bool:
        """Whether to stop reading: a stop sequence matched and the prompt's size is known (the
        usage, or llama.cpp's timings), or no more is worth waiting for (`AFTER_STOP`)."""
        counted = self.seen.usage is not None or self.seen.timings is not None
        return self.done and (counted or self.after_stop >= AFTER_STOP)

    def counts(self) -> Counts:
        """Anthropic's usage. When Hearth cut the answer at a stop sequence the engine never
        reported usage: input is llama.cpp's timings (prompt_n + cache_n, streamed with every
        chunk), output is counted from the pieces seen (one token each, llama.cpp's
        streaming unit)."""
        usage = self.seen.usage
        prompt = usage.prompt_tokens if usage is not None else None
        output = usage.completion_tokens if usage is not None else None
        timings = self.seen.timings
        if prompt is None and timings is not None:
            prompt = _int(timings.get("prompt_n")) + _int(timings.get("cache_n"))
        return {
            "input_tokens": prompt or 0,
            "output_tokens": output if output is not None else self.seen.pieces,
        }

    def message(self) -> Message:
        """The whole Message (non-streamed request), after `finish_events`."""
        content: list[ContentBlock] = []
        for block in self.blocks:
            if isinstance(block, TextSpan):
                content.append({"type": "text", "text": self.seen.text[block.start : block.end]})
            else:
                arguments = self.seen.calls[block.index].arguments
                content.append({**block.block, "input": parse_input(arguments)})
        return self._message(content, self.stop_reason(), self.counts())

    def _message(
        self, content: list[ContentBlock], reason: str | None, usage: Counts | None = None
    ) -> Message:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.name,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": self.stop_sequence if reason else None,
            "usage": usage or {"input_tokens": 0, "output_tokens": 0},
        }

    def _text(self, text: str) -> list[Event]:
        if not self.stops:
            return self._emit(text, len(self.seen.text))
        pending = self.seen.text[self.written :]
        hits = [(pending.find(s), s) for s in self.stops if s in pending]
        if hits:
            at, self.stop_sequence = min(hits)
            self.done = True
            return self._emit(pending[:at], self.written + at) if at else []
        cut = len(pending) - (max(len(s) for s in self.stops) - 1)
        if cut <= 0:
            return []
        return self._emit(pending[:cut], self.written + cut)

    def _flush(self) -> list[Event]:
        """Held-back text, out now (the answer ended, or a tool call began)."""
        end = len(self.seen.text)
        return self._emit(self.seen.text[self.written :], end) if end > self.written else []

    def _emit(self, text: str, end: int) -> list[Event]:
        """Write `text`, which is `seen.text[self.written:end]`."""
        events: list[Event] = []
        if self.open_kind != "text":
            events += self._close()
            self.blocks.append(TextSpan(self.written, end))
            self.open_kind = "text"
            events.append(self._block_start({"type": "text", "text": ""}))
        span = self.blocks[-1]
        assert isinstance(span, TextSpan)
        span.end = self.written = end
        index = len(self.blocks) - 1
        events.append(
            {"type": "content_block_delta", "index": index,
             "delta": {"type": "text_delta", "text": text}}
        )  # fmt: skip
        return events

    def _tool(self, event: ToolCallStart | ToolCallDelta) -> list[Event]:
        events: list[Event] = []
        position = self.tool_blocks.get(event.index)
        if position is None:  # its first fragment, whichever event brought it
            events += self._flush()  # text before the call cannot become a stop any more
            events += self._close()
            if isinstance(event, ToolCallStart):
                call_id, name = event.id or new_id("toolu"), event.name
            else:  # arguments before any start (not llama.cpp's order): the call is unnamed
                call_id, name = new_id("toolu"), ""
            block: ToolUseBlock = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            self.blocks.append(ToolUse(event.index, block))
            position = self.tool_blocks[event.index] = len(self.blocks) - 1
            self.open_kind = "tool_use"
            events.append(self._block_start(block))
        elif isinstance(event, ToolCallStart):
            return []  # already written: a repeated start changes nothing
        self.seen.add(event)
        if isinstance(event, ToolCallDelta):
            events.append(
                {"type": "content_block_delta", "index": position,
                 "delta": {"type": "input_json_delta", "partial_json": event.arguments}}
            )  # fmt: skip
        return events

    def _block_start(self, block: ContentBlock) -> ContentBlockStart:
        index = len(self.blocks) - 1
        return {"type": "content_block_start", "index": index, "content_block": block}

    def _close(self) -> list[Event]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        stop: ContentBlockStop = {"type": "content_block_stop", "index": len(self.blocks) - 1}
        return [stop]


async def events(chunks: AsyncIterator[bytes], reply: Assembler) -> AsyncIterator[Event]:
    """Anthropic's events for an engine stream, `message_start` to `message_stop` (or to an
    `error` event when the engine failed)."""
    for event in reply.start():
        yield event
    async for answer in answer_events(chunks):
        for event in reply.add(answer):
            yield event
        if reply.settled or reply.failure is not None:
            break
    if reply.failure is None:
        for event in reply.finish_events():
            yield event
