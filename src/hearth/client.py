"""A typed client for Hearth's own API (the CLI uses it when a server is running).

Errors come back as the server raised them: the body's `code` picks the class from
`hearth.errors` (see `from_wire`), so callers catch ModelNotFound, not "a 404".
"""

from __future__ import annotations

from typing import Any

import httpx

from hearth.errors import from_wire


class HearthClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HearthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> Any:
        """The body of a success; for an error, the HearthError its `code` names (ModelNotFound
        for "model_not_found", ...), else the class of its HTTP status."""
        if response.is_success:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = None
        raise from_wire(response.status_code, body, response.text or response.reason_phrase)

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        return self._check(self.http.get("/health", timeout=timeout))

    def list_models(self) -> list[dict[str, Any]]:
        return self._check(self.http.get("/v1/models"))["data"]

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/v1/models/{model_id}"))

    def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._check(self.http.patch(f"/v1/models/{model_id}", json=patch))

    def delete_model(self, model_id: str) -> dict[str, Any]:
        return self._check(self.http.delete(f"/v1/models/{model_id}"))

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._check(self.http.request(method, path, **kwargs))
