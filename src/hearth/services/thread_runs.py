"""A run: the thread's model answers, and the answer is kept in the thread as it grows.

The order is what makes a crash harmless: the assistant message is appended with status
`pending` before the engine is asked, its growing text is saved (an atomic rewrite) at most every
`SAVE_EVERY` seconds while the engine's events pass through to the client untouched, and the
end writes `ready` (with usage, llama.cpp's timings and the time to first token), `stopped` (the
client left: the stop button) or `error`. A crash leaves a `pending` message holding the text so
far, never a torn line, and the next start (or a read of the thread) marks such an answer
`error`, keeping its text (`hearth.threads.interrupted`). The request goes through
`Services.open_inference`, the path of /v1/chat/completions: load on demand, keep_alive,
replicas and the engine's checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from hearth.core.errors import ContextExceeded, HearthError, InvalidRequest, NotFound
from hearth.core.keepalive import keep_alive_param
from hearth.engines.events import engine_refusal
from hearth.services import thread_loop
from hearth.services.context_fit import ROUNDS, Fitter, policy_of
from hearth.services.thread_tools import AWAITING, ThreadTools, ToolPlan, run_tools
from hearth.threads import interrupted, jan
from hearth.threads.answer import ThreadReply, chat_request
from hearth.threads.edits import need_object, now_ms
from hearth.threads.ids import new_message_id
from hearth.threads.store import ThreadStore
from hearth.threads.views import message_view, text_part, thread_parameters

if TYPE_CHECKING:
    from hearth.engines.proxy import Answer


class ThreadService(Protocol):
    """What a run needs of `services.threads.ThreadService` (a protocol, so that the thread
    service may start runs without the two modules importing each other)."""

    store: ThreadStore
    live: set[str]
    tools: ThreadTools | None  # None: no MCP tools (a service built without them)

    def check_model(self, model_id: str) -> object: ...

    def open_inference(
        self, path: str, body: dict[str, Any], keep_alive: float | None
    ) -> Awaitable[Answer]: ...

    def touch(self, thread_id: str) -> None: ...

    @property
    def context_overflow(self) -> str:
        """The `context_overflow` setting: a conversation's policy unless it names its own."""
        ...


log = logging.getLogger("hearth.threads")

#: The growing answer is written at most this often (seconds).
SAVE_EVERY = 0.5


async def start(
    service: ThreadService, thread_id: str, body: Any, message_id: str | None = None
) -> Run:
    """Check the request, append the pending answer, open the engine's stream. A refusal
    before the stream (unknown model, engine failed to load) marks the message `error` and is
    raised; a request that cannot run (no model, bad parameters) writes nothing."""
    body = need_object(body, "run fields (model, stream, parameters)")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    store = service.store
    thread = await asyncio.to_thread(store.get, thread_id)
    stored = await asyncio.to_thread(store.messages, thread_id, thread)
    chat, keep_alive = chat_request(thread.raw, [raw for _, raw in stored], body)
    if body.get("keep_alive") is not None:
        keep_alive = body["keep_alive"]
    seconds = None if keep_alive is None else keep_alive_param(keep_alive)
    await asyncio.to_thread(service.check_model, chat["model"])
    run = Run(service, thread_id, chat["model"], stream=stream, message_id=message_id)
    policy = policy_of(thread.raw.get("metadata"), service.context_overflow)
    plan = await _plan(service, thread_id, thread.raw, body)
    if plan is not None:
        run.with_tools(plan, [raw for _, raw in stored], thread.raw, body, (seconds, policy))
        run.first_choice = thread_loop.round_choice(run, 1, chat.get("tool_choice"))
        chat.update(tools=plan.chat_tools(), tool_choice=run.first_choice)
    try:
        with anyio.CancelScope(shield=True):  # once written, the pending answer is finished
            await asyncio.to_thread(run.append_pending)
        upstream, run.dropped = await _open_fitting(service, chat, seconds, policy)
        if run.dropped:
            log.info("thread %s: %d older messages left out to fit", thread_id, run.dropped)
        if upstream.status_code != 200:
            content = await upstream.read()
            raise engine_refusal(upstream.status_code, content, str(chat["model"]))
    except HearthError as exc:
        run.reply.fail(exc.message, exc.code)
        await run.finish(ended=True)
        raise
    except BaseException:  # the client left while the model loaded
        with anyio.CancelScope(shield=True):
            await run.finish(ended=False)
        raise
    run.upstream = upstream
    return run


