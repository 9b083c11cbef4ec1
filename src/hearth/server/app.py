"""The app factory: one FastAPI app per Services, routers mounted, guards and errors installed.

The app serves faces (`server/face.py`; Hearth's are listed in `server/faces.py`): it mounts
their routers in order, and hands the same records to the error writer, the guard and the
docs, which know no face by name.

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
from hearth.server.docs import install_docs
from hearth.server.errors import install_error_handlers
from hearth.server.face import Faces
from hearth.server.faces import FACES
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
    services: Services,
    *,
    on_start: list[Hook] | None = None,
    on_stop: list[Hook] | None = None,
    faces: Faces = FACES,
) -> FastAPI:
    """The app serving `faces` (Hearth's own unless a test hands it others)."""

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
    install_error_handlers(app, faces)
    for router in faces.routers:  # in the records' order: routes are matched in order
        app.include_router(router)
    install_docs(app, faces, api_key=bool(settings.api_key))  # /static: after /static/web/
    app.add_middleware(GuardMiddleware, settings=settings, faces=faces)
    if settings.cors_origins:  # added last: outermost, so preflights never need the key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=faces.client_headers,  # the key headers, JSON's, the faces' own
        )
    return app
