"""Forward OpenAI-style requests to an engine and pass its answer back byte for byte.

Speed matters here (a GPU engine emits hundreds of SSE events a second), so the response is
never parsed: chunks go from the engine's socket to the client's as they arrive, and the engine
already names the model (it is started with the Hearth id as its alias). Only the request body
is touched: the model's `model_parameters` fill in what the client left out, and a remote
engine gets its upstream model name. Where the bytes go is the target's business: a local
replica over the lean client (engines/local.py), a remote over httpx (engines/remote.py); this
module only moves them.

Failures keep OpenAI's shape: an engine that dies before answering is a 502 EngineError; one
that dies mid-stream ends the stream with `data: {"error": {...}}` (the `openai` client raises
APIError on it). Closing an upstream response (client gone, or done) closes its connection,
which is how llama.cpp learns to cancel the generation and free its slot.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import anyio
import httpx

from hearth.core.errors import EngineError, HearthError
from hearth.engines.upstream import EngineResponse

#: No read timeout: a long generation may take minutes before (or between) bytes.
TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None)
GENERATION = frozenset({"chat/completions", "completions"})
#: model_parameters that fill a request's gaps; OpenAI's own names for remote engines...
OPENAI_DEFAULTS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
)
#: ...plus llama.cpp's sampling extensions for local ones (`stream` is the client's choice).
LLAMA_DEFAULTS = (
    *OPENAI_DEFAULTS,
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
)


class Target(Protocol):
    """Where one request goes, as the proxy sees it: a leased local replica (engines/local.py)
    or a remote's profile (engines/remote.py). Each sends over its own client."""

    async def send(self, path: str, content: bytes) -> Upstream:
        """POST `content` to `path` and return once the response head is in."""
        ...

    def release(self) -> None: ...

    async def failure(self, exc: Exception) -> EngineError: ...


def prepare_body(
    body: dict[str, Any],
    *,
    path: str,
    model_parameters: Mapping[str, Any],
    defaults: tuple[str, ...],
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> bytes:
    """The bytes to send upstream: the client's body with the model's `defaults` (the names
    the engine knows: `OPENAI_DEFAULTS` or `LLAMA_DEFAULTS`) filled in."""
    if path in GENERATION:
        for key in defaults:
            value = model_parameters.get(key)
            if value is None or value == [] or key in body:
                continue
            if key == "max_tokens" and "max_completion_tokens" in body:
                continue
            body[key] = value
    if rewrite is not None:
        body = rewrite(body)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def sse_error(error: HearthError) -> bytes:
    return b"data: " + json.dumps(error.to_openai(), ensure_ascii=False).encode() + b"\n\n"


class Answer(Protocol):
    """What an inference request returns to a face: an engine's response passed through
    (`Upstream`) or one Hearth composed from engine responses (`services/composed.py`)."""

    @property
    def status_code(self) -> int: ...

    @property
    def content_type(self) -> str: ...

    @property
    def is_event_stream(self) -> bool: ...

    @property
    def errors_in_openai_shape(self) -> bool:
        """An error answer already in OpenAI's shape, with its own message (a remote server's),
        that OpenAI's face passes through; other refusals are rewritten with a fix."""
        ...

    async def read(self) -> bytes: ...

    def stream(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Upstream:
    """One engine response. Exactly one of `read()` or `stream()` consumes it; both release
    the target's lease and close the connection when done, however they end."""

    def __init__(
        self,
        target: Target,
        response: httpx.Response | EngineResponse,
        *,
        errors_in_openai_shape: bool,
    ) -> None:
        self.target = target
        self.response = response
        self.errors_in_openai_shape = errors_in_openai_shape
        self._closed = False

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "application/json")

    @property
    def is_event_stream(self) -> bool:
        return self.status_code == 200 and self.content_type.startswith("text/event-stream")

    async def read(self) -> bytes:
        try:
            return await self.response.aread()
        except (httpx.TransportError, OSError) as exc:
            raise await self.target.failure(exc) from None
        finally:
            await self.close()

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        except (httpx.TransportError, OSError) as exc:
            yield sse_error(await self.target.failure(exc))
        finally:
            with anyio.CancelScope(shield=True):  # the client may be gone: clean up anyway
                await self.close()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                await self.response.aclose()
            finally:
                self.target.release()
