"""One exception tree for all of Hearth; each class knows its HTTP status and OpenAI error shape.

    HearthError                      500 server_error
    ├── InvalidRequest               400 invalid_request_error
    │   ├── InvalidModelId           400 invalid_model_id
    │   ├── InvalidModelFile         400 invalid_model_file      (not a model / corrupt GGUF)
    │   └── InvalidParameter         400 invalid_parameter
    ├── Unauthorized                 401 invalid_api_key
    ├── Forbidden                    403 path_not_allowed
    │   ├── HostNotAllowed           403 host_not_allowed       (DNS rebinding defence)
    │   └── CrossOriginRefused       403 cross_origin_refused   (a web page of another site)
    ├── NotFound                     404 not_found
    │   └── ModelNotFound            404 model_not_found
    ├── Conflict                     409 conflict
    ├── RequestTooLarge              413 request_too_large
    ├── UnsupportedMediaType         415 unsupported_media_type
    ├── InsufficientStorage          507 insufficient_storage
    ├── EngineError                  502 engine_error           (an engine failed or died)
    └── Unavailable                  503 unavailable            (cannot fit / busy)

Services raise these; the server's one handler turns them into
`{"error": {"message", "type", "param", "code"}}` and the CLI prints the message.
Messages say what went wrong *and* how to fix it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HearthError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]

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


class InvalidModelFile(InvalidRequest):
    code = "invalid_model_file"


class InvalidParameter(InvalidRequest):
    code = "invalid_parameter"


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

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"The model '{model_id}' does not exist. List models with `hearth models list` "
            "or GET /v1/models; import one with `hearth models import PATH`.",
            param="model",
        )
        self.model_id = model_id


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


class EngineError(HearthError):
    status = 502
    type = "server_error"
    code = "engine_error"


class Unavailable(HearthError):
    status = 503
    type = "server_error"
    code = "unavailable"
