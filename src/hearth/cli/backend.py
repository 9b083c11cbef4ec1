"""What the CLI talks to: the running server when there is one for this home, else the store.

Going through the server when it runs keeps its view coherent (a removed model is also stopped);
working on the folder directly lets a person manage models with no server at all.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from hearth.client import HearthClient
from hearth.config import Settings
from hearth.errors import HearthError
from hearth.services import Services


class Backend(Protocol):
    where: str

    def list_models(self) -> list[dict[str, Any]]: ...
    def get_model(self, model_id: str) -> dict[str, Any]: ...
    def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def delete_model(self, model_id: str) -> dict[str, Any]: ...
    def import_errors(self) -> list[dict[str, Any]]: ...


class LocalBackend:
    def __init__(self, settings: Settings) -> None:
        self.services = Services.create(settings)
        self.where = f"home {settings.home} (no server running)"

    def list_models(self) -> list[dict[str, Any]]:
        return [self.services.model_json(e) for e in self.services.store.list()]

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self.services.model_json(self.services.store.get(model_id))

    def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.services.model_json(self.services.store.update(model_id, patch))

    def delete_model(self, model_id: str) -> dict[str, Any]:
        entry = self.services.store.delete(model_id)
        return {"id": entry.id, "object": "model", "deleted": True}

    def import_errors(self) -> list[dict[str, Any]]:
        return self.services.importer.errors.list()


class RemoteBackend(HearthClient):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.base_url, settings.api_key)
        self.where = f"server {settings.base_url}"

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/models/import/errors")["data"]


def server_for(settings: Settings) -> RemoteBackend | None:
    """The running Hearth server for this home, if one answers on the configured address."""
    client = RemoteBackend(settings)
    try:
        info = client.health()
    except (httpx.HTTPError, HearthError, ValueError):
        client.close()
        return None
    if info.get("service") != "hearth" or info.get("home") != str(settings.home):
        client.close()
        return None
    return client


def connect(settings: Settings) -> Backend:
    return server_for(settings) or LocalBackend(settings)
