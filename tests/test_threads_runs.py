"""Runs against a scripted engine: the message a run leaves in messages.jsonl when the answer
ends, fails mid-stream, is refused before it starts, or is abandoned by its client. (The real
model's runs are in test_threads_api.py; these are the endings it cannot be made to produce.)
The reply a run stores is gathered through the shared parser (`engines.events`): its unit tests
feed it bytes cut anywhere.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hearth.core.errors import EngineError, HearthError, ModelNotFound
from hearth.engines.events import EventSplitter, Finish, ReasoningDelta
from hearth.services import thread_runs
from hearth.services.thread_runs import Run
from hearth.services.threads import ThreadService
from hearth.threads.answer import ThreadReply
from hearth.threads.interrupted import LIVE, WRITER, WRITER_KEY
from hearth.threads.store import ThreadStore
from hearth.threads.views import text_part

HELLO = [
    b'data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"Hel"}}]}\n\n',
    b'data: {"object":"chat.completion.chunk","choices":[{"delta":{"content":"lo"}}]}\n\n',
]
ERROR = b'data: {"error":{"message":"the engine died","code":"engine_error"}}\n\n'


class FakeUpstream:
    def __init__(self, chunks: list[bytes], status: int = 200, pause: float = 0.0) -> None:
        self.chunks, self.status_code, self.pause = chunks, status, pause
        self.closed = False

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.pause)
            yield chunk

    async def read(self) -> bytes:
        return b"".join(self.chunks)

    async def close(self) -> None:
        self.closed = True


def service(tmp_path: Path, upstream: FakeUpstream | HearthError) -> ThreadService:
    store = ThreadStore(tmp_path / "threads")
    seen: list[dict[str, Any]] = []

    async def opener(path: str, body: dict[str, Any], keep_alive: float | None) -> Any:
        seen.append(body)
        if isinstance(upstream, HearthError):
            raise upstream
        return upstream

    def check_model(model_id: str) -> None:
        if model_id != "smol":
            raise ModelNotFound(model_id)

    threads = ThreadService(store, opener, check_model)
    threads.seen = seen  # type: ignore[attr-defined]
    return threads


def thread(threads: ThreadService) -> str:
    body = {"model": "smol", "messages": [{"role": "user", "content": "hi"}]}
    return str(threads.create_thread(body)["id"])


def last(threads: ThreadService, tid: str) -> dict[str, Any]:
    path = threads.store.threads_dir / tid / "messages.jsonl"
    return json.loads(path.read_text().splitlines()[-1])  # type: ignore[no-any-return]


async def drain(run: Run) -> bytes:
    return b"".join([chunk async for chunk in run.events()])


def test_a_finished_run_is_ready_and_its_bytes_pass_unchanged(tmp_path: Path) -> None:
    upstream = FakeUpstream([*HELLO, b"data: [DONE]\n\n"])
    threads = service(tmp_path, upstream)
    tid = thread(threads)

    async def go() -> bytes:
        run = await threads.start_run(tid, {"parameters": {"temperature": 0}})
        pending = last(threads, tid)
        assert pending["status"] == "pending"  # before the first token
        assert pending["metadata"] == {WRITER_KEY: WRITER} and run.message_id in LIVE
        return await drain(run)

    assert asyncio.run(go()) == b"".join(upstream.chunks) and upstream.closed
    message = last(threads, tid)
    assert message["status"] == "ready" and message["content"][0]["text"]["value"] == "Hello"
    assert WRITER_KEY not in message["metadata"] and message["id"] not in LIVE  # ended
    sent = threads.seen[0]  # type: ignore[attr-defined]
    assert sent["stream_options"] == {"include_usage": True} and sent["temperature"] == 0


def test_the_growing_answer_is_saved_beside_the_stream_not_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save of the answer so far (a rewrite of a thread that may be long) never holds back
    the next chunk, and the final save lands after it."""
    monkeypatch.setattr(thread_runs, "SAVE_EVERY", 0.0)
    upstream = FakeUpstream([*HELLO, b"data: [DONE]\n\n"], pause=0.01)
    threads = service(tmp_path, upstream)
    tid = thread(threads)
    release, held_up, statuses = threading.Event(), [], []
    edit = threads.store.edit_message

    def slow_edit(*args: Any) -> dict[str, Any]:
        if not release.wait(timeout=3):  # a save that is slow until every chunk has passed
            held_up.append(True)
        message = edit(*args)
        statuses.append(message["status"])
        return message

    threads.store.edit_message = slow_edit  # type: ignore[method-assign]

    async def go() -> list[bytes]:
        run = await threads.start_run(tid, {})
        events = run.events()
        chunks = [await anext(events) for _ in upstream.chunks]
        release.set()
        return chunks + [chunk async for chunk in events]

    assert asyncio.run(go()) == upstream.chunks
    assert not held_up, "the stream waited for a save"
    assert statuses[-1] == "ready" and "pending" in statuses[:-1]
    assert last(threads, tid)["content"][0]["text"]["value"] == "Hello"


def test_a_late_partial_save_never_undoes_the_final_one(tmp_path: Path) -> None:
    """A partial save whose task was cancelled (shutdown) may still run in its worker thread
    after the final save: it must not turn `ready` back into `pending`."""
    upstream = FakeUpstream([*HELLO, b"data: [DONE]\n\n"])
    threads = service(tmp_path, upstream)
    tid = thread(threads)

    async def go() -> None:
        run = await threads.start_run(tid, {})
        await drain(run)
        run.reply.feed(HELLO[0])  # more text, as if the late save held a different answer
        await run._save(final=False)

    asyncio.run(go())
    message = last(threads, tid)
    assert message["status"] == "ready" and message["content"][0]["text"]["value"] == "Hello"


