"""Request guards, as one small ASGI middleware: Host allow-list and the optional API key.

- Host: a web page on evil.example can make a browser send requests to 127.0.0.1 by pointing
  its own DNS name there (DNS rebinding). Such requests carry `Host: evil.example`, so only
  loopback names, the bound address and `allowed_hosts` are accepted.
- API key: when set, every /v1 route needs `Authorization: Bearer <key>` (compared in constant
  time). /health and /docs stay open: they reveal nothing about models.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.config import LOOPBACK_HOSTS, Settings


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class GuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.api_key = settings.api_key.encode() if settings.api_key else None
        allowed: set[str] = {h.lower() for h in LOOPBACK_HOSTS}
        allowed.update(h.lower() for h in settings.allowed_hosts)
        if settings.host not in ("0.0.0.0", "::", ""):
            allowed.add(settings.host.lower())
        self.allowed_hosts = frozenset(allowed)

    def _host_ok(self, host: str) -> bool:
        name = _host_name(host)
        if name in self.allowed_hosts:
            return True
        try:
            return ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(_headers(scope["headers"]))
        host = headers.get("host", "")
        if not self._host_ok(host):
            await _reject(
                send,
                403,
                f"Host '{host}' is not allowed. Hearth answers only to loopback names; add this "
                "name to the 'allowed_hosts' setting (HEARTH_ALLOWED_HOSTS) to allow it.",
                "host_not_allowed",
            )
            return
        if self.api_key is not None and scope["path"].startswith("/v1"):
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), self.api_key
            ):
                await _reject(
                    send,
                    401,
                    "Missing or wrong API key. Send 'Authorization: Bearer <key>' with the key "
                    "set by --api-key or HEARTH_API_KEY.",
                    "invalid_api_key",
                )
                return
        await self.app(scope, receive, send)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[str, str]]:
    for key, value in raw:
        yield key.decode("latin-1").lower(), value.decode("latin-1")


async def _reject(send: Send, status: int, message: str, code: str) -> None:
    body = json.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