async def _plan(
    service: ThreadService, thread_id: str, thread: dict[str, Any], body: dict[str, Any]
) -> ToolPlan | None:
    """The run's MCP tools (services/thread_tools.py): those its body names, else its
    conversation's; None for a plain chat. A server that is not configured is a 400."""
    named = run_tools(body.get("tools"))
    if service.tools is None:
        if named:
            raise InvalidRequest("This server runs no MCP tools.", param="tools")
        return None
    return await service.tools.plan(thread_id, thread.get("metadata"), named)


async def _open_fitting(
    service: ThreadService, chat: dict[str, Any], keep_alive: float | None, policy: str
) -> tuple[Answer, int]:
    """The engine's answer to the run's chat, with the oldest turns left out as the policy
    allows while it is too long (services/context_fit.py); and how many messages were."""
    fitter = Fitter(service.open_inference, chat, keep_alive)
    while True:
        try:
            answer = await service.open_inference("chat/completions", chat, keep_alive)
            return answer, fitter.dropped
        except ContextExceeded as exc:
            if policy == "stop":
                raise ContextExceeded(
                    f"This conversation no longer fits the model's context. {exc.message} Its "
                    'context policy is "stop": start a new conversation, delete older messages, '
                    'or choose "Leave out the oldest turns" in its settings (metadata.'
                    'context_overflow "drop-oldest").',
                    prompt_tokens=exc.prompt_tokens, n_ctx=exc.n_ctx, need=exc.need,
                ) from None  # fmt: skip
            if exc.prompt_tokens is None or exc.n_ctx is None or fitter.rounds >= ROUNDS:
                raise
            if not await fitter.drop_for(exc):
                raise ContextExceeded(
                    "Even with every older turn left out, the latest message does not fit the "
                    f"model's context. {exc.message}",
                    prompt_tokens=exc.prompt_tokens, n_ctx=exc.n_ctx, need=exc.need,
                ) from None  # fmt: skip


