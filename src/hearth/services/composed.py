"""Answers Hearth writes itself from one or more engine answers, shaped like an engine's.

A forced tool call, `n` choices and a legacy completion need their engine answers rewritten;
the faces should not care. A `Composed` answer has the interface of `engines.proxy.Upstream`
(status, content type, `read()` or `stream()`, `close()`), so the OpenAI routes pass it on and
the Ollama, Anthropic and Responses faces translate it exactly as they translate an engine's.
Its engine answers are opened (and their errors raised) before it is built, so its status is
always 200; closing it, or the client leaving mid-stream, closes every engine answer under it,
which is how the engines learn to stop generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import aclosing
from typing import Any

import anyio

from hearth.engines.events import engine_refusal
from hearth.engines.proxy import Answer

DONE = b"data: [DONE]\n\n"


def event(chunk: Mapping[str, Any]) -> bytes:
    """One `data:` event as OpenAI writes them."""
    return b"data: " + dumps(chunk) + b"\n\n"


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def once(content: bytes) -> AsyncGenerator[bytes, None]:
    """A whole body, as the chunks of a composed answer."""
    yield content


async def as_events(
    chunks: AsyncGenerator[dict[str, Any], None],
) -> AsyncGenerator[bytes, None]:
    """Chunks as OpenAI's event stream, ended by `[DONE]`."""
    async for chunk in chunks:
        yield event(chunk)
    yield DONE


async def checked(answer: Answer, model: str) -> Answer:
    """`answer` if the engine accepted the request; its refusal raised (in OpenAI's terms) if
    not, so a composed answer never starts with an error hidden inside a 200."""
    if answer.status_code < 400:
        return answer
    content = await answer.read()
    raise engine_refusal(answer.status_code, content, model)


class Composed:
    """An answer whose bytes come from `chunks` (SSE events, or one JSON body), built over
    the engine answers in `under`."""

    status_code = 200
    errors_in_openai_shape = False  # composed from local engines' answers only

    def __init__(
        self, chunks: AsyncGenerator[bytes, None], *, event_stream: bool, under: Iterable[Answer]
    ) -> None:
        self._chunks = chunks
        self._event_stream = event_stream
        self._under = list(under)
        self._closed = False

    @property
    def content_type(self) -> str:
        return "text/event-stream" if self._event_stream else "application/json"

    @property
    def is_event_stream(self) -> bool:
        return self._event_stream

    async def read(self) -> bytes:
        parts: list[bytes] = []
        try:
            async with aclosing(self._chunks) as chunks:
                async for part in chunks:
                    parts.append(part)
        finally:
            await self.close()
        return b"".join(parts)

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async with aclosing(self._chunks) as chunks:
                async for part in chunks:
                    yield part
        finally:
            with anyio.CancelScope(shield=True):  # the client may be gone: clean up anyway
                await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for answer in self._under:
            await answer.close()
