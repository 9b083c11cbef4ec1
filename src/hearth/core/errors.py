"""One exception tree for all of Hearth; each class knows its HTTP status and OpenAI error shape.

    HearthError                      500 server_error / internal_error
    ├── InvalidRequest               400 invalid_request_error
    │   ├── InvalidModelId           400 invalid_model_id
    │   ├── InvalidModelFile         400 invalid_model_file      (not a model / corrupt GGUF)
    │   └── InvalidParameter         400 invalid_parameter
    │       ├── UnsafeChatTemplate   400 invalid_parameter       (also a jinja2 SecurityError)
    │       └── SchemaTooCostly      400 schema_too_large        (services/schema_limits.py)
    ├── Unauthorized                 401 invalid_api_key
    ├── Forbidden                    403 path_not_allowed
    │   ├── HostNotAllowed           403 host_not_allowed       (DNS rebinding defence)
    │   └── CrossOriginRefused       403 cross_origin_refused   (a web page of another site)
    ├── NotFound                     404 not_found              (also: no such route)
    │   └── ModelNotFound            404 model_not_found
    ├── MethodNotAllowed             405 method_not_allowed
    ├── Conflict                     409 conflict
    ├── DownloadCancelled            409 download_cancelled     (.part kept for a resume)
    ├── RequestTooLarge              413 request_too_large
    ├── UnsupportedMediaType         415 unsupported_media_type
    ├── InsufficientStorage          507 insufficient_storage
    ├── McpServerFailed              424 mcp_server_failed      (a configured MCP server is down)
    ├── EngineError                  502 engine_error           (an engine failed or died)
    ├── DownloadFailed               502 download_failed        (network, server, integrity)
    │   ├── ChecksumMismatch         502 checksum_mismatch
    │   └── BodyTooLarge             502 download_too_large
    ├── Unavailable                  503 unavailable            (cannot fit / busy)
    ├── ServeError                   500 serve_failed           (the server cannot start)
    └── StarterError                 500 starter_failed         (the starter model: never fatal)

Services raise these; the server writes them in one place (`hearth.server.errors`) as
`{"error": {"message", "type", "param", "code"}}`, the CLI prints the message, and the client
(`hearth.cli.client`) turns such a body back into the class its `code` names (`from_wire`).
Messages say what went wrong *and* how to fix it. A few raisers set a finer `code` on an
instance (`home_busy`, `unsafe_redirect`, ...); those come back as the class of their status.
"""

from __future__ import annotations

import builtins
import functools
from typing import Any, TypeVar

E = TypeVar("E", bound="HearthError")


