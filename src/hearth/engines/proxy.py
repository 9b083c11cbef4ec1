"""Forward OpenAI-style requests to an engine and pass its answer back byte for byte.

Speed matters here (a GPU engine emits hundreds of SSE events a second), so the response is
never parsed: chunks go from the engine's socket to the client's as they arrive, and the engine
already names the model (it is started with the Hearth id as its alias). Only the request body
is touched: the model's `model_parameters` fill in what the client left out, and a remote
engine gets its upstream model name.

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

from hearth.engines.upstream import EngineClient, EngineResponse
from hearth.errors import EngineError, HearthError

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
    """Where one request goes (a leased local engine or a remote), as the proxy sees it."""

    headers: dict[str, str]
    remote: bool

    @property
    def prefix(self) -> str:
        """Where a local engine's OpenAI-style routes live ("/v1")."""
        ...

    @property
    def url(self) -> str:
        """Base URL ending in /v1 (a remote's; a local engine's is host and port)."""
        ...

    @property
    def address(self) -> tuple[str, int]: ...

    def release(self) -> None: ...

    async def failure(self, exc: Exception) -> EngineError: ...


def engine_auth(target: Target) -> bytes:
    """The header line that carries a local engine's per-launch key (b"" if it has none):
    engines accept requests only with the key their `EngineProcess` made for them."""
    auth = getattr(target, "auth_head", b"")
    return auth if isinstance(auth, bytes) else b""


def prepare_body(
    body: dict[str, Any],
    *,
    path: str,
    model_parameters: Mapping[str, Any],
    remote: bool,
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> bytes:
    """The bytes to send upstream: the client's body with the model's defaults filled in."""
    if path in GENERATION:
        for key in OPENAI_DEFAULTS if remote else LLAMA_DEFAULTS:
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
    def remote(self) -> bool:
        """From an OpenAI-compatible upstream: its errors are already in OpenAI's shape."""
        ...

    async def read(self) -> bytes: ...

    def stream(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class Upstream:
    """One engine response. Exactly one of `read()` or `stream()` consumes it; both release
    the target's lease and close the connection when done, however they end."""

    def __init__(self, target: Target, response: httpx.Response | EngineResponse) -> None:
        self.target = target
        self.response = response
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

    @property
    def remote(self) -> bool:
        return self.target.remote

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


class Proxy:
    """The shared connection pools: a lean client for local engines (see upstream.py), httpx
    for remote ones (TLS, proxies from the environment, compression)."""

    def __init__(self) -> None:
        self.local = EngineClient()
        self._remote: httpx.AsyncClient | None = None

    def remote_client(self) -> httpx.AsyncClient:
        if self._remote is None:
            self._remote = httpx.AsyncClient(timeout=TIMEOUT, trust_env=True)
        return self._remote

    async def send(self, target: Target, path: str, content: bytes) -> Upstream:
        """POST to the target and return once the response head is in (the body follows)."""
        headers = {"content-type": "application/json", **target.headers}
        try:
            if not target.remote:
                host, port = target.address
                # "/apply-template": llama.cpp's own routes live outside its OpenAI prefix
                where = path if path.startswith("/") else f"{target.prefix}/{path}"
                response = await self.local.post(
                    host, port, where, content, headers, engine_auth(target)
                )
                return Upstream(target, response)
            client = self.remote_client()
            request = client.build_request(
                "POST", f"{target.url}/{path}", content=content, headers=headers
            )
            return Upstream(target, await client.send(request, stream=True))
        except (httpx.TransportError, OSError) as exc:
            raise await target.failure(exc) from None

    async def aclose(self) -> None:
        self.local.close()
        if self._remote is not None:
            await self._remote.aclose()
            self._remote = None
