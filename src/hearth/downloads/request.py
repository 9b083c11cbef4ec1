"""One HTTP GET of a byte range over httpx: checked redirects and status classification.

This is the httpx transport (used when the caller passes a client or a proxy is configured);
`wire.py` is the fast one and shares the headers, the status rules below and the redirect policy
(`redirects.py`).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Protocol

import httpx

from hearth.downloads import redirects
from hearth.downloads.common import (
    DownloadFailed,
    Restart,
    Transient,
    Unsatisfiable,
    content_range,
)
from hearth.downloads.state import PartState
from hearth.downloads.urls import redact_url, unusable_redirect

MAX_RETRY_AFTER = 300.0  # seconds; a larger Retry-After would hold a download slot
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Reply(Protocol):
    """What the checks need from a response, httpx's or `wire.WireResponse`."""

    @property
    def headers(self) -> Any: ...  # case-insensitive `.get`


def range_headers(
    extra_headers: dict[str, str], start: int | None, end: int | None, state: PartState | None
) -> dict[str, str]:
    """Request headers for bytes [start, end): Range, and If-Range so a changed file answers 200."""
    headers = {"Accept-Encoding": "identity", **extra_headers}
    if start is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        validator = state.validator() if state is not None else None
        if validator:
            headers["If-Range"] = validator
    return headers


async def open_range(
    client: httpx.AsyncClient,
    url: str,
    extra_headers: dict[str, str],
    start: int | None,
    end: int | None,
    state: PartState | None,
    *,
    allow_private: bool = False,
) -> httpx.Response:
    """GET with redirects followed by `redirects` (the policy the wire transport follows too);
    returns a 200/206 stream."""
    headers = range_headers(extra_headers, start, end, state)
    current = httpx.URL(url)
    for _ in range(redirects.MAX_REDIRECTS + 1):
        request = client.build_request("GET", current, headers=headers)
        try:
            resp = await client.send(request, stream=True, follow_redirects=False)
        except (httpx.TransportError, httpx.DecodingError, httpx.InvalidURL) as exc:
            raise _send_error(exc, url) from None
        where_to = redirects.location(resp.status_code, resp.headers)
        if where_to is None:
            return await check_status(resp, redact_url(url))
        await resp.aclose()
        hop = await redirects.next_hop_async(
            url, current, where_to, headers, allow_private=allow_private
        )
        current, headers = hop.url, hop.headers
    raise redirects.too_many(url)


def _send_error(exc: Exception, url: str) -> Exception:
    """What a failed send means. httpx builds its own next hop inside send() even when it does
    not follow it, and fails there on a Location it cannot use (`javascript:...` is InvalidURL,
    an unparseable one a RemoteProtocolError): those are refused by the redirect policy, as the
    wire transport refuses them, not retried as network trouble."""
    if isinstance(exc, httpx.InvalidURL) or (
        isinstance(exc, httpx.RemoteProtocolError)
        and str(exc).startswith("Invalid URL in location header")
    ):
        return unusable_redirect(url)
    return Transient(f"{type(exc).__name__}: {exc}")


async def check_status(resp: httpx.Response, where: str) -> httpx.Response:
    """Pass 200/206 through; classify the rest as retryable, restart, or a final error."""
    error = status_error(resp.status_code, resp.reason_phrase, resp.headers, where)
    if error is None:
        return resp
    await resp.aclose()
    raise error


def status_error(code: int, reason: str, headers: Any, where: str) -> Exception | None:
    """None for 200/206, else the exception to raise: Transient, Unsatisfiable or final.

    `reason` (the server's own phrase) is ignored on purpose: it is server bytes, which could carry
    markup or escape codes into a terminal. Messages use the standard phrase for the code.
    """
    if code in (200, 206):
        return None
    if code == 416:
        return Unsatisfiable()
    status = f"{code} {standard_phrase(code)}".rstrip()
    if code in RETRY_STATUSES or code >= 500:
        retry_after = headers.get("retry-after", "")
        wait = min(float(retry_after), MAX_RETRY_AFTER) if retry_after.isdigit() else None
        return Transient(f"HTTP {status}", wait)
    hint = "check the URL"
    if code in (401, 403):
        hint = "the file may need a token or accepted terms: set HF_TOKEN or check access"
    return DownloadFailed(f"{status} for URL {where}; {hint}.")


def standard_phrase(code: int) -> str:
    """RFC 9110's phrase for a status code ('' for codes it does not name)."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def check_same_file(resp: Reply, pos: int, state: PartState) -> None:
    """A 206 must continue exactly where we are, in the same file (total and ETag)."""
    span = content_range(resp.headers.get("content-range"))
    etag = resp.headers.get("etag")
    if span is None or span[0] != pos:
        raise Restart("The server answered a different range than asked")
    if state.total is not None and span[2] is not None and span[2] != state.total:
        raise Restart(f"The file size changed from {state.total} to {span[2]}")
    if etag and state.etag and etag != state.etag:
        raise Restart("The file changed on the server (new ETag)")
