"""Check what a user asked to download before any byte moves.

Three kinds of source reach Hearth: an http(s) URL to one file, a Hugging Face reference
(`OWNER/REPO[:QUANT]`, optionally prefixed by `hf.co/` or `huggingface.co/`), or a local path.
`classify_source` tells them apart by their text alone (never by what the server's working
directory holds); the validators refuse anything that could write outside the models folder or
fetch from a non-HTTP scheme.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from hearth.core.errors import InvalidRequest

ALLOWED_SCHEMES = ("http", "https")
HF_HOSTS = ("hf.co", "huggingface.co", "www.huggingface.co")
_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_HF_RE = re.compile(
    rf"^(?P<owner>{_NAME_PART})/(?P<repo>{_NAME_PART})(?::(?P<quant>[A-Za-z0-9._-]+))?$"
)


@dataclass(frozen=True)
class FileSpec:
    """One file to download. `headers` may carry a token: it is kept out of repr and to_dict."""

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    headers: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def to_source(self) -> dict[str, object]:
        """The model.json `sources` entry (never includes headers)."""
        out: dict[str, object] = {"filename": self.filename, "url": self.url}
        if self.size is not None:
            out["size"] = self.size
        if self.sha256:
            out["sha256"] = self.sha256
        return out


@dataclass(frozen=True)
class HfRef:
    """A Hugging Face repo plus the quantization the user asked for (None: pick the default)."""

    repo_id: str
    quant: str | None = None
    revision: str = "main"

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.quant}" if self.quant else self.repo_id


def redact_url(url: str) -> str:
    """Drop credentials and the query string (signed URLs carry tokens there) for logs/errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def validate_url(url: str) -> str:
    """Accept only absolute http(s) URLs with a host; anything else could read local files."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("The download URL is empty; pass an http:// or https:// URL.")
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidRequest(f"The download URL is malformed ({exc}); check it.") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        scheme = parts.scheme or "no scheme"
        raise InvalidRequest(
            f"Refusing to download from {redact_url(url)!r} ({scheme}): only http:// and "
            "https:// URLs are supported. Use `hearth models import PATH` for local files.",
            param="url",
        )
    if not parts.hostname:
        raise InvalidRequest(f"The URL {redact_url(url)!r} has no host; check it.", param="url")
    return url


PART_SUFFIXES_BYTES = len(".part.json")  # the longest name Hearth derives from a file's name
NAME_MAX_BYTES = 255  # NAME_MAX on ext4, APFS, NTFS (in UTF-16 units there, near enough)
RESERVED_NAMES = frozenset({"model.json"})
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, bidi/zero-width, ...


def shown_name(name: str, limit: int = 80) -> str:
    """A server- or user-given name made safe to quote: quoted, unprintables escaped, cut short.

    Bidi overrides, escape codes and newlines become visible `\\u202e`-style text, so a name can
    neither reorder nor colour the message it appears in; ordinary letters (é, 模) stay readable.
    """
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in name)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'"


def _filename_problem(name: str) -> str | None:
    """Why `name` cannot be a file in a model folder, or None when it can."""
    if not name or name in (".", ".."):
        return "it is empty"
    if "/" in name or "\\" in name or ".." in name:
        return "it contains '/', '\\' or '..'"
    if name.startswith("."):
        return "it starts with a dot (hidden and reserved files)"
    if name != name.strip():
        return "it starts or ends with white space"
    if any(unicodedata.category(c) in _UNSAFE_CATEGORIES for c in name):
        return "it contains control, bidirectional or invisible characters"
    lowered = name.casefold()
    if lowered in RESERVED_NAMES or lowered.endswith((".part", ".part.json")):
        return "Hearth uses that name itself (model.json, *.part, *.part.json)"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size + PART_SUFFIXES_BYTES > NAME_MAX_BYTES:
        return (
            f"it is {size} bytes long and Hearth's '.part.json' makes it exceed the file "
            f"system's {NAME_MAX_BYTES}-byte limit"
        )
    return None


def validate_filename(name: str) -> str:
    """A file name must be one plain component that Hearth does not use itself.

    It can never escape the model folder, hide, overwrite model.json or a download's state files,
    outgrow the file system's name limit once `.part.json` is added, or disguise itself with
    bidirectional overrides (U+202E) or control characters when shown.
    """
    problem = _filename_problem(name) if isinstance(name, str) else "it is not text"
    if problem:
        raise InvalidRequest(
            f"The file name {shown_name(str(name))} is not a plain file name: {problem}. "
            "Rename it (e.g. 'model-Q4_K_M.gguf'), or download it by a URL with a plain name.",
            param="filename",
        )
    return name


def filename_from_url(url: str) -> str:
    """The last path segment of the URL, percent-decoded and validated."""
    path = urlsplit(url).path
    name = unquote(path.rsplit("/", 1)[-1]) if path else ""
    if not name:
        raise InvalidRequest(
            f"Cannot take a file name from {redact_url(url)!r} (its path ends in '/'); "
            "pass the file name explicitly.",
            param="filename",
        )
    return validate_filename(name)


def parse_hf_ref(text: str) -> HfRef | None:
    """Parse `OWNER/REPO[:QUANT]` with an optional `hf.co/` or `huggingface.co/` (or URL) prefix.

    Returns None for anything that is not a repo reference (a file URL, a local path).
    """
    text = text.strip()
    if "://" in text:
        scheme, rest = text.split("://", 1)
        host, _, path = rest.partition("/")
        if scheme.lower() not in ALLOWED_SCHEMES or host.lower() not in HF_HOSTS:
            return None
        text = path
    else:
        host, _, path = text.partition("/")
        if host.lower() in HF_HOSTS:
            text = path
    text = text.rstrip("/")
    match = _HF_RE.match(text)
    if not match or ".." in text:
        return None
    return HfRef(f"{match['owner']}/{match['repo']}", match["quant"] or None)


MAX_SOURCE_CHARS = 2048  # the longest pull source: URLs past ~2,000 characters break in browsers


def check_source(text: str) -> str:
    """Refuse a pull source no pull could use: empty, over MAX_SOURCE_CHARS, or with controls.

    Checked before anything else looks at it, so a 5,000-character source is a 400 naming the
    limit, never an OS error from whatever later handles it as a name.
    """
    problem = None
    if not text.strip():
        problem = "it is empty"
    elif len(text) > MAX_SOURCE_CHARS:
        problem = f"it is {len(text)} characters long, over the limit of {MAX_SOURCE_CHARS}"
    elif any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        problem = "it holds a control character (a newline, NUL, ...)"
    if problem:
        raise InvalidRequest(
            f"The pull source {shown_name(text)} is not usable: {problem}. Pass an http(s) URL "
            "of a .gguf, a Hugging Face reference (OWNER/REPO[:QUANT]), an Ollama name "
            "(NAME[:TAG]) or a model id.",
            param="source",
        )
    return text


def classify_source(text: str) -> Literal["url", "hf", "path"]:
    """Tell a file URL, a Hugging Face reference and a local path apart, by the text alone.

    Rules, in order: text starting with `/`, `./`, `../`, `~` or containing a backslash, or
    ending in `.gguf` without a scheme, is a path; `hf.co/...`, `huggingface.co/...` with
    exactly OWNER/REPO, or bare `OWNER/REPO[:QUANT]`, is a Hugging Face reference; any other text
    with a scheme is a URL (validated separately); the rest is a path. The file system is never
    asked: a source comes from a client, and what the server's working directory holds is
    neither its business nor a reason to read the disk.
    """
    stripped = text.strip()
    has_scheme = "://" in stripped
    if not has_scheme:
        if stripped.startswith(("/", "./", "../", "~")) or "\\" in stripped:
            return "path"
        if stripped.lower().endswith(".gguf"):
            return "path"
    if parse_hf_ref(stripped) is not None:
        return "hf"
    return "url" if has_scheme else "path"


# ---- origins: where a token may go, where a redirect may lead ----------------------------------

HF_DEFAULT_ORIGINS = (("https", "huggingface.co", 443), ("https", "hf.co", 443))
Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) with the scheme's default port filled in; None for a malformed URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_internal_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, link-local, private, unspecified or otherwise not on the public internet."""
    return not ip.is_global or ip.is_multicast


