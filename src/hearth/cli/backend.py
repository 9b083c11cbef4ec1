"""What the CLI talks to: the running server when there is one for this home, else the store.

Going through the server when it runs keeps its view coherent (a removed model is also stopped);
working on the folder directly lets a person manage models with no server at all.

The home's server is found from its server.json (see `hearth.core.instance`), whatever port it was
started on; the configured address (settings' host and port) is tried only when no live server
publishes itself there, for servers embedded in another program.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from hearth.core.errors import HearthError, Unavailable
from hearth.core.instance import RunningServer, running_server

if TYPE_CHECKING:
    from hearth.cli.remote import RemoteBackend
    from hearth.core.address import ServerAddress
    from hearth.core.config import Settings

#: A published server holds the home: wait a little for it to answer rather than bypass it.
PUBLISHED_HEALTH_TIMEOUT = 5.0


class Backend(Protocol):
    where: str

    def list_models(self) -> list[dict[str, Any]]: ...
    def get_model(self, model_id: str) -> dict[str, Any]: ...
    def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def delete_model(self, model_id: str) -> dict[str, Any]: ...
    def import_errors(self) -> list[dict[str, Any]]: ...


class LocalBackend:
    """The home's folder, through the same `Services` methods the server's routes call."""

    def __init__(self, settings: Settings) -> None:
        from hearth.services import Services  # the store, downloads and engines: only here

        self.services = Services.create(settings)
        self.where = f"home {settings.home} (no server running)"

    def list_models(self) -> list[dict[str, Any]]:
        return self.services.list_models()

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self.services.get_model(model_id)

    def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.services.update_model(model_id, patch)

    def delete_model(self, model_id: str) -> dict[str, Any]:
        import asyncio

        return asyncio.run(self.services.delete_model(model_id))

    def import_errors(self) -> list[dict[str, Any]]:
        return self.services.import_errors()


def server_for(settings: ServerAddress | Settings) -> RemoteBackend | None:
    """The running Hearth server for this home: the one its server.json names, if live.

    The api key still comes from settings (flag, HEARTH_API_KEY, settings.json): server.json
    never holds it.
    """
    published = running_server(settings.state_dir)
    if published is not None:
        return _published(settings, published)
    return _configured(settings)


def _published(settings: ServerAddress | Settings, server: RunningServer) -> RemoteBackend:
    """The home's live server; one that does not answer is an error, never bypassed.

    Working on the folder behind its back, or starting a second server for the home (what
    `hearth run` would do), is what the home lock exists to prevent.
    """
    from hearth.cli.remote import RemoteBackend

    client = RemoteBackend(server.url, settings.api_key)
    try:
        client.health(timeout=PUBLISHED_HEALTH_TIMEOUT)
    except (HearthError, ValueError) as exc:
        client.close()
        cause = exc.__cause__ or exc  # unreachable: the socket's reason, not the client's text
        why = cause.message if isinstance(cause, HearthError) else str(cause)
        raise Unavailable(
            f"The Hearth server of the home {settings.home} (pid {server.pid}, {server.url}) "
            f"does not answer ({why}). Wait until it has finished starting, or stop it "
            f"with `kill {server.pid}` and try again.",
            code="server_not_answering",
        ) from None
    return client


def _configured(settings: ServerAddress | Settings) -> RemoteBackend | None:
    """A server at the configured address that says it serves this home (an embedded one).

    A refused connection answers at once, before the HTTP client is imported: that is the
    usual case with no server (`http.client` alone is ~30-80 ms of a command's start-up)."""
    if _refused(settings.host, settings.port):
        return None
    from hearth.cli.remote import RemoteBackend

    client = RemoteBackend(settings.base_url, settings.api_key)
    try:
        info = client.health()
    except (HearthError, ValueError):
        client.close()
        return None
    if not isinstance(info, dict) or info.get("home") != str(settings.home):
        client.close()
        return None
    return client


def _refused(host: str, port: int) -> bool:
    """True when nothing listens at host:port (the connection was refused, not timed out):
    no server can answer there. Any other outcome leaves the question to the HTTP probe."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host.strip("[]")
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except (OSError, ValueError, OverflowError):
        return False


def connect(address: ServerAddress, settings: Callable[[], Settings]) -> Backend:
    """The home's server, else its folder (full settings are read only in that case)."""
    return server_for(address) or LocalBackend(settings())
