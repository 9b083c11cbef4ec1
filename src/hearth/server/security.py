"""The front door: one ASGI middleware that checks every request before any route sees it.

Checked in this order, for every path (routes added later are covered without a change here):

- Host: a web page on evil.example can make a browser send requests to 127.0.0.1 by pointing
  its own DNS name there (DNS rebinding). Such requests carry `Host: evil.example`, so only
  loopback names, the bound address and `allowed_hosts` are accepted, and the header must be a
  well-formed `name[:port]` or `[ipv6][:port]` (`localhost:evil.com` is not). Exactly one
  Host header, and an absolute-form target (`GET http://host/path`) must name the same host
  as the header; otherwise 400 (which Host would count is then anyone's guess). uvicorn's
  httptools protocol drops the target's host, so Hearth serves with `TargetKeepingProtocol`
  (server/httpproto.py), which keeps it.
- Cross-site: a page of another origin can send "simple" requests (a `text/plain` POST, an
  `<img>` GET) that need no CORS preflight. A request is refused when its `Origin` is neither
  Hearth's own nor in `cors_origins`, or when the browser labels it `Sec-Fetch-Site:
  cross-site`/`same-site` (an `<img>` sends no Origin) without an allowed Origin.
- API key: when set, everything but what a face's record makes public (/health, the docs and
  the web page: `/` asked for as HTML, and its files under /static/web/: they hold no data,
  and the page asks for the key) needs it, in any face's key header (`Authorization: Bearer
  <key>`, or `x-api-key: <key>` as Anthropic's clients send it), compared in constant time.
  /health then tells a caller without the key only that the server is up.
- Bodies: a POST/PUT/PATCH body declared as anything but JSON is 415 (a page can send form
  and text types without a preflight). A body with no Content-Type at all passes to the route,
  as scripts send it; a browser sends one only with an Origin, judged above. Bodies are capped
  before they are read: inference routes at the `max_body_bytes` setting, everything else at
  1 MiB (`face.MANAGEMENT_MAX_BODY`); each face's record names its inference paths. A
  Content-Length over the cap is refused at once; a chunked body is counted as the route
  reads it and refused as soon as it passes the cap.

Refusals are Hearth errors (`hearth.core.errors`), written by the same writer as every other error
(`hearth.server.errors.send_error`) in the shape of the face that owns the path, so a client
cannot tell the guard's from a route's. The guard knows no face by name: it reads the records
it is handed (`server/face.py`). Before one is written, what the client is already sending is
read and dropped, within bounds (`_linger`), so that closing the connection does not reset it
under the refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.core.config import LOOPBACK_HOSTS, Settings
from hearth.core.errors import (
    CrossOriginRefused,
    HearthError,
    HostNotAllowed,
    InvalidRequest,
    RequestTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from hearth.server.errors import send_error
from hearth.server.face import MANAGEMENT_MAX_BODY, Faces
from hearth.server.httpproto import REQUEST_TARGET

_LINGER_BYTES = 8 * 1024 * 1024  # read at most this much of a refused body before closing
_LINGER_IDLE_S = 0.2  # and stop once the client has sent nothing for this long
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CROSS_SITE = frozenset({"cross-site", "same-site"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})
# name[:port] with a DNS-style name (or IPv4), or [ipv6][:port]; a port is 1 to 5 digits.
_HOST_RE = re.compile(
    r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
AUTHENTICATED = "hearth_authenticated"  # key in scope["state"]: did the caller show the key?


def parse_host(value: str) -> str | None:
    """The host part of a Host header, lower-cased (`[::1]` keeps its brackets), or None when
    the header is malformed: a bad port, stray characters, an unbracketed IPv6 literal."""
    match = _HOST_RE.fullmatch(value.lower())
    if match is None:
        return None
    port = match.group("port")
    if port is not None and int(port) > 65535:
        return None
    ip6 = match.group("ip6")
    if ip6 is None:
        return match.group("name")
    try:
        ipaddress.IPv6Address(ip6)
    except ValueError:
        return None
    return f"[{ip6}]"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class GuardMiddleware:
    """Refuses, in one place, what no route should ever see; see the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings, faces: Faces) -> None:
        self.app = app
        self.faces = faces
        self.api_key = _digest(settings.api_key.encode()) if settings.api_key else None
        allowed: set[str] = {h.lower() for h in LOOPBACK_HOSTS}
        allowed.update(h.lower() for h in settings.allowed_hosts)
        if settings.host not in ("0.0.0.0", "::", ""):
            host = settings.host.lower()
            allowed.add(f"[{host.strip('[]')}]" if ":" in host else host)
        self.allowed_hosts = frozenset(allowed)
        self.cors_origins = frozenset(o.lower().rstrip("/") for o in settings.cors_origins)
        self.max_inference_body = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(_headers(scope["headers"]))
        path: str = scope["path"]
        try:
            limit = self._check(scope, headers)
        except HearthError as refused:
            await _linger(receive)
            await send_error(send, refused, self.faces.error(path))
            return
        body = _LimitedBody(receive, send, limit, self.faces.is_inference(path))
        try:
            await self.app(scope, body.receive, body.send)
        except RequestTooLarge as exc:  # raised by body.receive and not turned into a response
            if not body.started:
                await _linger(receive)
                await send_error(send, exc, self.faces.error(path))

    def _check(self, scope: Scope, headers: dict[str, str]) -> int:
        """Raise the refusal for this request, or return the body cap that applies to it."""
        path: str = scope["path"]
        host = headers.get("host", "")
        _check_one_host(scope, host)
        if not self._host_ok(host):
            raise HostNotAllowed(
                f"Host '{host[:100]}' is not allowed. Hearth answers only to loopback names; add "
                "this name to the 'allowed_hosts' setting (HEARTH_ALLOWED_HOSTS) to allow it."
            )
        self._check_site(scope, headers, host)
        authenticated = self.api_key is None or self._key_ok(headers)
        scope.setdefault("state", {})[AUTHENTICATED] = authenticated
        if not authenticated and not self._is_open(scope, headers):
            raise Unauthorized(
                f"Missing or wrong API key. Send {self.faces.key_hint} with the key set by "
                "HEARTH_API_KEY, --api-key-file or --api-key."
            )
        return self._check_body(scope["method"], path, headers)

    def _host_ok(self, host: str) -> bool:
        name = parse_host(host)
        if name is None:
            return False
        if name in self.allowed_hosts:
            return True
        try:
            return ipaddress.ip_address(name.strip("[]")).is_loopback
        except ValueError:
            return False

    def _check_site(self, scope: Scope, headers: dict[str, str], host: str) -> None:
        """Refuse a browser request made by a page of another origin (CSRF, drive-by GETs)."""
        origin = headers.get("origin")
        allowed = origin is not None and (
            origin.lower().rstrip("/") in self.cors_origins
            or origin.lower() == f"{scope['scheme']}://{host}".lower()
        )
        if origin is not None and not allowed:
            raise CrossOriginRefused(
                f"Requests from the web page at {origin[:100]!r} are refused: browsers may call "
                "Hearth only from its own pages or from origins listed in the 'cors_origins' "
                "setting (--cors-origin, HEARTH_CORS_ORIGINS)."
            )
        site = headers.get("sec-fetch-site", "").lower()
        if origin is None and not site and not self.faces.is_public(scope["path"]):
            # An older browser sends neither header for an <img> or a link; its Referer still
            # names the page that made the request.
            referer = _origin_of(headers.get("referer", ""))
            own = f"{scope['scheme']}://{host}".lower()
            if referer and referer != own and referer not in self.cors_origins:
                raise CrossOriginRefused(
                    f"A request made by the web page at {referer[:100]!r} is refused. To call "
                    "Hearth from a web page, list the page's origin in the 'cors_origins' "
                    "setting (--cors-origin, HEARTH_CORS_ORIGINS)."
                )
        if site in _CROSS_SITE and not allowed and not self._navigation(scope, headers):
            raise CrossOriginRefused(
                "A request made by another site's web page is refused (Sec-Fetch-Site: "
                f"{site}). To call Hearth from a web page, list the page's origin in the "
                "'cors_origins' setting (--cors-origin, HEARTH_CORS_ORIGINS)."
            )

    def _is_open(self, scope: Scope, headers: dict[str, str]) -> bool:
        """Readable without the key: the faces' public paths, and what a face opens (the web
        page a browser opens at `/`)."""
        return self.faces.is_open(scope["method"], scope["path"], headers.get("accept", ""))

    def _navigation(self, scope: Scope, headers: dict[str, str]) -> bool:
        """A link followed to the docs or /health: opens a page, changes nothing."""
        return (
            headers.get("sec-fetch-mode", "").lower() == "navigate"
            and scope["method"] in _SAFE_METHODS
            and self._is_open(scope, headers)
        )

    def _key_ok(self, headers: dict[str, str]) -> bool:
        """Does some face's key header carry the key?"""
        assert self.api_key is not None
        candidates = self.faces.offered_keys(headers)
        # Digests of equal length: the comparison time says nothing about the key's length.
        return any(
            hmac.compare_digest(_digest(t.encode("latin-1")), self.api_key) for t in candidates
        )

    def _check_body(self, method: str, path: str, headers: dict[str, str]) -> int:
        inference = self.faces.is_inference(path)
        limit = self.max_inference_body if inference else MANAGEMENT_MAX_BODY
        length = _content_length(headers)
        has_body = (length or 0) > 0 or "transfer-encoding" in headers
        content_type = headers.get("content-type")
        if method in _BODY_METHODS and has_body and content_type and not _is_json(content_type):
            raise UnsupportedMediaType(
                f"The body's Content-Type is {content_type[:100]!r}; Hearth reads JSON only. "
                "Send the body as JSON with 'Content-Type: application/json'."
            )
        if length is not None and length > limit:
            raise _too_large(limit, inference)
        return limit


