"""The one place errors become HTTP, in the caller's dialect.

Everything that answers with an error goes through `error_body`: the exception handlers
below (Hearth's own errors, FastAPI's validation errors, Starlette's 404/405, the backstops)
and the security middleware, which refuses requests before any route runs (`send_error`).

The shape is the one of the face that owns the request's path (`server/face.py`: each face's
record names its error writer, `server/faces.py` lists Hearth's): under `/api/` Ollama's
`{"error": "<message>"}`, under `/v1/messages` Anthropic's `{"type": "error", "error":
{"type", "message"}}`, elsewhere OpenAI's `{"error": {message, type, param, code}}`. The
status is the error's own in every shape. This module knows no face: it is handed the
records (`install_error_handlers(app, faces)`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Send

from hearth.core.errors import (
    HearthError,
    InvalidModelId,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
)
from hearth.models.ids import validate_any_id
from hearth.server import jsonbody
from hearth.server.face import ErrorShape, Faces, openai_error

log = logging.getLogger("hearth.server")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_MODELS = "/v1/models/"


def error_body(exc: HearthError, shape: ErrorShape = openai_error) -> bytes:
    """The error as UTF-8 JSON; text that UTF-8 cannot hold (a lone surrogate quoted from the
    request) is written escaped rather than failing the error itself."""
    payload = shape(exc)
    try:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode("ascii")


def error_response(
    exc: HearthError, headers: Mapping[str, str] | None = None, shape: ErrorShape = openai_error
) -> Response:
    return Response(
        error_body(exc, shape),
        exc.status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


async def send_error(send: Send, exc: HearthError, shape: ErrorShape = openai_error) -> None:
    """Answer with `exc` straight on the ASGI channel and close the connection (the security
    middleware: a body the client may still be sending is never read)."""
    body = error_body(exc, shape)
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _body_error(cause: Exception) -> HearthError:
    """FastAPI turns any failure while reading a body into a bare 400 "There was an error
    parsing the body"; say what it was (our own refusals, such as 413, keep their status)."""
    if isinstance(cause, HearthError):
        return cause
    if isinstance(cause, RecursionError):
        return jsonbody.too_deep()
    return InvalidRequest(
        f"The request body is not valid JSON: {cause}. Send a JSON object with "
        "'Content-Type: application/json'."
    )


def _routed(request: Request, path: str) -> bool:
    """Does some route, for any method, answer `path`?"""
    return any(
        route.matches({**request.scope, "path": path, "method": method})[0] == Match.FULL
        for method in _METHODS
        for route in request.app.router.routes
    )


def _bad_model_id(request: Request) -> InvalidModelId | None:
    """For an unrouted path that would be a model route but for its id (such as 'a%2Fb',
    which decodes to a slash and so splits the path), the error of that id.

    Judged on the raw path's first segment after /v1/models/, and only when the same path with
    a valid id in its place is routed: /v1/models/a%2Fb/start is a bad id, /v1/models/a%2Fb/x
    (no such route whatever the id) is a plain 404, as is /v1/models/<valid-id>/nope.
    """
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    if not raw.startswith(_MODELS) or raw == _MODELS:
        return None
    first, sep, rest = raw.removeprefix(_MODELS).partition("/")
    try:
        validate_any_id(unquote(first))
    except InvalidModelId as bad:
        return bad if _routed(request, f"{_MODELS}m{sep}{unquote(rest)}") else None
    return None


def _no_route(request: Request) -> NotFound:
    return NotFound(
        f"No route {request.method} {request.url.path}: Hearth has no such endpoint. See /docs "
        "for the API's routes (model routes are /v1/models/{id}, /v1/models/{id}/start, ...)."
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route answers on this path. Starlette's 405 names only the first
    route that matched the path, but GET, PATCH and DELETE /v1/models/{id} are three routes;
    each method is tried against the router (through its public `matches`)."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]
    # Nothing routed here: the 405 came from inside a mount, and the only one is /static.
    return ", ".join(allowed) or "GET, HEAD"


def _http_error(request: Request, exc: StarletteHTTPException) -> HearthError:
    """Starlette's own HTTP errors (no route, wrong method, unreadable body) as Hearth's."""
    if isinstance(exc.__cause__, Exception) and exc.status_code == 400:
        return _body_error(exc.__cause__)
    if exc.status_code == 404:
        return _bad_model_id(request) or _no_route(request)
    if exc.status_code == 405:
        return MethodNotAllowed(
            f"Method {request.method} is not allowed on {request.url.path}; it takes "
            f"{_allowed_methods(request)}. See /docs for the API."
        )
    error = HearthError(str(exc.detail), code=None)
    error.status = exc.status_code
    error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error


def install_error_handlers(app: FastAPI, faces: Faces) -> None:
    """Every error the app answers with, in the shape of the face that owns its path."""

    def shape(request: Request) -> ErrorShape:
        return faces.error(request.url.path)

    _install_backstops(app, shape)

    @app.exception_handler(HearthError)
    async def _hearth(request: Request, exc: HearthError) -> Response:
        return error_response(exc, shape=shape(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        where = f"'{param}': " if param else ""
        return error_response(
            InvalidRequest(
                f"Invalid request: {where}{first.get('msg')}. See /docs for the expected shape.",
                param=param,
            ),
            shape=shape(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        error = _http_error(request, exc)
        headers = dict(exc.headers or {})  # 401's WWW-Authenticate, ...
        if error.status == 405:  # Starlette's Allow names one route's methods: all of them
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["allow"] = _allowed_methods(request)
        return error_response(error, headers, shape(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            HearthError(
                f"Internal error: {type(exc).__name__}: {exc}. This is a bug in Hearth; the "
                "server log has the details."
            ),
            shape=shape(request),
        )


def _install_backstops(app: FastAPI, shape: Callable[[Request], ErrorShape]) -> None:
    """Bad input that got past the body checks still answers 400, never 500."""

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        """Backstop: input nested past what some step could walk (the body parsers refuse
        nesting first, so reaching this means a path they do not cover)."""
        log.warning("RecursionError on %s %s: refused as bad input", request.method, request.url)
        return error_response(jsonbody.too_deep(), shape=shape(request))

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(request: Request, exc: UnicodeEncodeError) -> Response:
        """Backstop: text that cannot be written as UTF-8 (a lone surrogate) came in."""
        log.warning("%s on %s %s: refused as bad input", exc, request.method, request.url)
        return error_response(jsonbody.lone_surrogate(), shape=shape(request))
