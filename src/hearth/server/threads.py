"""Jan's Threads/Messages API (after OpenAI's Assistants API) and runs: /v1/threads.

Thin: each route translates HTTP to `Services.threads` (hearth/services/threads.py), where the
rules live. File work runs in the thread pool (plain `def` routes); a run is async and streams
the engine's own `chat.completion.chunk` events, naming the answer's message in the
`X-Hearth-Message-Id` header before the first token. Errors have OpenAI's shape (a /v1 path).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Query, Request, Response

from hearth.server import jsonbody
from hearth.server.respond import (
    OPENAI_BEATS,
    Flow,
    client_closed,
    services_of,
    stream_answer,
    unless_disconnected,
)
from hearth.server.schemas import ERRORS
from hearth.services.thread_runs import Run
from hearth.services.threads import ThreadService, encode_json
from hearth.threads.ids import new_message_id

router = APIRouter(prefix="/v1/threads", tags=["threads"])

_THREAD_EXAMPLE = {
    "title": "Trip to Lisbon",
    "model": "smollm2-135m-instruct",
    "instructions": "You are a concise travel guide.",
    "parameters": {"temperature": 0.7, "max_tokens": 512},
    "messages": [{"role": "user", "content": "Three things to see?"}],
}
_RUN_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {"stream": True, "parameters": {"temperature": 0.2}},
            }
        }
    }
}
_APPROVAL_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {"call_id": "call_abc", "decision": "once", "stream": True},
            }
        }
    }
}
_LIMIT = Query(100, ge=1, le=1000, description="How many to answer (1 to 1000).")
_MESSAGE_LIMIT = Query(1000, ge=1, le=10_000, description="How many to answer (1 to 10000).")


def _threads(request: Request) -> ThreadService:
    return services_of(request).threads


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        encode_json(body),  # strict JSON whatever a thread file holds (NaN, lone surrogates)
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


@router.get("", responses=ERRORS)
def list_threads(
    request: Request,
    q: str | None = Query(None, max_length=1000, description="Search titles and messages."),
    limit: int = _LIMIT,
    after: str | None = None,
) -> Response:
    """Threads, newest `updated` first (OpenAI's list object)."""
    return _json(_threads(request).list_threads(q, limit, after))


@router.post("", responses=ERRORS)
def create_thread(
    request: Request, body: dict[str, Any] | None = Body(None, examples=[_THREAD_EXAMPLE])
) -> Response:
    """A new thread: title, model, instructions (system prompt), parameters, first messages."""
    return _json(_threads(request).create_thread(body))


@router.post("/import", responses=ERRORS)
def import_thread(request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """A new thread from a file GET /v1/threads/{id}/export wrote (its id if free)."""
    return _json(_threads(request).import_thread(body))


@router.get("/{thread_id}", responses=ERRORS)
def get_thread(thread_id: str, request: Request) -> Response:
    return _json(_threads(request).get_thread(thread_id))


@router.post("/{thread_id}", responses=ERRORS)
def modify_thread(thread_id: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Change title, model, instructions, parameters, settings; metadata merges; null clears."""
    return _json(_threads(request).modify_thread(thread_id, body))


@router.delete("/{thread_id}", responses=ERRORS)
def delete_thread(thread_id: str, request: Request) -> Response:
    """Delete the thread's folder."""
    return _json(_threads(request).delete_thread(thread_id))


@router.get("/{thread_id}/export", responses=ERRORS)
def export_thread(
    thread_id: str,
    request: Request,
    format: str = Query("json", pattern="^(json|markdown)$"),
) -> Response:
    """One file: Hearth's JSON export (for POST /v1/threads/import), or Markdown."""
    threads = _threads(request)
    if format == "markdown":
        text = threads.export_markdown(thread_id)
        headers = _attachment(thread_id, "md")
        return Response(text, media_type="text/markdown; charset=utf-8", headers=headers)
    doc = threads.export_thread(thread_id)
    return _json(doc, headers=_attachment(thread_id, "json"))


def _attachment(thread_id: str, ext: str) -> dict[str, str]:
    """A download, never a page: a browser saves it rather than rendering what it holds."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", thread_id)  # ids are safe already: belt and braces
    return {
        "content-disposition": f'attachment; filename="thread-{safe}.{ext}"',
        "x-content-type-options": "nosniff",
    }


@router.get("/{thread_id}/messages", responses=ERRORS)
def list_messages(
    thread_id: str,
    request: Request,
    order: str = Query("asc", pattern="^(asc|desc)$"),
    limit: int = _MESSAGE_LIMIT,
    after: str | None = None,
) -> Response:
    """Messages, oldest first (order=desc: newest first)."""
    return _json(_threads(request).list_messages(thread_id, order, limit, after))


@router.post("/{thread_id}/messages", responses=ERRORS)
def create_message(thread_id: str, request: Request, body: dict[str, Any] = Body(...)) -> Response:
    """Append a message: {role, content: string or parts, metadata?}."""
    return _json(_threads(request).create_message(thread_id, body))


@router.get("/{thread_id}/messages/{message_id}", responses=ERRORS)
def get_message(thread_id: str, message_id: str, request: Request) -> Response:
    return _json(_threads(request).get_message(thread_id, message_id))


@router.patch("/{thread_id}/messages/{message_id}", responses=ERRORS)
@router.post("/{thread_id}/messages/{message_id}", responses=ERRORS)  # OpenAI's SDK modifies so
def modify_message(
    thread_id: str, message_id: str, request: Request, body: dict[str, Any] = Body(...)
) -> Response:
    """Edit content, status or metadata (merged)."""
    return _json(_threads(request).modify_message(thread_id, message_id, body))


@router.delete("/{thread_id}/messages/{message_id}", responses=ERRORS)
def delete_message(
    thread_id: str, message_id: str, request: Request, and_after: bool = False
) -> Response:
    """Delete a message; with and_after=true also every later one (edit and resend,
    regenerate)."""
    return _json(_threads(request).delete_message(thread_id, message_id, and_after))


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that ends at once


async def _flow(run: Run) -> Flow:
    """A streamed run's Flow (its answer streamed, saved as it grows). With MCP tools the
    stream beats while a tool runs; a continuation opens its first round itself."""
    if run.resuming:
        return Flow(_nothing(), run.events, run.release, progress=False, beat_on=True)
    assert run.upstream is not None
    return Flow(run.upstream.stream(), run.events, run.release, beat_on=run.plan is not None)


async def _answer(request: Request, thread_id: str, body: dict[str, Any], opening: Any) -> Response:
    """A run's response: streamed (naming its message before the first token), or whole."""
    if body.get("stream", True) is True:  # kept alive while it waits (server/respond.py)
        message_id, opened = opening
        headers = {"x-hearth-message-id": message_id, "x-hearth-thread-id": thread_id}
        return await stream_answer(request, opened, _flow, OPENAI_BEATS, headers)
    _, opened = opening
    ok, run = await unless_disconnected(request, opened)
    if not ok or run is None:
        return client_closed()
    headers = {"x-hearth-message-id": run.message_id, "x-hearth-thread-id": run.thread_id}
    ok, message = await unless_disconnected(request, run.whole())
    if not ok or message is None:
        return client_closed()
    return _json(message, headers=headers)


@router.post("/{thread_id}/runs", responses=ERRORS, openapi_extra=_RUN_DOC)
async def run_thread(thread_id: str, request: Request) -> Response:
    """The thread's model answers: streamed as the engine's chat.completion.chunk events
    (default), or the final message with "stream": false. The answer is saved as it grows.
    With MCP tools (the conversation's `metadata.mcp`, or the run's `tools`), the stream also
    carries `event: tool_call` and `event: tool_result` as the calls run."""
    body = jsonbody.loads_object(await request.body(), empty=True)  # no body: the defaults
    message_id = new_message_id()  # named before the wait: its header goes out at once
    opened = _threads(request).start_run(thread_id, body, message_id)
    return await _answer(request, thread_id, body, (message_id, opened))


@router.post(
    "/{thread_id}/messages/{message_id}/approval", responses=ERRORS, openapi_extra=_APPROVAL_DOC
)
async def decide_call(thread_id: str, message_id: str, request: Request) -> Response:
    """The user's decision on the tool call an answer waits for (its
    `metadata.awaiting_approval`): once, thread, always or deny; then the answer goes on, in
    the same message, streamed as a run is."""
    body = jsonbody.loads_object(await request.body(), empty=True)
    opened = _threads(request).decide_call(thread_id, message_id, body)
    return await _answer(request, thread_id, body, (message_id, opened))
