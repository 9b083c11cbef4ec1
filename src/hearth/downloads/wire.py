"""A small blocking HTTP/1.1 GET for the download hot path (stdlib `http.client`, plain or TLS).

Why not httpx for the body: httpcore reads 64 KiB at a time and pushes every chunk through h11,
which copies it several times (socket -> bytes -> h11 buffer -> extracted bytes), and the async
client hops through the event loop per chunk. On a fast link that Python overhead, not the
network, held a pull to about half of curl's speed. `http.client`'s `readinto` fills a buffer we
own straight from `recv_into` (one kernel copy, no allocation), so a worker thread can move the
body with the GIL released during recv, pwrite and sha256 (see `pump.py`). `http.client` also
covers what real servers send: Content-Length, chunked bodies, bodies that run to EOF, and TLS
(SNI + hostname check) with the same trust store as httpx (`httpx.create_ssl_context`).

Redirects are followed here, one hop at a time, under the policy in `redirects.py`. Proxies are
not: `transfer` uses the httpx path whenever
HTTP(S)_PROXY / ALL_PROXY is set (see `proxies_configured`).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.request

import httpx

from hearth.downloads import redirects
from hearth.downloads.common import Transient
from hearth.downloads.request import status_error
from hearth.downloads.urls import redact_url

#: A partly filled buffer is returned after this long, so progress shows on a slow body.
PARTIAL_AFTER = 0.25
USER_AGENT = f"python-httpx/{httpx.__version__}"  # what the httpx path sends: one client to servers
NETWORK_ERRORS = (OSError, http.client.HTTPException)  # OSError covers timeouts, resets and TLS

_tls: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
_tls_lock = threading.Lock()


def proxies_configured() -> bool:
    """True when the environment names an HTTP(S) proxy, which only the httpx path honours."""
    found = urllib.request.getproxies()
    return any(found.get(key) for key in ("http", "https", "all"))


def tls_context() -> ssl.SSLContext:
    """httpx's default context (certifi, or SSL_CERT_FILE/DIR), built once per setting (~10 ms)."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _tls_lock:
        if key not in _tls:
            _tls[key] = httpx.create_ssl_context()
        return _tls[key]


class Stopper:
    """Lets the event loop stop a blocking request in a worker thread, at once.

    Setting a flag is not enough: the thread may sit in `recv` for up to the timeout. Shutting the
    socket down from the loop thread wakes that `recv` (it returns 0 or raises), which is the
    standard way to interrupt a blocking socket call from another thread.
    """

    def __init__(self, *conns: http.client.HTTPConnection) -> None:
        self._lock = threading.Lock()
        self._conns = list(conns)
        self.stopped = False

    def watch(self, conn: http.client.HTTPConnection) -> None:
        """Track a connected socket; refuse (and close it) when already stopped."""
        with self._lock:
            if self.stopped:
                conn.close()
                raise Transient("stopped")
            self._conns.append(conn)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for conn in self._conns:
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)


class WireResponse:
    """A 200/206 response whose body is read with `readinto` (blocking, from a worker thread)."""

    def __init__(
        self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str
    ) -> None:
        self.url = url
        self.status_code = resp.status
        self.reason_phrase = resp.reason
        self.headers = httpx.Headers(resp.getheaders())
        self.conn, self._resp = conn, resp

    def readinto(self, buffer: memoryview) -> int:
        """Read what has arrived into `buffer` (at most one recv); 0 once the body is over.

        `HTTPResponse.readinto` blocks until the whole buffer is full, so a slow body showed 0
        bytes done for minutes and looked stalled. For bodies that are not chunked, one
        `readinto1` returns as soon as bytes arrive (still straight into our buffer); the
        remaining length is kept the way `http.client` keeps it. Chunked bodies (rare for model
        files) go through `read1`, which decodes them and also returns early, at one extra copy.
        """
        resp = self._resp
        if resp.fp is None:
            return 0
        if resp.chunked:
            data = resp.read1(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        if resp.length is not None and len(buffer) > resp.length:
            buffer = buffer[: resp.length]
        # Fill the buffer (each pass through the caller's loop costs far more than a recv), but
        # hand back what has arrived once PARTIAL_AFTER has passed, so a slow body shows progress.
        size, total, deadline = len(buffer), 0, 0.0
        while total < size:
            count = resp.fp.readinto1(buffer[total:])
            if count == 0:
                break
            total += count
            if resp.length is not None:
                resp.length -= count
            if total < size:
                now = time.monotonic()
                if not deadline:
                    deadline = now + PARTIAL_AFTER
                elif now >= deadline:
                    break
        return total

    def close(self) -> None:
        self._resp.close()
        self.conn.close()

    async def aclose(self) -> None:  # the same shape as httpx.Response
        self.close()


def _get(url: httpx.URL, headers: dict[str, str], timeout: float, stop: Stopper) -> WireResponse:
    """Send one GET and read the status line and headers; the body is left for the caller."""
    host = url.raw_host.decode("ascii")
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(host, url.port, timeout=timeout, context=tls_context())
    else:
        conn = http.client.HTTPConnection(host, url.port, timeout=timeout)
    try:
        conn.connect()
        stop.watch(conn)
        conn.putrequest("GET", url.raw_path.decode("ascii"), skip_accept_encoding=True)
        for name, value in headers.items():
            if name.lower() != "host":
                conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    return WireResponse(conn, resp, str(url))


def open_wire(
    url: str,
    headers: dict[str, str],
    timeout: float,
    stop: Stopper,
    allow_private: bool = False,
) -> WireResponse:
    """GET `url` (headers from `request.range_headers`), following redirects by the policy in
    `redirects.py` (the one the httpx transport follows too).

    Runs in a worker thread (so the redirect check may resolve names). Returns a 200/206
    response; raises Transient (network trouble, 5xx, 429), Unsatisfiable (416), DownloadFailed
    or InvalidRequest like `request.open_range`.
    """
    where = redact_url(url)
    current = httpx.URL(url)
    sent = {"User-Agent": USER_AGENT, "Accept": "*/*", **headers}
    for _ in range(redirects.MAX_REDIRECTS + 1):
        try:
            resp = _get(current, sent, timeout, stop)
        except NETWORK_ERRORS as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from None
        where_to = redirects.location(resp.status_code, resp.headers)
        if where_to is None:
            error = status_error(resp.status_code, resp.reason_phrase, resp.headers, where)
            if error is not None:
                resp.close()
                raise error
            return resp
        resp.close()
        hop = redirects.next_hop(url, current, where_to, sent, allow_private=allow_private)
        current, sent = hop.url, hop.headers
    raise redirects.too_many(url)
