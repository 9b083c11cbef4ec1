"""The app factory: one FastAPI app per Services, routers mounted, guards and errors installed.

Middleware, outermost first: CORS (answers preflights from allowed origins and labels their
responses), then the guard (`security.py`: Host, cross-site, API key, body limits) in front of
every route, static files and docs included.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware

from hearth import __version__
from hearth.server import (
    anthropic,
    downloads,
    health,
    imports,
    inference,
    models,
    ollama,
    responses,
    running,
    threads,
    web,
)
from hearth.server.docs import install_docs
from hearth.server.errors import install_error_handlers
from hearth.server.jsonbody import checked_body
from hearth.server.security import GuardMiddleware
from hearth.services import Services

log = logging.getLogger("hearth")

Hook = Callable[[Services], Awaitable[None]]


def settle(app: FastAPI) -> None:
    """Last start-up work, so that no first request pays it on the event loop (issue 22):

    - FastAPI reads each endpoint's source file (`inspect.getsourcelines`, for its error
      messages) on the endpoint's first request: read them all now, into `linecache`;
    - move what start-up made (modules, the app, its routes: most of the heap) out of the
      garbage collector's reach. A full collection walks every tracked object while it holds
      the event loop: with the start-up heap that took 50-120 ms in the middle of a request on
      a loaded machine; frozen, it walks only what serving made. Those objects live as long
      as the server anyway; young garbage is collected first (cheap: the young generations),
      and shutdown unfreezes everything (a process serving several times, as tests do, would
      otherwise keep each earlier app's cycles for good).
    """
    for route in app.routes:
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            with contextlib.suppress(OSError, TypeError):
                inspect.getsourcelines(endpoint)
    gc.collect(1)
    gc.freeze()


def create_app(
    services: Services, *, on_start: list[Hook] | None = None, on_stop: list[Hook] | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        for hook in on_start or []:
            await hook(services)
        settle(app)
        try:
            yield
        finally:
            for hook in reversed(on_stop or []):
                try:
                    await hook(services)
                except Exception:
                    log.exception("error during shutdown")
            await services.stop()
            gc.unfreeze()  # see settle

    settings = services.settings
    app = FastAPI(
        title="Hearth",
        version=__version__,
        description="Local language models behind an OpenAI-compatible API.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from vendored assets, not a CDN
        redoc_url=None,
        dependencies=[Depends(checked_body)],  # JSON depth/surrogate limits on every body
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(inference.router)  # early: routes are matched in order, per request
    app.include_router(anthropic.router)  # Anthropic's Messages (/v1/messages)
    app.include_router(responses.router)  # OpenAI's Responses API, translated to chat
    app.include_router(imports.router)
    app.include_router(downloads.router)
    app.include_router(models.router)
    app.include_router(running.router)
    app.include_router(threads.router)  # conversations as files: Jan's Threads/Messages, runs
    app.include_router(ollama.router)  # Ollama's API (/api/*) and the liveness probe at /
    app.include_router(web.router)  # the web page's files, /static/web/ (before docs' /static)
    install_docs(app, api_key=bool(settings.api_key))
    app.add_middleware(GuardMiddleware, settings=settings)
    if settings.cors_origins:  # added last: outermost, so preflights never need the key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "authorization",
                "content-type",
                "x-api-key",
                # Anthropic's SDK in a browser sends these (/v1/messages); Hearth ignores them
                "anthropic-version",
                "anthropic-beta",
                "anthropic-dangerous-direct-browser-access",
            ],
        )
    return app
