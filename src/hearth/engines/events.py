"""An engine's answer as one typed event stream, for everything that reads it: the faces that speak
another dialect (Ollama's NDJSON, Anthropic's and the Responses API's events), thread runs, and
the answers Hearth composes itself (forced tool calls, `n` choices, legacy completions).

The engine sends `data: {chunk}` lines; a line may arrive split across reads. `engine_chunks`
yields each complete chunk as a dict as soon as its line is whole (no buffering beyond it, so
the decode rate through a rewriting face stays the pass-through's), skipping `[DONE]` and
anything that is not a JSON object, and the engine's prompt progress (llama.cpp's
`prompt_progress` chunks, sent while it reads a prompt when asked with `return_progress`): they
are no part of the answer. `PromptProgress` is their typed reading (`prompt_progress`), for
what shows them: the server turns them into keep-alives and progress frames
(`server/respond.py`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hearth.core.errors import EngineError, HearthError, InvalidRequest, from_wire
from hearth.engines.context import EXCEED, exceeded, overflow_of


def _payloads(buffer: bytearray) -> list[bytes]:
    """Complete `data:` payloads in `buffer` (consumed); a partial line stays for later."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    complete = bytes(buffer[: end + 1])
    del buffer[: end + 1]
    return [raw[5:].strip() for raw in complete.split(b"\n") if raw.startswith(b"data:")]


def _chunk(payload: bytes) -> dict[str, Any] | None:
    if not payload or payload == b"[DONE]":
        return None
    try:
        parsed = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or "prompt_progress" in parsed:
        return None
    return parsed


async def engine_chunks(chunks: AsyncIterator[bytes]) -> AsyncGenerator[dict[str, Any], None]:
    """The engine's stream chunks, parsed, as each line completes."""
    buffer = bytearray()
    async for raw in chunks:
        buffer += raw
        for payload in _payloads(buffer):
            chunk = _chunk(payload)
            if chunk is not None:
                yield chunk


def engine_error(chunk: Mapping[str, Any]) -> str | None:
    """The message of an error chunk (the engine failed mid-answer), else None."""
    error = chunk.get("error")
    if not error:
        return None
    text = error.get("message") if isinstance(error, dict) else error
    return str(text or "the engine failed")


def engine_refusal(status: int, content: bytes, model: str) -> HearthError:
    """An engine's error response as a Hearth error: OpenAI's shape (a string `code`, a `type`)
    and a message that says what to change. llama.cpp answers with a numeric `code` and its own
    `type` names; only error responses are read here, never a successful answer."""
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    text = message.strip() if isinstance(message, str) and message.strip() else ""
    kind = error.get("type")
    overflow = overflow_of(content) if kind == EXCEED else None
    if overflow is not None:  # the manager names more (trained context, why no reload)
        return exceeded(model, overflow)
    if kind == "not_supported_error" or status == 501:
        return InvalidRequest(
            f"Model '{model}' cannot do this: {text or 'not supported by its engine'}.",
            code="not_supported",
        )
    if status in (400, 422):
        return InvalidRequest(
            f"The engine refused the request: {text or f'HTTP {status}'}. Fix the field it names "
            "and send it again.",
            code="invalid_request",
        )
    if status < 500 or status == 503:  # not found, too large, busy...: keep what it said
        return from_wire(status, {"error": {"message": f"The engine answered: {text}"}}, text)
    return EngineError(
        f"The engine of model '{model}' failed: {text or f'HTTP {status}'}. Try again; if it "
        f"persists, the engine's log in <home>/logs/ says why (GET /v1/running names it).",
        code="engine_error",
    )


