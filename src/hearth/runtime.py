"""Assemble a full Hearth process: services, background tasks, and the HTTP server."""

from __future__ import annotations

from hearth.config import Settings
from hearth.instance import HomeInstance
from hearth.server.serve import serve
from hearth.services import Services


def run_server(settings: Settings) -> None:
    """Serve the home; its lock is held from before any start-up work to after the last engine.

    The lock comes first because `Services.create` already writes to the home (it sweeps the
    trash, recovers interrupted imports): a second server must be refused before that, and
    before it binds, so its error says "home busy" rather than "port taken".
    """
    from hearth.starter import install_on_start

    with HomeInstance(settings.home) as instance:
        services = Services.create(settings)
        # Engines stop in Services.stop (the app's lifespan), so Ctrl-C and SIGTERM leave none.
        serve(services, on_start=[install_on_start], instance=instance)