class _LimitedBody:
    """`receive` that counts body bytes and raises RequestTooLarge past the cap, and `send`
    that closes the connection after such a refusal (the rest of the body is never read)."""

    def __init__(self, receive: Receive, send: Send, limit: int, inference: bool) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.inference = inference
        self.seen = 0
        self.over = False
        self.started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.over = True
                raise _too_large(self.limit, self.inference)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.over:
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await self._send(message)


async def _linger(receive: Receive) -> None:
    """Read and drop what the client is already sending before a refusal is written, within
    bounds (_LINGER_BYTES, and _LINGER_IDLE_S without a byte). The connection is closed after a
    refusal; closed with unread bytes, the kernel answers them with a reset, and a reset can
    destroy the refusal in the client's buffer before it reads it ("connection reset" instead
    of a 413 that says what to fix). The body is never parsed or kept."""
    drained = 0
    while drained <= _LINGER_BYTES:
        with anyio.move_on_after(_LINGER_IDLE_S) as idle:
            message = await receive()
        if idle.cancelled_caught or message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _check_one_host(scope: Scope, host: str) -> None:
    """Refuse a request whose host is ambiguous (RFC 9112 section 3.2: a 400): two Host
    headers (the dict the guard reads keeps the last one, a proxy or a route may read the
    first), or an absolute-form target naming another host than the Host header (the target's
    host is the one HTTP says to use, and the guard checks the Host header)."""
    hosts = sum(1 for name, _ in scope["headers"] if name.lower() == b"host")
    if hosts > 1:
        raise InvalidRequest(
            f"The request carries {hosts} Host headers; send exactly one, naming this server.",
            code="invalid_host",
        )
    authority = _target_authority(scope)
    if authority == "":
        raise InvalidRequest(
            "The request target is neither a path nor an http:// URL. Send the path alone "
            "(like 'GET /v1/models') with a Host header naming this server.",
            code="invalid_host",
        )
    if authority is not None and authority.lower() != host.lower():
        raise InvalidRequest(
            f"The request target names the host {authority[:100]!r}, but the Host header says "
            f"{host[:100]!r}. Send the path alone (like 'GET /v1/models') with a Host header "
            "naming this server.",
            code="invalid_host",
        )


def _target_authority(scope: Scope) -> str | None:
    """The host[:port] of an absolute-form request target (`http://host:port/path`), "" for a
    target that is neither that nor a path, None for an ordinary target (a path, or `*`)."""
    kept = scope.get("extensions", {}).get(REQUEST_TARGET)
    target = kept["target"] if kept else scope.get("raw_path") or b""
    if not target or target.startswith(b"/") or target == b"*":
        return None
    scheme, sep, rest = target.decode("latin-1").partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        return ""
    return rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]


def _too_large(limit: int, inference: bool) -> RequestTooLarge:
    if inference:
        return RequestTooLarge(
            f"The request body is larger than {limit} bytes, the limit set by 'max_body_bytes'. "
            "Send a smaller body, or raise the limit in settings.json or HEARTH_MAX_BODY_BYTES."
        )
    return RequestTooLarge(
        f"The request body is larger than {limit} bytes, the limit for management routes "
        "(only inference routes take larger bodies, up to 'max_body_bytes'). Send a smaller body."
    )


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased; "" when it has none."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.isalpha():
        return ""
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


def _content_length(headers: dict[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[str, str]]:
    for key, value in raw:
        yield key.decode("latin-1").lower(), value.decode("latin-1")
