"""The faces Hearth serves, one record each (`server/face.py` says what a record holds).

This is the one module that knows every face; the app mounts `FACES.routers` in this order,
the error writer, the guard and the docs read the same records. Faces never import each
other, and nothing but this module (and the app that is handed `FACES`) imports a face.

To add a dialect: write its package (a router, its translation), then one `Face` below,
with the paths it owns and its error shape. A test checks that every route the app serves
belongs to exactly one record, by router and by path, so a new route cannot fall through
to another face's error shape.
"""

from __future__ import annotations

from typing import Any

from hearth.core.errors import HearthError
from hearth.server import (
    anthropic,
    assistants,
    docs,
    downloads,
    health,
    imports,
    inference,
    jan,
    mcp,
    models,
    ollama,
    responses,
    root,
    running,
    threads,
    web,
)
from hearth.server.face import BEARER, X_API_KEY, Face, Faces

#: HTTP status -> Anthropic's error type (any other 4xx: invalid_request_error, 5xx: api_error).
ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def anthropic_error(exc: HearthError) -> dict[str, Any]:
    """Anthropic's `{"type": "error", "error": {type, message}}`, typed by status: Anthropic's
    SDK raises its matching exception class from `error.type`."""
    fallback = "invalid_request_error" if exc.status < 500 else "api_error"
    kind = ANTHROPIC_TYPES.get(exc.status, fallback)
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


def ollama_error(exc: HearthError) -> dict[str, Any]:
    """Ollama's `{"error": "<message>"}`, with the same status: Ollama's clients read `error`
    as a string."""
    return {"error": exc.message}


HEALTH = Face("health", (health.router,), paths=("/health",), public=("/health",))
OPENAI = Face(
    "openai",
    (inference.router,),
    paths=("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
    inference=("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
)
ANTHROPIC = Face(
    "anthropic",
    (anthropic.router,),
    paths=("/v1/messages", "/v1/messages/*"),
    error=anthropic_error,
    inference=("/v1/messages",),
    keys=(X_API_KEY, BEARER),  # the SDK's api_key, and its auth_token
    client_headers=(  # what Anthropic's SDK sends from a browser; Hearth ignores them
        "anthropic-version",
        "anthropic-beta",
        "anthropic-dangerous-direct-browser-access",
    ),
)
RESPONSES = Face(
    "responses",
    (responses.router,),
    paths=("/v1/responses", "/v1/responses/*"),
    inference=("/v1/responses",),
)
MANAGEMENT = Face(
    "management",
    (
        imports.router,
        downloads.router,
        models.router,
        running.router,
        assistants.router,
        jan.router,
        mcp.router,
    ),
    paths=(
        "/v1/models",
        "/v1/models/*",
        "/v1/downloads",
        "/v1/downloads/*",
        "/v1/running",
        "/v1/assistants",
        "/v1/assistants/*",
        "/v1/jan/*",
        "/v1/mcp/*",
    ),
)
THREADS = Face(  # conversations as files; their messages carry pasted images as data: URLs
    "threads",
    (threads.router,),
    paths=("/v1/threads", "/v1/threads/*"),
    inference=("/v1/threads",),
)
OLLAMA = Face(
    "ollama",
    (ollama.router,),
    paths=("/api/*",),
    error=ollama_error,
    inference=("/api/chat", "/api/generate", "/api/embed"),  # /api/embed covers /api/embeddings
)
WEB = Face(  # the page needs no key to load (it holds no data, and asks for the key itself)
    "web",
    (root.router, web.router),  # the page's files before the docs' /static mount
    paths=("/", web.PREFIX + "*"),
    public=(web.PREFIX + "*",),
    opens=web.is_page_request,
)
DOCS = Face(  # the API's own documentation; /openapi.json is FastAPI's, /static a mount
    "docs",
    (docs.router,),
    paths=docs.PATHS,
    public=docs.PATHS,
    keys=(BEARER, X_API_KEY),  # Swagger UI's "Authorize" offers both
)

#: Mounting order is routing order: the inference routes early (matched first, per request).
FACES = Faces([HEALTH, OPENAI, ANTHROPIC, RESPONSES, MANAGEMENT, THREADS, OLLAMA, WEB, DOCS])
