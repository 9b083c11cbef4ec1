"""`POST /v1/responses`: OpenAI's Responses API, translated at the face.

The Responses body becomes a chat-completions body (`translate.call`) sent through the same
service call as /v1/chat/completions (`Services.open_inference`: load on demand, keep_alive,
engine selection), and the engine's answer comes back as a Response object, or as Responses
events when `stream` is true (`stream.py`). llama.cpp serves /v1/responses itself, but going
through the chat path means Hearth's own chat features (errors, keep_alive, tool handling)
apply once for every dialect.

Hearth keeps nothing: `store` is accepted and echoed, but there is no response to fetch,
continue (`previous_response_id`) or delete later; those answer 400/404 saying so. The one
exception: a response that ended waiting on an MCP approval is kept in memory for an hour, so
`previous_response_id` can continue it (`mcp_pending.py`). A request with `{"type": "mcp"}`
tools is run by `mcp_run.py` (Hearth calls the tools); any other goes the path below.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hearth.core.errors import NotFound
from hearth.server import jsonbody
from hearth.server.respond import (
    answer_flow,
    client_closed,
    open_answer,
    read_whole,
    stream_answer,
    whole_object,
)
from hearth.server.responses.mcp_pending import continued, pending_of
from hearth.server.responses.stream import BEATS, Events, events
from hearth.server.responses.tools import LEFT_OUT_HEADER
from hearth.server.responses.translate import Call, call, new_id, response
from hearth.server.schemas import ERRORS
from hearth.services import Services

router = APIRouter(prefix="/v1", tags=["inference"])
log = logging.getLogger("hearth.server")

_EXAMPLE = {
    "model": "smollm2-135m-instruct",
    "instructions": "Answer in one sentence.",
    "input": "Say hello in French.",
}
_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True, "example": _EXAMPLE}
            }
        },
    }
}


@router.post("/responses", responses=ERRORS, openapi_extra=_DOC)
async def create_response(request: Request) -> Response:
    """OpenAI's Responses API (streamed as Responses events with "stream": true)."""
    body = jsonbody.loads_object(await request.body())
    previous = body.get("previous_response_id")
    if isinstance(previous, str) and previous:  # only a response waiting on an MCP approval
        kept = pending_of(request.app.state).items(previous)
        body = continued(body, kept) if kept is not None else body
    translated = call(body)
    response_id, created = new_id("resp"), int(time.time())
    if translated.mcp is not None:  # Hearth runs the tools (imports the MCP SDK on first use)
        from hearth.server.responses.mcp_run import respond

        continuing = previous if isinstance(previous, str) else None
        ran = await respond(request, translated, response_id, created, continuing)
        return _tell_left_out(translated, ran)
    services: Services = request.app.state.services
    opening = services.open_inference("chat/completions", translated.body, translated.keep_alive)
    model = str(translated.body["model"])
    if translated.body.get("stream") is True:  # kept alive while it waits (server/respond.py)
        writer = Events(translated, response_id, created)
        accept = answer_flow(model, lambda chunks: events(chunks, writer))
        return _tell_left_out(translated, await stream_answer(request, opening, accept, BEATS))
    answer = await open_answer(request, opening, model)
    if answer is None:
        return client_closed()
    content = await read_whole(request, answer)
    if content is None:
        return client_closed()
    reply = whole_object(content)
    whole = JSONResponse(response(translated, reply, response_id, created))
    return _tell_left_out(translated, whole)


def _tell_left_out(translated: Call, answer: Response) -> Response:
    """Name the tools the model did not see (hosted ones Hearth cannot run) in a header and
    the log: the answer was made without them, and the caller can tell."""
    if translated.left_out:
        kinds = ", ".join(translated.left_out)
        answer.headers[LEFT_OUT_HEADER] = kinds
        log.info("Responses request for %r: tools left out (Hearth cannot run them): %s",
                 translated.name[:80], kinds)  # fmt: skip
    return answer


def _not_stored(response_id: str) -> NotFound:
    return NotFound(
        f"No response '{response_id[:80]}': Hearth does not store responses. Keep the Response "
        "you got and send the conversation as input items in the next request."
    )


@router.get("/responses/{response_id}", responses=ERRORS)
async def get_response(response_id: str) -> Response:
    """Hearth stores no responses: there is nothing to fetch."""
    raise _not_stored(response_id)


@router.delete("/responses/{response_id}", responses=ERRORS)
async def delete_response(response_id: str) -> Response:
    """Hearth stores no responses: there is nothing to delete."""
    raise _not_stored(response_id)
