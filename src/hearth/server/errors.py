"""The one place errors become HTTP: OpenAI's `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import logging
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hearth.errors import HearthError, InvalidModelId, InvalidRequest
from hearth.models.ids import validate_model_id
from hearth.server import jsonbody

log = logging.getLogger("hearth.server")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def error_response(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _hearth_response(exc: HearthError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status)


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


def _bad_model_id(request: Request) -> InvalidModelId | None:
    """For an unrouted path under /v1/models/, the error of an invalid id in it (such as
    'a%2Fb', which decodes to a slash), so it reads as a bad id, not as a missing route.

    Judged on the raw path's first segment: /v1/models/<valid-id>/nope is a plain 404.
    """
    raw = request.scope.get("raw_path") or request.url.path.encode()
    rest = raw.decode("latin-1").removeprefix("/v1/models/")
    if rest == raw.decode("latin-1") or not rest:
        return None
    try:
        validate_model_id(unquote(rest.split("/", 1)[0]))
    except InvalidModelId as bad:
        return bad
    return None


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


def install_error_handlers(app: FastAPI) -> None:
    _install_backstops(app)

    @app.exception_handler(HearthError)
    async def _hearth(_: Request, exc: HearthError) -> JSONResponse:
        return _hearth_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        where = f"'{param}': " if param else ""
        return error_response(
            400,
            f"Invalid request: {where}{first.get('msg')}. See /docs for the expected shape.",
            "invalid_request_error",
            "invalid_request",
            param,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, Exception) and exc.status_code == 400:
            return _hearth_response(_body_error(exc.__cause__))
        if exc.status_code == 404 and (bad := _bad_model_id(request)) is not None:
            return _hearth_response(bad)
        if exc.status_code == 404:
            message = f"No route {request.method} {request.url.path}. See /docs for the API."
            code = "not_found"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        response = error_response(exc.status_code, message, type_, code)
        response.headers.update(exc.headers or {})  # 401's WWW-Authenticate, ...
        if exc.status_code == 405:
            response.headers["allow"] = _allowed_methods(request)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500,
            f"Internal error: {type(exc).__name__}: {exc}. This is a bug in Hearth; the server "
            "log has the details.",
            "server_error",
            "internal_error",
        )


def _install_backstops(app: FastAPI) -> None:
    """Bad input that got past the body checks still answers 400, never 500."""

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        """Backstop: input nested past what some step could walk (the body parsers refuse
        nesting first, so reaching this means a path they do not cover)."""
        log.warning("RecursionError on %s %s: refused as bad input", request.method, request.url)
        return _hearth_response(jsonbody.too_deep())

    @app.exception_handler(UnicodeEncodeError)
    async def _unencodable(request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        """Backstop: text that cannot be written as UTF-8 (a lone surrogate) came in."""
        log.warning("%s on %s %s: refused as bad input", exc, request.method, request.url)
        return _hearth_response(jsonbody.lone_surrogate())
