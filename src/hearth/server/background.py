"""A Hearth server on a free loopback port in a thread of this process.

For CLI commands that need a server when none runs (`hearth run`): the same app and lifespan
as `hearth serve`, so its engines stop when it does.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from hearth.errors import HearthError
from hearth.server.app import create_app
from hearth.services import Services


class BackgroundServer:
    """`with BackgroundServer(services) as url:` serves until the block ends."""

    def __init__(self, services: Services, start_timeout: float = 60.0) -> None:
        self.services = services
        self.start_timeout = start_timeout
        # IPPROTO_TCP so accepted connections get TCP_NODELAY (see serve.bind_socket)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(services), log_level="warning", lifespan="on")
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
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=60)
        self.sock.close()
