"""Assemble a full Hearth process: services, background tasks, and the HTTP server.

The faces start servers only through here: `hearth serve` (`run_server`) and the CLI commands
that need a server when none runs (`serve_in_background`, for `hearth run`). Both take the
home's lock before any start-up work, so `cli/` never reaches into `server/` itself.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hearth.core.config import Settings
from hearth.core.instance import HomeInstance
from hearth.services import Services

if TYPE_CHECKING:
    from hearth.services.starter import Display


def run_server(settings: Settings, starter_display: Display | None = None) -> None:
    """Serve the home; its lock is held from before any start-up work to after the last engine.

    `starter_display` shows the starter model's first fetch (the CLI passes a Rich bar when
    its logs go to a terminal); by default it is logged.

    The lock comes first because `Services.create` already writes to the home (it sweeps the
    trash, recovers interrupted imports): a second server must be refused before that, and
    before it binds, so its error says "home busy" rather than "port taken".
    """
    from hearth.server.serve import serve
    from hearth.services.starter import install_on_start

    with HomeInstance(settings.state_dir) as instance:
        services = Services.create(settings)
        # Engines stop in Services.stop (the app's lifespan), so Ctrl-C and SIGTERM leave none.
        starter = functools.partial(install_on_start, display=starter_display)
        serve(services, on_start=[starter], instance=instance)


@contextlib.contextmanager
def serve_in_background(settings: Settings) -> Iterator[str]:
    """Serve the home on a free loopback port in a thread of this process; yields its URL.

    Like `run_server`, the home's lock is taken before `Services.create` runs: if another
    process began serving the home meanwhile, that is a clear "home busy" error naming it,
    never a second server. Its engines stop when the block ends.
    """
    from hearth.server.background import BackgroundServer

    with (
        HomeInstance(settings.state_dir) as instance,
        BackgroundServer(Services.create(settings), instance=instance) as url,
    ):
        yield url