def _is_local_literal(host: str) -> bool:
    """A host that is certainly this machine or a private network without asking DNS."""
    ip = _literal_ip(host)
    return (
        host == "localhost"
        or host.endswith(".localhost")
        or (ip is not None and _is_internal_ip(ip))
    )


def token_allowed(url: str, endpoint: str | None = None) -> bool:
    """May HF_TOKEN travel to `url`? Only to the Hub's exact origin, never in clear text outside.

    The Hub is https://huggingface.co (or https://hf.co) on port 443, or exactly the scheme, host
    and port of the configured HF_ENDPOINT. Another port on the same host or plain http to it gets
    nothing. Plain http is accepted only for an HF_ENDPOINT on this machine or a literal private
    address (a local mirror or a test Hub); a name is not resolved here, so an http endpoint named
    by a host name never receives the token: use https for a remote mirror.
    """
    target = origin_of(url)
    if target is None:
        return False
    trusted = set(HF_DEFAULT_ORIGINS)
    configured = origin_of(endpoint) if endpoint else None
    if configured is not None:
        trusted.add(configured)
    if target not in trusted:
        return False
    return target[0] == "https" or _is_local_literal(target[1])


def hub_auth_headers(url: str, token: str | None, endpoint: str | None) -> dict[str, str] | None:
    """The Authorization header for `url` when `token_allowed`, else None (the one rule to use)."""
    if not token or not token_allowed(url, endpoint):
        return None
    return {"Authorization": f"Bearer {token}"}