class Run:
    """One answer being written into a thread (with MCP tools: over several rounds, see
    services/thread_loop.py)."""

    def __init__(
        self,
        service: ThreadService,
        thread_id: str,
        model: str,
        *,
        stream: bool,
        message_id: str | None = None,
    ) -> None:
        self.service = service
        self.thread_id = thread_id
        self.model = model
        self.stream_requested = stream
        self.message_id = message_id or new_message_id()
        self.reply = ThreadReply()  # the message being written; `upstream` is the engine's answer
        self.upstream: Answer | None = None
        self.message: dict[str, Any] = {}
        self._saved_at = time.monotonic()
        self._saving: asyncio.Task[None] | None = None  # a save of the growing answer
        self._gone = False  # the message (or thread) was deleted meanwhile: stop writing
        self.dropped = 0  # older messages left out of what the model saw (context_fit.py)
        self._streamed = False  # `events` began: its end finishes the answer
        # The tool loop's state (None/empty for a plain chat)
        self.plan: ToolPlan | None = None
        self.calls: list[dict[str, Any]] = []  # Jan's metadata.tool_calls of this message
        self.allowed_once: set[str] = set()  # call ids the user allowed
        self.denied: list[str] = []  # call ids the user denied (a continuation tells them)
        self.awaiting: dict[str, Any] | None = None  # the call that waits for the user
        self.resuming = False  # a continuation after an approval: its calls run first
        self.first_choice: Any = "auto"
        self.asked_choice: Any = None  # the run's own tool_choice parameter, if any
        self.before = ("", "")  # (text, reasoning) of the rounds before this one
        self.ttft_ms: float | None = None
        self._history: list[dict[str, Any]] = []
        self._thread: dict[str, Any] = {}
        self._body: dict[str, Any] = {}
        self._open: tuple[float | None, str] = (None, "drop-oldest")

    @property
    def tools(self) -> ThreadTools:
        assert self.service.tools is not None
        return self.service.tools

    def with_tools(
        self,
        plan: ToolPlan,
        history: list[dict[str, Any]],
        thread: dict[str, Any],
        body: dict[str, Any],
        opening: tuple[float | None, str],
    ) -> None:
        """Run the tool loop: `history` (the messages before this answer), `thread` and `body`
        build each round's request; `opening` is (keep_alive, context policy)."""
        self.plan, self._history, self._thread, self._body = plan, history, thread, body
        self._open = opening
        params = body.get("parameters")  # (chat_request has refused one that is not an object)
        own = {**thread_parameters(thread), **(params if isinstance(params, dict) else {})}
        self.asked_choice = own.get("tool_choice")  # read as chat_request reads it

    def append_pending(self) -> None:
        """Write the empty answer, marked as this process's (so a server that died writing it
        is recognised) and registered as live before it is on disk (so no sweep takes it)."""
        self.message = {
            "id": self.message_id,
            "object": "thread.message",
            "thread_id": self.thread_id,
            "role": "assistant",
            "content": [text_part("")],
            "status": "pending",
            "created_at": now_ms(),
            "model": self.model,
            "metadata": interrupted.writer_mark(),
        }
        self.service.live.add(self.message_id)
        try:
            self.service.store.append(self.thread_id, [self.message])
        except BaseException:
            self.service.live.discard(self.message_id)
            raise
        self.service.touch(self.thread_id)

    async def events(self, chunks: AsyncIterator[bytes] | None = None) -> AsyncIterator[bytes]:
        """The engine's SSE bytes (`chunks`: the upstream's stream as the server watches it),
        unchanged, while the answer is gathered (from the same bytes, through the one parser of
        engine answers) and saved. With tools, the rounds of the loop (thread_loop.drive)."""
        self._streamed = True
        ended = False
        try:
            if self.plan is not None:
                first = None
                if not self.resuming:
                    assert self.upstream is not None
                    first = chunks if chunks is not None else self.upstream.stream()
                async with contextlib.aclosing(thread_loop.drive(self, first)) as rounds:
                    async for raw in rounds:
                        yield raw
            else:
                assert self.upstream is not None
                async for raw in chunks if chunks is not None else self.upstream.stream():
                    self.reply.feed(raw)
                    yield raw
                    self.save_growing()
            ended = True
        finally:
            with anyio.CancelScope(shield=True):  # the client may be gone: save anyway
                await thread_loop.close_quietly(self)
                await self.finish(ended=ended)

    async def release(self) -> None:
        """Close the engine's answer; a run whose stream never began (its client left at once)
        is finished `stopped` here, as `events` would have."""
        await thread_loop.close_quietly(self)
        if not self._streamed:
            self._streamed = True
            await self.finish(ended=False)

    async def whole(self) -> dict[str, Any]:
        """Run to the end without a client stream (stream=false): the final message."""
        async for _ in self.events():
            pass
        return message_view(self.message, self.message_id, self.thread_id)

    async def next_round(self, choice: Any) -> bytes | None:
        """Open the loop's next round: the message so far (its calls answered) goes back to the
        model. None when it opened; else the in-stream error, the refusal kept in the reply."""
        await thread_loop.close_quietly(self)
        self.upstream = None
        self._fold()
        plan = self.plan
        assert plan is not None
        so_far = {
            "id": self.message_id,
            "role": "assistant",
            "status": "ready",
            "content": [text_part(self.before[0])],
            "metadata": {"tool_calls": self.calls},
        }
        chat, _ = chat_request(self._thread, [*self._history, so_far], self._body)
        chat.update(tools=plan.chat_tools(), tool_choice=choice)
        keep_alive, policy = self._open
        try:
            upstream, dropped = await _open_fitting(self.service, chat, keep_alive, policy)
            if upstream.status_code != 200:
                content = await upstream.read()
                await upstream.close()
                raise engine_refusal(upstream.status_code, content, str(chat["model"]))
        except HearthError as exc:
            self.reply.fail(exc.message, exc.code)
            return b"data: " + json.dumps(exc.to_openai()).encode() + b"\n\n"
        self.upstream, self.dropped = upstream, max(self.dropped, dropped)
        return None

    def _fold(self) -> None:
        """Keep the finished round's text and start a fresh reply for the next."""
        text, reasoning = self.text_and_reasoning()
        if self.ttft_ms is None:
            self.ttft_ms = self.reply.ttft_ms
        self.before = (text, reasoning)
        self.reply = ThreadReply()

    def text_and_reasoning(self) -> tuple[str, str]:
        def join(a: str, b: str) -> str:
            return f"{a}\n\n{b}" if a and b else a or b

        return join(self.before[0], self.reply.text), join(self.before[1], self.reply.reasoning)

    def parts(self) -> list[dict[str, Any]]:
        """The message content so far: every round's text, one part (as Jan writes it)."""
        if self.plan is None:
            return self.reply.parts()
        text, reasoning = self.text_and_reasoning()
        return [text_part(jan.with_think(reasoning, text))]

    def save_growing(self) -> None:
        """Save the answer so far every SAVE_EVERY seconds, beside the stream, not in it: a
        long thread's rewrite must not hold back the next token. One save at a time."""
        due = time.monotonic() - self._saved_at >= SAVE_EVERY
        if due and (self._saving is None or self._saving.done()):
            self._saved_at = time.monotonic()
            self._saving = asyncio.create_task(self._save(final=False))

    async def save_now(self) -> None:
        """Save the answer as it is (a tool call just finished), after any save under way."""
        if self._saving is not None:
            await asyncio.wait([self._saving])
        await self._save(final=False)

    async def finish(self, *, ended: bool) -> None:
        """The last write: `ready`, `error` or (the client left first) `stopped`."""
        if self._saving is not None:
            await asyncio.wait([self._saving])  # an older partial save never lands after this
        try:
            await self._save(final=True, ended=ended)
        finally:
            self.service.live.discard(self.message_id)  # a pending answer left now is orphaned
        with contextlib.suppress(HearthError):
            await asyncio.to_thread(self.service.touch, self.thread_id)

    def _final_metadata(self, stored: Any) -> dict[str, Any]:
        """The message's metadata at the end: what it held (less the writer's mark and a
        decided approval), and the run's figures and calls."""
        kept = interrupted.without_mark(stored)
        kept.pop(AWAITING, None)
        reply = self.reply.metadata()
        if self.plan is not None:
            reply.pop("tool_calls", None)
            if self.calls:
                reply["tool_calls"] = self.calls
            if self.awaiting is not None:
                reply[AWAITING] = self.awaiting
            ttft = self.ttft_ms if self.ttft_ms is not None else self.reply.ttft_ms
            if ttft is not None:
                reply["ttft_ms"] = ttft
        dropped = {"context_dropped": self.dropped} if self.dropped else {}
        return {**kept, **reply, **dropped}

    async def _save(self, *, final: bool, ended: bool = True) -> None:
        self._saved_at = time.monotonic()
        if self._gone:
            return
        reply = self.reply
        change: dict[str, Any] = {"content": self.parts()}
        if final:
            status = "error" if reply.error else ("ready" if ended else "stopped")
            change.update(status=status, completed_at=now_ms())
            if reply.error:
                change.update(error_code=reply.error_code, error=reply.error)
        calls = [dict(c) for c in self.calls]

        def edit(raw: dict[str, Any]) -> None:
            if not final and raw.get("status") != "pending":
                return  # the final save is in: a late partial one (cancelled at shutdown) waits
            raw.update(change)
            if final:
                raw["metadata"] = self._final_metadata(raw.get("metadata"))
            elif calls:
                meta = raw.get("metadata")
                raw["metadata"] = {**(meta if isinstance(meta, dict) else {}), "tool_calls": calls}

        try:
            self.message = await asyncio.to_thread(
                self.service.store.edit_message, self.thread_id, self.message_id, edit
            )
        except NotFound:
            self._gone = True  # deleted (regenerate, a deleted thread): nothing to keep
        except Exception as exc:  # a save that fails must not end the answer's stream
            log.warning("could not save the answer in thread %s: %s", self.thread_id, exc)
