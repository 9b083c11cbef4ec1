"""A typed client for Hearth's own API (the CLI uses it when a server is running).

Errors come back as the server raised them: the body's `code` picks the class from
`hearth.core.errors` (see `from_wire`), so callers catch ModelNotFound, not "a 404". A server that
cannot be reached (refused, reset, timed out) is `Unavailable`, naming the address.

It speaks HTTP/1.1 with the standard library's `http.client`: the CLI makes a few JSON calls and
reads one server-sent-event stream, on loopback, and importing httpx would cost a command more
time (~100 ms) than the whole round trip. Each request opens its own connection (on loopback,
well under a millisecond), so there is no pooled connection to go stale between calls.
"""

from __future__ import annotations

import contextlib
import http.client
import json as jsonlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from hearth.core.errors import HearthError, Unavailable, from_wire

_DEFAULT: Any = object()  # "the client's timeout", as opposed to None: "no timeout"
_PATH_SAFE = "/%!$&'()*+,;=:@~"  # what httpx leaves unquoted in a path


class StreamResponse:
    """A response whose body is read as it arrives (server-sent events)."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.status = response.status

    def iter_lines(self) -> Iterator[str]:
        while line := self.response.readline():
            yield line.decode("utf-8", errors="replace").rstrip("\r\n")


class HearthClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port  # ValueError for a bad port, as for a bad scheme
        self._prefix = parts.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    def close(self) -> None:
        """Nothing stays open between requests; kept so a client is a context manager."""

    def __enter__(self) -> HearthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self._prefix + quote(path, safe=_PATH_SAFE)
        if params:
            query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
            target += "?" + urlencode(query)
        return target

    def _open(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = _DEFAULT,
        read_timeout: float | None = _DEFAULT,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request and read the response's head; the caller reads the body and closes."""
        timeout = self.timeout if timeout is _DEFAULT else timeout
        read_timeout = timeout if read_timeout is _DEFAULT else read_timeout
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = kind(self._host, self._port, timeout=timeout)
        sent = {**self.headers, **(headers or {})}
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            sent["Content-Type"] = "application/json"
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(read_timeout)
            conn.request(method, self._target(path, params), body=body, headers=sent)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> Unavailable:
        why = str(exc) or type(exc).__name__
        return Unavailable(
            f"Could not reach the Hearth server at {self.base_url} ({why}). Check that "
            "`hearth serve` is running for this home, and try again."
        )

    def _check(self, status: int, reason: str, body: bytes) -> Any:
        """The JSON body of a success; for an error, the HearthError its `code` names
        (ModelNotFound for "model_not_found", ...), else the class of its HTTP status."""
        if 200 <= status < 300:
            return jsonlib.loads(body)
        try:
            data = jsonlib.loads(body)
        except ValueError:
            data = None
        text = body.decode("utf-8", errors="replace")
        raise from_wire(status, data, text or reason)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call: `json=` body, `params=` query, `timeout=` seconds (None: wait forever)."""
        conn, response = self._open(method, path, **kwargs)
        try:
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        finally:
            conn.close()
        return self._check(response.status, response.reason, body)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[StreamResponse]:
        """A response read as it arrives (`read_timeout=None` by default: a reply may pause);
        an error status raises its HearthError before the body is read."""
        kwargs.setdefault("read_timeout", None)
        conn, response = self._open(method, path, **kwargs)
        try:
            if not 200 <= response.status < 300:
                self._check(response.status, response.reason, response.read())
            yield StreamResponse(response)
        finally:
            conn.close()

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        return self.request_object("GET", "/health", timeout=timeout)

    def list_models(self) -> list[dict[str, Any]]:
        return self.request_list("GET", "/v1/models")

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self.request_object("GET", f"/v1/models/{model_id}")

    def update_model(self, model_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request_object("PATCH", f"/v1/models/{model_id}", json=patch)

    def delete_model(self, model_id: str) -> dict[str, Any]:
        return self.request_object("DELETE", f"/v1/models/{model_id}")

    def request_object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call whose answer is a JSON object (a server that says otherwise is not Hearth)."""
        answer = self.request(method, path, **kwargs)
        if not isinstance(answer, dict):
            raise HearthError(f"Hearth answered {path} with something other than an object.")
        return answer

    def request_list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """A call whose answer is OpenAI's list object: its `data`."""
        data = self.request_object(method, path, **kwargs).get("data")
        if not isinstance(data, list):
            raise HearthError(f"Hearth answered {path} without a `data` list.")
        return data