def _host_is_internal(host: str) -> bool:
    """Does `host` (a literal or a name, resolved now) point at a non-public address?"""
    ip = _literal_ip(host)
    if ip is not None:
        return _is_internal_ip(ip)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False  # unresolvable: the connection itself will fail, nothing can be reached
    addresses = (_literal_ip(str(info[4][0])) for info in infos)
    return any(ip is not None and _is_internal_ip(ip) for ip in addresses)


def check_redirect(original_url: str, target_url: str, *, allow_private: bool = False) -> None:
    """Refuse a redirect that leaves http(s), or leaves the public internet for an inner address.

    A public URL must not be able to steer Hearth to loopback, link-local (cloud metadata) or
    private addresses (SSRF). That is allowed only when the URL the user gave was already such an
    address, or when `allow_private_redirects` is set. Names are resolved with getaddrinfo (a
    blocking call: run it off the event loop for names); the connection resolves again, so this
    stops redirects, not DNS rebinding. Messages never quote what the server sent.
    """
    target = origin_of(target_url)
    shown = redact_url(original_url)
    if target is None:
        raise unusable_redirect(original_url)
    if allow_private or not _host_is_internal(target[1]):
        return
    start = origin_of(original_url)
    if start is not None and _host_is_internal(start[1]):
        return
    raise InvalidRequest(
        f"Refused a redirect from {shown} to a loopback, link-local or private address: a "
        "public server may not send Hearth into your network. If you trust it, set "
        "allow_private_redirects, or download from the final address directly.",
        param="url",
        code="unsafe_redirect",
    )


def unusable_redirect(original_url: str) -> InvalidRequest:
    """The refusal of a Location that is no http(s) URL (`javascript:`, `file:`, garbage)."""
    return InvalidRequest(
        f"Refused a redirect from {redact_url(original_url)}: it leads to something other than "
        "an http:// or https:// URL. Use a direct http(s) link to the file.",
        param="url",
        code="unsafe_redirect",
    )


@functools.cache
def _dns_pool() -> ThreadPoolExecutor:
    """Made on the first lookup, not at import."""
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="hearth-redirect-dns")


async def check_redirect_async(
    original_url: str, target_url: str, *, allow_private: bool = False
) -> None:
    """`check_redirect` for the event loop: name lookups run on a small pool of Hearth's own.

    Not asyncio's default executor, which a hung lookup could exhaust for everyone else.
    """
    target = origin_of(target_url)
    if target is None or _literal_ip(target[1]) is not None:
        check_redirect(original_url, target_url, allow_private=allow_private)
        return
    call = functools.partial(check_redirect, original_url, target_url, allow_private=allow_private)
    await asyncio.get_running_loop().run_in_executor(_dns_pool(), call)
