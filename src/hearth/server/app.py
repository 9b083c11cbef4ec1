"""The app factory: one FastAPI app per Services, routers mounted, guards and errors installed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from hearth import __version__
from hearth.server import downloads, health, imports, inference, models, running
from hearth.server.errors import install_error_handlers
from hearth.server.security import GuardMiddleware
from hearth.services import Services

log = logging.getLogger("hearth")

Hook = Callable[[Services], Awaitable[None]]


def create_app(
    services: Services, *, on_start: list[Hook] | None = None, on_stop: list[Hook] | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        for hook in on_start or []:
            await hook(services)
        try:
            yield
        finally:
            for hook in reversed(on_stop or []):
                try:
                    await hook(services)
                except Exception:
                    log.exception("error during shutdown")
            await services.stop()

    app = FastAPI(
        title="Hearth",
        version=__version__,
        description="Local language models behind an OpenAI-compatible API.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(inference.router)  # early: routes are matched in order, per request
    app.include_router(imports.router)
    app.include_router(downloads.router)
    app.include_router(models.router)
    app.include_router(running.router)
    app.add_middleware(GuardMiddleware, settings=services.settings)
    if services.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=services.settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["authorization", "content-type"],
        )
    return app
