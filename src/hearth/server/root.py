"""`GET /` and `HEAD /`: the web page for people, and the liveness answer for programs.

A browser asks for HTML (`Accept: text/html`): it gets Hearth's web page (`server/web.py`).
Anything else gets 200 "Ollama is running", the words Ollama answers `/` with: Ollama's
clients (Open WebUI, editor plugins) probe `/` before anything else. `/` belongs to no
dialect (an error here is Hearth's own shape); it says what those clients wait to read.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from hearth.server.web import page_response, wants_html

router = APIRouter()
LIVENESS_TEXT = "Ollama is running"


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root(request: Request) -> Response:
    """200 "Ollama is running" for clients that probe liveness; the web page for browsers."""
    if wants_html(request.headers.get("accept", "")):
        return page_response(request)
    return PlainTextResponse(LIVENESS_TEXT, headers={"Vary": "Accept"})  # a browser gets HTML
