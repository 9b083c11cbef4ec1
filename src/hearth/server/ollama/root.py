"""`GET /` and `HEAD /`: the liveness probe Ollama's clients send, and the web page for people.

Ollama answers `/` with 200 "Ollama is running", and clients (Open WebUI, editor plugins)
probe it before anything else, so Hearth says the same words. A browser asks for HTML
(`Accept: text/html`): it gets Hearth's web page (`hearth.server.web`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from hearth.server.web import page_response, wants_html

router = APIRouter(tags=["ollama"])
LIVENESS_TEXT = "Ollama is running"

__all__ = ["LIVENESS_TEXT", "router", "wants_html", "web_page"]


def web_page(request: Request) -> Response:
    """The page a browser gets at `/`: index.html from the package."""
    return page_response(request)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root(request: Request) -> Response:
    """200 "Ollama is running" for clients that probe liveness; the web page for browsers."""
    if wants_html(request.headers.get("accept", "")):
        return web_page(request)
    return PlainTextResponse(LIVENESS_TEXT, headers={"Vary": "Accept"})  # a browser gets HTML
