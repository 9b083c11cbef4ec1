"""The home's running server as a CLI backend: the stdlib client plus the import-errors call.

Its own module so that `cli/backend.py` (imported by every command that looks for a server)
loads `http.client` only once something answers at the server's address.
"""

from __future__ import annotations

from typing import Any

from hearth.cli.client import HearthClient


class RemoteBackend(HearthClient):
    def __init__(self, url: str, api_key: str | None) -> None:
        super().__init__(url, api_key)
        self.where = f"server {url}"

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request_list("GET", "/v1/models/import/errors")
