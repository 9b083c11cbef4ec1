"""`GET /` and `HEAD /`: the liveness probe Ollama's clients send, kept apart from the web page.

Ollama answers `/` with 200 "Ollama is running", and clients (Open WebUI, editor plugins)
probe it before anything else, so Hearth says the same words. A browser asks for HTML
(`Accept: text/html`): that request belongs to the web page that comes later, which replaces
`web_page` below; until then it gets a small placeholder page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse

router = APIRouter(tags=["ollama"])
LIVENESS_TEXT = "Ollama is running"
PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hearth</title></head>
<body><h1>Hearth is running</h1>
<p>Local models behind OpenAI's API at <code>/v1</code> and Ollama's at <code>/api</code>.
See <a href="/docs">/docs</a>.</p></body></html>
"""


def wants_html(accept: str) -> bool:
    """Does this Accept header ask for a page (a browser) rather than any answer (a probe)?"""
    for item in accept.lower().split(","):
        media, _, params = item.strip().partition(";")
        if media.strip() in ("text/html", "application/xhtml+xml") and params.strip() != "q=0":
            return True
    return False


def web_page(request: Request) -> Response:
    """The page a browser gets at `/`: a placeholder the web page will replace."""
    return HTMLResponse(PLACEHOLDER)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root(request: Request) -> Response:
    """200 "Ollama is running" for clients that probe liveness; HTML for browsers."""
    if wants_html(request.headers.get("accept", "")):
        return web_page(request)
    return PlainTextResponse(LIVENESS_TEXT)
