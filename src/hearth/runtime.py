"""Assemble a full Hearth process: services, background tasks, and the HTTP server."""

from __future__ import annotations

from hearth.config import Settings
from hearth.server.serve import serve
from hearth.services import Services


def run_server(settings: Settings) -> None:
    services = Services.create(settings)
    serve(services)
