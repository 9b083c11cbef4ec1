"""Assemble a full Hearth process: services, background tasks, and the HTTP server."""

from __future__ import annotations

from hearth.config import Settings
from hearth.server.serve import serve
from hearth.services import Services


def run_server(settings: Settings) -> None:
    from hearth.starter import install_on_start

    services = Services.create(settings)
    # Engines stop in Services.stop (the app's lifespan), so Ctrl-C and SIGTERM leave none.
    serve(services, on_start=[install_on_start])
