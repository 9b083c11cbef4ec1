"""The API's documentation, served from files inside Hearth: /docs, /openapi.json, /static.

FastAPI's default /docs page loads Swagger UI from a CDN, which leaves it blank offline and
tells a third party each time someone reads the docs. Swagger UI is vendored instead (pinned,
with its licence, under static/swagger-ui/; see the README.txt there) and served at /static.

The schema also states what FastAPI cannot know: the model id grammar on every `{model_id}`
path parameter (ids are validated by the store, which gives the error its OpenAI shape, so the
pattern is documentation only), that inference bodies need "model", and how to send the API
key when one is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from hearth.models import ids
from hearth.server.face import Faces

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER = "/static/swagger-ui"
#: The docs' paths, all readable without the key: the pages, FastAPI's schema and the mount.
PATHS = ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/static/*")
# ids._ID_RE matches whole ids with fullmatch; JSON Schema patterns are unanchored.
MODEL_ID_SCHEMA = {
    "type": "string",
    "pattern": f"^{ids.ANY_ID_PATTERN}$",
    "minLength": 1,
    "maxLength": ids.MAX_JAN_ID_LENGTH,
}

router = APIRouter(include_in_schema=False)


#: Pages a browser renders may not be framed by another site (clickjacking the "Try it out"
#: buttons); the API's JSON answers are not pages and go out unchanged.
NO_FRAMES = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI, from /static only: no request leaves this machine."""
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Hearth API",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_ui_parameters={"validatorUrl": None},  # no spec sent to swagger.io
    )
    page.headers.update(NO_FRAMES)
    return page


@router.get("/docs/oauth2-redirect")
async def oauth2_redirect() -> HTMLResponse:
    page = get_swagger_ui_oauth2_redirect_html()
    page.headers.update(NO_FRAMES)
    return page


def install_docs(app: FastAPI, faces: Faces, *, api_key: bool) -> None:
    """Serve /static, and complete the generated schema from the faces' records (see the
    module docstring); `router` (/docs) is mounted with the other faces' routers, before.

    The app must be built with docs_url=None and redoc_url=None (their pages use a CDN).
    """
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _complete(schema, faces, api_key=api_key)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(schema: dict[str, Any], faces: Faces, *, api_key: bool) -> None:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "path" and param.get("name") == "model_id":
                    param["schema"] = {**param.get("schema", {}), **MODEL_ID_SCHEMA}
            if faces.is_inference(path):
                _require_model(operation)
    if not api_key:
        return
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    named = [key.openapi() for key in faces.keys]  # every face's key headers
    schemes.update(named)
    schema["security"] = [{name: []} for name, _ in named]
    for path, operations in schema.get("paths", {}).items():
        if faces.is_public(path):  # /health: open to all
            for operation in operations.values():
                operation["security"] = [{}]


def _require_model(operation: dict[str, Any]) -> None:
    """Inference routes read their body themselves (free-form objects passed on to the engine),
    and every one needs "model"; say so in their inline schemas."""
    content = operation.get("requestBody", {}).get("content", {})
    body = content.get("application/json", {}).get("schema", {})
    if body.get("type") != "object" or "$ref" in body:
        return
    body.setdefault("required", ["model"])
    body.setdefault("properties", {}).setdefault(
        "model", {**MODEL_ID_SCHEMA, "description": "The model's id (GET /v1/models)."}
    )
