"""A Hearth server on a free loopback port in a thread of this process.

For CLI commands that need a server when none runs (`hearth run`, through
`hearth.runtime.serve_in_background`: the CLI never imports `server/`): the same app and lifespan
as `hearth serve`, so its engines stop when it does. It serves the home as fully as
`hearth serve` does, so it holds the same home lock and publishes the same server.json: other
CLI commands find it, and a `hearth serve` started meanwhile is told the home is busy.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from hearth.core.errors import HearthError
from hearth.core.instance import HomeInstance
from hearth.server.app import create_app
from hearth.server.httpproto import TargetKeepingProtocol
from hearth.services import Services


class BackgroundServer:
    """`with BackgroundServer(services) as url:` serves until the block ends.

    Pass `instance` when the caller already holds the home's lock (so that `Services.create`
    ran under it); otherwise the server takes the lock itself, before it binds, and raises
    Conflict if another process serves the home.
    """

    def __init__(
        self,
        services: Services,
        start_timeout: float = 60.0,
        instance: HomeInstance | None = None,
    ) -> None:
        self.services = services
        self.start_timeout = start_timeout
        self._owns_instance = instance is None
        self.instance = instance or HomeInstance(services.settings.state_dir)
        if self._owns_instance:
            self.instance.acquire()
        # IPPROTO_TCP so accepted connections get TCP_NODELAY (see serve.bind_socket)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self.sock.bind(("127.0.0.1", 0))
        except OSError:
            self.sock.close()
            if self._owns_instance:
                self.instance.release()
            raise
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(services), http=TargetKeepingProtocol, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise HearthError("Could not start a Hearth server in this process; see above.")
            time.sleep(0.02)
        self.instance.publish("127.0.0.1", self.port)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=60)
        self.sock.close()
        if self._owns_instance:
            self.instance.release()
