"""The one redirect policy of every download GET, whichever transport sends it.

A redirect is a 301/302/303/307/308 with a Location. Each hop is resolved here (relative, or
absolute without a host, the way httpx and browsers do), refused unless it stays http(s), and
checked by `urls.check_redirect` (a public URL may not lead into loopback, link-local or
private addresses unless `allow_private`). Authorization is dropped when a hop leaves the
origin (an http -> https upgrade of the same host keeps it, as httpx does). At most
`MAX_REDIRECTS` hops; messages quote the URL the user gave, never what the server sent.

`next_hop` may resolve names (blocking: the wire transport calls it on its worker thread);
`next_hop_async` is the same check for the event loop (httpx transport, Hub and registry GETs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from hearth.downloads.common import DownloadFailed
from hearth.downloads.urls import (
    check_redirect,
    check_redirect_async,
    redact_url,
    unusable_redirect,
)

MAX_REDIRECTS = 10
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Hop:
    """Where to go next and the headers to send there."""

    url: httpx.URL
    headers: dict[str, str]


def location(code: int, headers: Any) -> str | None:
    """The Location of a redirect answer, or None when the answer is not a redirect to follow."""
    if code not in REDIRECT_CODES:
        return None
    found: str | None = headers.get("location")
    return found


def next_hop(
    start: str,
    current: httpx.URL,
    where_to: str,
    headers: dict[str, str],
    *,
    allow_private: bool = False,
) -> Hop:
    """The checked next hop from `current` to the Location `where_to` (blocking: may resolve
    names). `start` is the URL the user gave: the private-address rule is judged from it."""
    target = _checked_target(start, current, where_to)
    check_redirect(start, str(target), allow_private=allow_private)
    return Hop(target, _hop_headers(current, target, headers))


async def next_hop_async(
    start: str,
    current: httpx.URL,
    where_to: str,
    headers: dict[str, str],
    *,
    allow_private: bool = False,
) -> Hop:
    """`next_hop` for the event loop (name lookups run on a pool of Hearth's own)."""
    target = _checked_target(start, current, where_to)
    await check_redirect_async(start, str(target), allow_private=allow_private)
    return Hop(target, _hop_headers(current, target, headers))


def too_many(start: str) -> DownloadFailed:
    return DownloadFailed(f"Too many redirects for {redact_url(start)}; check the URL.")


def _checked_target(start: str, current: httpx.URL, where_to: str) -> httpx.URL:
    target = resolve(current, where_to)
    if target is None or target.scheme not in SCHEMES:
        raise unusable_redirect(start)
    return target


def resolve(base: httpx.URL, where_to: str) -> httpx.URL | None:
    """Resolve a Location the way httpx does (relative, or absolute without a host); None for
    one that is no usable URL."""
    try:
        target = httpx.URL(where_to)
        if target.scheme and not target.host:
            if target.scheme not in SCHEMES:
                return None  # javascript:, data:, mailto: ... never a download
            target = target.copy_with(host=base.host)
        if target.is_relative_url:
            target = base.join(target)
    except (httpx.InvalidURL, ValueError, TypeError):
        return None
    return target


def _hop_headers(current: httpx.URL, target: httpx.URL, headers: dict[str, str]) -> dict[str, str]:
    """`headers` without Authorization once the hop leaves the origin (not for an https upgrade)."""
    if same_origin(current, target) or https_upgrade(current, target):
        return dict(headers)
    return {k: v for k, v in headers.items() if k.lower() != "authorization"}


def _port(url: httpx.URL) -> int | None:
    return url.port or {"http": 80, "https": 443}.get(url.scheme)


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return a.scheme == b.scheme and a.host == b.host and _port(a) == _port(b)


def https_upgrade(a: httpx.URL, b: httpx.URL) -> bool:
    """http://host -> https://host keeps credentials (httpx does the same)."""
    return (
        a.host == b.host and a.scheme == "http" and _port(a) == 80 and b.scheme == "https"
    ) and _port(b) == 443
