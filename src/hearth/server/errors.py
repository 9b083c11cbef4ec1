"""The one place errors become HTTP: OpenAI's `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import HearthError, InvalidModelId
from hearth.models.ids import validate_model_id

log = logging.getLogger("hearth.server")


def error_response(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HearthError)
    async def _hearth(_: Request, exc: HearthError) -> JSONResponse:
        return JSONResponse(exc.to_openai(), status_code=exc.status)

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
        rest = request.url.path.removeprefix("/v1/models/")
        if exc.status_code == 404 and rest != request.url.path:
            try:
                validate_model_id(rest.split("/")[0] if "/" not in rest.strip("/") else rest)
            except InvalidModelId as bad:
                return JSONResponse(bad.to_openai(), status_code=bad.status)
        if exc.status_code == 404:
            message = f"No route {request.method} {request.url.path}. See /docs for the API."
            code = "not_found"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(exc.status_code, message, type_, code)

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
