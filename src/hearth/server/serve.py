"""Run the API server: refuse unsafe binds, fail loudly on a taken port, then hand to uvicorn.

The caller holds the home's lock (`hearth.core.instance.HomeInstance`) from before `serve` binds
until after it returns, so a second server on the same home is told "home busy", not
"port taken"; `serve` publishes the bound port in the home's server.json for the CLI.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import uvicorn

from hearth.core.config import Settings
from hearth.core.errors import ServeError
from hearth.core.instance import HomeInstance
from hearth.server import memdebug
from hearth.server.app import Hook, create_app
from hearth.server.httpproto import TargetKeepingProtocol
from hearth.server.neighbours import holder_fix, port_holder, warn_if_jan_runs
from hearth.services import Services

log = logging.getLogger("hearth")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown; a clean stop should exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


MIN_NETWORK_KEY_LENGTH = 16


def check_bind_policy(settings: Settings) -> None:
    """Refuse to open Hearth to the network without a key, or with a key short enough to
    guess (loopback-only servers may use any key: only local processes reach them)."""
    if settings.is_loopback():
        return
    if not settings.api_key and not settings.insecure:
        raise ServeError(
            f"Refusing to serve on {settings.host} without an API key: anyone on your network "
            "could use your models. Set HEARTH_API_KEY (or --api-key-file PATH), or pass "
            "--insecure if you really mean it."
        )
    if settings.api_key and len(settings.api_key) < MIN_NETWORK_KEY_LENGTH:
        raise ServeError(
            f"Refusing to serve on {settings.host} with an API key of {len(settings.api_key)} "
            f"characters: beyond loopback a key must have at least {MIN_NETWORK_KEY_LENGTH}, "
            'or someone on your network could guess it. Make one with `python -c "import '
            'secrets; print(secrets.token_urlsafe(24))"`.'
        )


#: With the default port taken, how many ports after it to try before any free one.
FALLBACK_PORTS = 20


class PortTaken(Exception):
    """The port is in use (EADDRINUSE)."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and
    # accepted ones inherit it. Without it, Nagle delays each streamed response ~40 ms on a
    # kept-alive connection (waiting for the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken from exc
        raise ServeError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _fallback(host: str, port: int) -> socket.socket:
    """The first free port after `port` (a few tried), else any free one."""
    for candidate in range(port + 1, min(port + 1 + FALLBACK_PORTS, 65536)):
        with contextlib.suppress(PortTaken):
            return _bind(host, candidate)
    return _bind(host, 0)


def bind_socket(settings: Settings) -> socket.socket:
    """Bind the listening socket ourselves so a taken port is a clear error, never a silent one.

    A port the user chose (--port, HEARTH_PORT, settings.json) that is taken is an error naming
    who holds it and the fix. The default port taken (Jan's own server listens on 1337 too):
    Hearth serves on the next free port and says so in one line; server.json publishes it, so
    every `hearth` command still finds the server."""
    host, port = settings.host, settings.port
    try:
        return _bind(host, port)
    except PortTaken:
        holder = port_holder(host, port)
    if "port" in settings.model_fields_set:
        raise ServeError(
            f"Port {port} on {host} is already in use by {holder}. Choose another port with "
            f'--port N (or HEARTH_PORT, or "port" in settings.json), {holder_fix(holder)}.'
        )
    try:
        sock = _fallback(host, port)
    except PortTaken:
        raise ServeError(
            f"Port {port} on {host} is in use by {holder} and no other port was free. "
            "Choose one with --port N."
        ) from None
    actual = sock.getsockname()[1]
    log.warning(
        "Port %d (Hearth's default) is taken by %s: Hearth serves on http://%s:%d instead. "
        "`hearth` commands find it by themselves; other programs need this address, or pass "
        "--port N to choose one.",
        port,
        holder,
        host,
        actual,
    )
    settings.port = actual  # the address Hearth's own messages give from now on
    return sock


def serve(
    services: Services,
    *,
    on_start: list[Hook] | None = None,
    on_stop: list[Hook] | None = None,
    instance: HomeInstance | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. With `instance` (the held home lock), publish server.json."""
    settings = services.settings
    check_bind_policy(settings)
    sock = bind_socket(settings)
    app = create_app(services, on_start=on_start, on_stop=on_stop)
    config = uvicorn.Config(
        app,
        http=TargetKeepingProtocol,  # the guard sees an absolute-form target's host
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    if memdebug.install():
        log.warning("Memory probe on: SIGUSR1 writes tracemalloc dumps to %s", memdebug.ENV)
    actual_port = sock.getsockname()[1]
    if instance is not None:
        instance.publish(settings.host, actual_port)
    if settings.jan:
        log.info(
            "Jan data folder: %s, used in place (nothing of Jan's is converted); Hearth's own "
            "files are in %s",
            settings.home,
            settings.state_dir,
        )
        warn_if_jan_runs()
    else:
        log.info("Hearth home: %s", settings.home)
    log.info(
        "Serving the OpenAI-compatible API on http://%s:%d/v1 (docs at /docs); open "
        "http://%s:%d in a browser to chat",
        settings.host,
        actual_port,
        settings.host,
        actual_port,
    )
    server.run(sockets=[sock])
    log.info("Hearth stopped.")