def test_an_engine_error_mid_stream_marks_the_message(tmp_path: Path) -> None:
    threads = service(tmp_path, FakeUpstream([HELLO[0], ERROR]))
    tid = thread(threads)

    async def go() -> bytes:
        return await drain(await threads.start_run(tid, {}))

    assert asyncio.run(go()).endswith(ERROR)  # the client sees the error event
    message = last(threads, tid)
    assert message["status"] == "error" and message["error_code"] == "engine_error"
    assert message["content"][0]["text"]["value"] == "Hel"


def test_a_refusal_before_the_stream_is_raised_and_recorded(tmp_path: Path) -> None:
    threads = service(tmp_path, EngineError("the model failed to load"))
    tid = thread(threads)
    with pytest.raises(EngineError):
        asyncio.run(threads.start_run(tid, {}))
    assert last(threads, tid)["status"] == "error"
    refused = FakeUpstream([b'{"error":{"message":"too long","code":400}}'], status=400)
    threads = service(tmp_path / "b", refused)
    tid = thread(threads)
    with pytest.raises(HearthError) as info:
        asyncio.run(threads.start_run(tid, {}))
    assert info.value.status == 400 and last(threads, tid)["status"] == "error"


def test_an_unknown_model_writes_nothing(tmp_path: Path) -> None:
    threads = service(tmp_path, FakeUpstream(HELLO))
    tid = thread(threads)
    with pytest.raises(ModelNotFound):
        asyncio.run(threads.start_run(tid, {"model": "ghost"}))
    assert last(threads, tid)["role"] == "user"


def test_a_client_that_leaves_stops_the_message_with_its_text(tmp_path: Path) -> None:
    threads = service(tmp_path, FakeUpstream([*HELLO] * 50, pause=0.02))
    tid = thread(threads)

    async def go() -> None:
        run = await threads.start_run(tid, {})
        events = run.events()
        async for _ in events:
            if run.reply.text.count("Hello") >= 3:
                break
        await events.aclose()  # what Starlette's disconnect does to the body iterator

    asyncio.run(go())
    message = last(threads, tid)
    assert message["status"] == "stopped"
    assert message["content"][0]["text"]["value"].startswith("HelloHelloHel")


# ---- the reply, gathered through the one parser of engine answers ------------------------------

THINKING = [
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}\n\n',
    b'data: {"choices":[{"delta":{"reasoning_content":"Think \xc3\xa9"}}]}\n\n',
    b'data: {"choices":[{"delta":{"reasoning_content":"ing."}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"Caf\xc3\xa9 \xf0\x9f\x8d\xb5"}}]}\n\n',
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n',
    b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7},'
    b'"timings":{"prompt_n":4,"predicted_n":3}}\n\n',
    b"data: [DONE]\n\n",
]


def _fed(pieces: list[bytes]) -> ThreadReply:
    reply = ThreadReply()
    for piece in pieces:
        reply.feed(piece)
    return reply


def test_the_reply_is_the_same_however_the_bytes_are_cut() -> None:
    """Lines (and UTF-8 characters) split across reads: every cut gathers the same message."""
    stream = b"".join(THINKING)
    whole = _fed([stream])
    assert whole.parts() == [text_part("<think>Think éing.</think>Café 🍵")]  # today's Jan
    metadata = whole.metadata()
    assert metadata.pop("ttft_ms") >= 0
    assert metadata == {
        "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7},
        "timings": {"prompt_n": 4, "predicted_n": 3},
        "finish_reason": "stop",
    }
    assert whole.error is None and whole.error_code is None
    for cut in range(1, len(stream)):
        reply = _fed([stream[:cut], stream[cut:]])
        assert (reply.parts(), reply.finish_reason) == (whole.parts(), "stop"), cut
        assert reply.metadata().keys() == whole.metadata().keys()
    assert _fed([stream[i : i + 1] for i in range(len(stream))]).parts() == whole.parts()


def test_the_time_to_first_token_starts_at_the_reasoning() -> None:
    """A model that thinks first: its first token is the first thought, not the first word of
    the answer; a role-only chunk is no token."""
    reply = _fed(THINKING[:1])
    assert reply.ttft_ms is None and reply.parts() == [text_part("")]
    reply.feed(THINKING[1])
    assert reply.ttft_ms is not None and reply.reasoning == "Think é" and reply.text == ""


def test_an_error_chunk_keeps_the_text_so_far_and_names_the_failure() -> None:
    reply = _fed([*THINKING[1:4], ERROR[:20], ERROR[20:]])
    assert (reply.error, reply.error_code) == ("the engine died", "engine_error")
    assert reply.text == "Café 🍵" and reply.finish_reason is None
    assert "usage" not in reply.metadata()
    bare = _fed([b'data: {"error":"out of memory"}\n\n'])
    assert (bare.error, bare.error_code) == ("out of memory", "engine_error")
    # llama.cpp's own error event has a numeric code: stored as text, as it always was
    llama = _fed([b'data: {"error":{"code":500,"message":"boom","type":"server_error"}}\n\n'])
    assert (llama.error, llama.error_code) == ("boom", "500")
    refused = ThreadReply()
    refused.fail("Model 'x' failed to load.", None)
    assert (refused.error, refused.error_code) == ("Model 'x' failed to load.", "engine_error")


def test_the_splitter_gives_the_events_of_complete_lines_only() -> None:
    splitter = EventSplitter()
    assert splitter.feed(THINKING[1][:-3]) == []  # the line is not complete yet
    assert splitter.feed(THINKING[1][-3:] + b"data: {bad json}\n\n: comment\n") == [
        ReasoningDelta("Think é")
    ]
    assert splitter.feed(THINKING[4] + THINKING[6]) == [Finish("stop")]
