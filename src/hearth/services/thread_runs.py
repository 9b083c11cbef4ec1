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
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from hearth.core.errors import ContextExceeded, HearthError, InvalidRequest, NotFound
from hearth.core.keepalive import keep_alive_param
from hearth.engines.events import engine_refusal
from hearth.services.context_fit import ROUNDS, Fitter, policy_of
from hearth.threads import interrupted
from hearth.threads.answer import ThreadReply, chat_request
from hearth.threads.edits import need_object, now_ms
from hearth.threads.ids import new_message_id
from hearth.threads.store import ThreadStore
from hearth.threads.views import message_view, text_part

if TYPE_CHECKING:
    from hearth.engines.proxy import Answer


class ThreadService(Protocol):
    """What a run needs of `services.threads.ThreadService` (a protocol, so that the thread
    service may start runs without the two modules importing each other)."""

    store: ThreadStore
    live: set[str]

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
    """One answer being written into a thread."""

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
        engine answers) and saved."""
        assert self.upstream is not None
        self._streamed = True
        ended = False
        try:
            async for raw in chunks if chunks is not None else self.upstream.stream():
                self.reply.feed(raw)
                yield raw
                self._save_growing()
            ended = True
        finally:
            with anyio.CancelScope(shield=True):  # the client may be gone: save anyway
                await self.upstream.close()
                await self.finish(ended=ended)

    async def release(self) -> None:
        """Close the engine's answer; a run whose stream never began (its client left at once)
        is finished `stopped` here, as `events` would have."""
        assert self.upstream is not None
        await self.upstream.close()
        if not self._streamed:
            self._streamed = True
            await self.finish(ended=False)

    async def whole(self) -> dict[str, Any]:
        """Run to the end without a client stream (stream=false): the final message."""
        async for _ in self.events():
            pass
        return message_view(self.message, self.message_id, self.thread_id)

    def _save_growing(self) -> None:
        """Save the answer so far every SAVE_EVERY seconds, beside the stream, not in it: a
        long thread's rewrite must not hold back the next token. One save at a time."""
        due = time.monotonic() - self._saved_at >= SAVE_EVERY
        if due and (self._saving is None or self._saving.done()):
            self._saved_at = time.monotonic()
            self._saving = asyncio.create_task(self._save(final=False))

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

    async def _save(self, *, final: bool, ended: bool = True) -> None:
        self._saved_at = time.monotonic()
        if self._gone:
            return
        reply = self.reply
        change: dict[str, Any] = {"content": reply.parts()}
        if final:
            status = "error" if reply.error else ("ready" if ended else "stopped")
            change.update(status=status, completed_at=now_ms())
            if reply.error:
                change.update(error_code=reply.error_code, error=reply.error)

        def edit(raw: dict[str, Any]) -> None:
            if not final and raw.get("status") != "pending":
                return  # the final save is in: a late partial one (cancelled at shutdown) waits
            raw.update(change)
            if final:
                kept = interrupted.without_mark(raw.get("metadata"))
                dropped = {"context_dropped": self.dropped} if self.dropped else {}
                raw["metadata"] = {**kept, **reply.metadata(), **dropped}

        try:
            self.message = await asyncio.to_thread(
                self.service.store.edit_message, self.thread_id, self.message_id, edit
            )
        except NotFound:
            self._gone = True  # deleted (regenerate, a deleted thread): nothing to keep
        except Exception as exc:  # a save that fails must not end the answer's stream
            log.warning("could not save the answer in thread %s: %s", self.thread_id, exc)