class HearthError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    @classmethod
    def from_wire(cls: builtins.type[E], message: str, *, param: str | None, code: str | None) -> E:
        """An instance from an error body, whatever this class's own constructor asks for
        (ModelNotFound takes an id, ChecksumMismatch two digests): the message is the server's."""
        exc = cls.__new__(cls)
        HearthError.__init__(exc, message, param=param, code=code)
        return exc

    def to_openai(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(HearthError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidModelId(InvalidRequest):
    code = "invalid_model_id"


class ModelfileError(InvalidRequest):
    """A Modelfile that cannot be used (`hearth create -f`); the message names the line."""

    code = "invalid_modelfile"


class InvalidModelFile(InvalidRequest):
    code = "invalid_model_file"


class InvalidParameter(InvalidRequest):
    code = "invalid_parameter"


class SchemaTooCostly(InvalidParameter):
    """A request's schema or grammar over one of the limits in `services/schema_limits.py`."""

    code = "schema_too_large"


class ContextExceeded(InvalidRequest):
    """A request longer than its model's context can be made; the numbers ride along."""

    code = "context_length_exceeded"

    def __init__(
        self, message: str, *, prompt_tokens: int | None, n_ctx: int | None, need: int | None
    ) -> None:
        super().__init__(message, param="messages", code="context_length_exceeded")
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.need = need


class Unauthorized(HearthError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(HearthError):
    status = 403
    type = "invalid_request_error"
    code = "path_not_allowed"


class HostNotAllowed(Forbidden):
    code = "host_not_allowed"


class CrossOriginRefused(Forbidden):
    code = "cross_origin_refused"


class NotFound(HearthError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"
    model_id: str | None = None  # None when rebuilt from an error body (`from_wire`)

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"The model '{model_id}' does not exist. List models with `hearth models list` "
            "or GET /v1/models; import one with `hearth models import PATH`.",
            param="model",
        )
        self.model_id = model_id


class MethodNotAllowed(HearthError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class Conflict(HearthError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RequestTooLarge(HearthError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(HearthError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class InsufficientStorage(HearthError):
    status = 507
    type = "server_error"
    code = "insufficient_storage"


class McpServerFailed(HearthError):
    """A configured MCP server a request names cannot start or list its tools: 424, as OpenAI
    answers when it cannot list a remote server's tools (the request depends on it)."""

    status = 424
    type = "external_connector_error"
    code = "mcp_server_failed"


class EngineError(HearthError):
    status = 502
    type = "server_error"
    code = "engine_error"


class Unavailable(HearthError):
    status = 503
    type = "server_error"
    code = "unavailable"


class DownloadFailed(HearthError):
    """A transfer failed (network, server, integrity); the message says which and what to do."""

    status = 502
    code = "download_failed"


class ChecksumMismatch(DownloadFailed):
    """The finished file's sha256 differs from the one the source promised."""

    code = "checksum_mismatch"
    expected: str | None = None
    actual: str | None = None

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class BodyTooLarge(DownloadFailed):
    """A body of unstated size ran past `max_download_bytes`; the `.part` is deleted."""

    code = "download_too_large"


class DownloadCancelled(HearthError):
    """The caller cancelled; the `.part` and its sidecar are kept so the next pull resumes."""

    status = 409
    type = "invalid_request_error"
    code = "download_cancelled"


class ServeError(HearthError):
    """The server cannot start (unsafe bind, port taken); the message says why and what to do."""

    code = "serve_failed"


class StarterError(HearthError):
    """The starter model could not be installed; Hearth serves on without it."""

    code = "starter_failed"


_BY_STATUS: dict[int, type[HearthError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: RequestTooLarge,
    415: UnsupportedMediaType,
    502: EngineError,
    503: Unavailable,
    507: InsufficientStorage,
}


def from_wire(status: int, body: Any, fallback: str) -> HearthError:
    """The HearthError an error response stands for: the class its `code` names, else the one
    of its HTTP status. `fallback` is the message when the body is not Hearth's error shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
        code = error.get("code") if isinstance(error.get("code"), str) else None
        param = error.get("param") if isinstance(error.get("param"), str) else None
    else:
        message, code, param = fallback, None, None
    cls = _by_code().get(code or "") or _BY_STATUS.get(status, HearthError)
    return cls.from_wire(message, param=param, code=code)


def _by_code() -> dict[str, type[HearthError]]:
    """code -> the most general class that declares it (a subclass that only inherits its
    parent's code, such as UnsafeChatTemplate, never shadows the parent). Walked per call, so
    classes defined later are found too; the tree has a few dozen classes."""
    table: dict[str, type[HearthError]] = {}
    queue: list[type[HearthError]] = [HearthError]
    while queue:
        cls = queue.pop(0)
        if cls.code is not None:
            table.setdefault(cls.code, cls)
        queue.extend(cls.__subclasses__())
    return table


@functools.cache
def _unsafe_chat_template() -> type[InvalidParameter]:
    """Built on first use: its second base is jinja2's SecurityError (so the sandbox treats it
    as one), and importing jinja2 costs ~150 ms that `import hearth.core.errors` should not pay."""
    from jinja2.exceptions import SecurityError

    class UnsafeChatTemplate(InvalidParameter, SecurityError):
        """A chat template tried to reach Python internals; both a 400 and a SecurityError."""

        message: str = ""  # shadows TemplateError.message (a read-only property)

    UnsafeChatTemplate.__module__ = __name__
    return UnsafeChatTemplate


def __getattr__(name: str) -> Any:
    """`from hearth.core.errors import UnsafeChatTemplate` builds that class on first use."""
    if name == "UnsafeChatTemplate":
        return _unsafe_chat_template()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