# ---- the answer as typed events ---------------------------------------------------------------
#
# Every face, thread run and composed answer reads an engine's answer through these: one parser
# (`EventReader`, over OpenAI chat-completion or completion chunks and whole responses) and one
# accumulator (`Gathered`). A face is a request translator plus a writer of these events.


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text (chat `delta.content`, or a legacy completion's `text`)."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """The model's thinking (llama.cpp's `reasoning_content`)."""

    text: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A new tool call: its position among the answer's calls, the engine's id (None when it
    gave none: the writer makes one) and the function's name."""

    index: int
    id: str | None
    name: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallName:
    """More of a tool call's name, sent after the call's first fragment (some upstreams send
    the id first and the name later)."""

    index: int
    name: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """More of a tool call's arguments (a fragment of a JSON string)."""

    index: int
    arguments: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Finish:
    """Why a choice ended: OpenAI's finish_reason ("stop", "length", "tool_calls", ...)."""

    reason: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the engine reported them (`raw` is OpenAI's usage object, kept whole)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Timings:
    """llama.cpp's own counters (prompt_n, prompt_ms, predicted_n, predicted_ms, ...)."""

    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Failure:
    """The engine failed mid-answer (`data: {"error": ...}`): nothing follows."""

    message: str
    code: str = "engine_error"


@dataclass(frozen=True, slots=True)
class PromptProgress:
    """How far the engine has read the prompt (llama.cpp's `prompt_progress`): of `total`
    tokens, `cache` came from its cache and `processed` are read (cache included); `time_ms`
    since it began. Not part of the answer: no accumulator folds it."""

    total: int
    cache: int
    processed: int
    time_ms: float


def prompt_progress(chunk: Mapping[str, Any]) -> PromptProgress | None:
    """A chunk's prompt progress, if it is one (any field missing or odd reads as 0)."""
    raw = chunk.get("prompt_progress")
    if not isinstance(raw, dict):
        return None
    time_ms = raw.get("time_ms")
    return PromptProgress(
        _count(raw.get("total")) or 0,
        _count(raw.get("cache")) or 0,
        _count(raw.get("processed")) or 0,
        float(time_ms) if isinstance(time_ms, int | float) and time_ms >= 0 else 0.0,
    )


AnswerEvent = (
    TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallName
    | ToolCallDelta
    | Finish
    | Usage
    | Timings
    | Failure
    | PromptProgress
)


def _count(value: Any) -> int | None:
    return value if type(value) is int else None


class EventReader:
    """Turns OpenAI chunks (or one whole response) into typed events.

    It remembers which tool calls it has seen, per choice, so the first fragment of a call is a
    `ToolCallStart` (with whatever arguments it carried as a following `ToolCallDelta`) whoever
    sent it: llama.cpp, vLLM or another OpenAI-compatible upstream.
    """

    __slots__ = ("_calls", "_last")

    def __init__(self) -> None:
        self._calls: set[tuple[int, int]] = set()
        #: per choice, the call the last fragment belonged to, and that call's id
        self._last: dict[int, tuple[int, str | None]] = {}

    def chunk(self, chunk: Mapping[str, Any]) -> list[AnswerEvent]:
        """One `chat.completion.chunk` (or legacy `text_completion` chunk)."""
        error = engine_error(chunk)
        if error is not None:
            return [Failure(error, _error_code(chunk.get("error")))]
        if "prompt_progress" in chunk:  # the engine reading the prompt: nothing answered yet
            progress = prompt_progress(chunk)
            return [progress] if progress is not None else []
        events: list[AnswerEvent] = []
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                if isinstance(choice, dict):
                    self._choice(choice, choice.get("delta"), events)
        self._counters(chunk, events)
        return events

    def whole(self, response: Mapping[str, Any]) -> list[AnswerEvent]:
        """A non-streamed `chat.completion` (or `text_completion`), as the events a stream of it
        would have made."""
        events: list[AnswerEvent] = []
        for choice in response.get("choices") or []:
            if isinstance(choice, dict):
                self._choice(choice, choice.get("message"), events, whole=True)
        self._counters(response, events)
        return events

    def _choice(
        self, choice: Mapping[str, Any], delta: Any, events: list[AnswerEvent], whole: bool = False
    ) -> None:
        at = choice.get("index", 0)
        at = at if type(at) is int else 0
        if isinstance(delta, dict):
            thought = delta.get("reasoning_content")
            if isinstance(thought, str) and thought:
                events.append(ReasoningDelta(thought, at))
            text = delta.get("content")
            if isinstance(text, str) and text:
                events.append(TextDelta(text, at))
            calls = delta.get("tool_calls")
            if calls:
                for position, call in enumerate(calls):
                    if isinstance(call, dict):
                        default = position if whole else None
                        self._call(call, default, at, events)
        else:
            text = choice.get("text")
            if isinstance(text, str) and text:
                events.append(TextDelta(text, at))
        reason = choice.get("finish_reason")
        if reason:
            events.append(Finish(str(reason), at))

    def _call(
        self, call: Mapping[str, Any], default: int | None, at: int, events: list[AnswerEvent]
    ) -> None:
        raw_id = call.get("id")
        call_id = raw_id if isinstance(raw_id, str) and raw_id else None
        index = call.get("index")
        if type(index) is not int:
            index = default if default is not None else self._unindexed(at, call_id)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        name = name if isinstance(name, str) else ""
        if (at, index) not in self._calls:
            self._calls.add((at, index))
            events.append(ToolCallStart(index, call_id, name, at))
        elif name:  # the name after the call's first fragment (some upstreams): more of it
            events.append(ToolCallName(index, name, at))
        self._last[at] = (index, call_id or self._last.get(at, (index, None))[1])
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(index, arguments, at))
        elif isinstance(arguments, dict):  # some upstreams send the object itself
            events.append(ToolCallDelta(index, json.dumps(arguments, ensure_ascii=False), at))

    def _unindexed(self, at: int, call_id: str | None) -> int:
        """The call a streamed fragment without `index` belongs to (some upstreams leave it
        out): a new id starts the next call; no id, or the same one, continues the last."""
        last = self._last.get(at)
        if last is not None and (call_id is None or call_id == last[1]):
            return last[0]
        return sum(1 for choice, _ in self._calls if choice == at)

    @staticmethod
    def _counters(chunk: Mapping[str, Any], events: list[AnswerEvent]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            events.append(
                Usage(
                    _count(usage.get("prompt_tokens")),
                    _count(usage.get("completion_tokens")),
                    usage,
                )
            )
        timings = chunk.get("timings")
        if isinstance(timings, dict):
            events.append(Timings(timings))


def _error_code(error: Any) -> str:
    if isinstance(error, dict):
        found = error.get("code") or error.get("type")
        if isinstance(found, str | int) and not isinstance(found, bool) and found != "":
            return str(found)  # llama.cpp's numeric code (500) is kept, as text
    return "engine_error"


async def answer_events(chunks: AsyncIterator[bytes]) -> AsyncGenerator[AnswerEvent, None]:
    """An engine's SSE bytes as typed events, each as soon as its line is whole."""
    reader = EventReader()
    async for chunk in engine_chunks(chunks):
        for event in reader.chunk(chunk):
            yield event


class EventSplitter:
    """`answer_events` for a reader that is not a generator: bytes in as they pass (a thread
    run forwards them to its client untouched), the events of every line they complete out."""

    __slots__ = ("_buffer", "_reader")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._reader = EventReader()

    def feed(self, raw: bytes) -> list[AnswerEvent]:
        """The events of the lines `raw` completes; a partial line waits for the next bytes."""
        self._buffer += raw
        events: list[AnswerEvent] = []
        for payload in _payloads(self._buffer):
            chunk = _chunk(payload)
            if chunk is not None:
                events += self._reader.chunk(chunk)
        return events


@dataclass
class GatheredCall:
    """One tool call, gathered: id (None if the engine gave none), name, arguments so far."""

    id: str | None
    name: str
    arguments: str = ""


@dataclass
class Gathered:
    """What one choice of an answer has said so far, folded from its events: the one
    accumulator behind every non-streamed face, thread runs and composed answers."""

    choice: int = 0
    text: str = ""
    reasoning: str = ""
    calls: dict[int, GatheredCall] = field(default_factory=dict)
    finish: str | None = None
    usage: Usage | None = None
    timings: dict[str, Any] | None = None
    failure: Failure | None = None
    pieces: int = 0  # text, reasoning and argument events: output tokens when no usage comes

    def add(self, event: AnswerEvent) -> None:
        """Fold one event in (events of other choices are ignored)."""
        match event:
            case TextDelta(text, at) if at == self.choice:
                self.text += text
                self.pieces += 1
            case ReasoningDelta(text, at) if at == self.choice:
                self.reasoning += text
                self.pieces += 1
            case ToolCallStart(index, call_id, name, at) if at == self.choice:
                self.calls[index] = GatheredCall(call_id, name)
            case ToolCallName(index, name, at) if at == self.choice:
                self.calls.setdefault(index, GatheredCall(None, "")).name += name
            case ToolCallDelta(index, arguments, at) if at == self.choice:
                self.calls.setdefault(index, GatheredCall(None, "")).arguments += arguments
                self.pieces += 1
            case Finish(reason, at) if at == self.choice:
                self.finish = reason
            case Usage():
                self.usage = event
            case Timings(raw):
                self.timings = raw
            case Failure():
                self.failure = event

    def tool_calls(self) -> list[GatheredCall]:
        """The calls in the engine's order."""
        return [self.calls[i] for i in sorted(self.calls)]
