"""Check what a user asked to download before any byte moves.

Three kinds of source reach Hearth: an http(s) URL to one file, a Hugging Face reference
(`OWNER/REPO[:QUANT]`, optionally prefixed by `hf.co/` or `huggingface.co/`), or a local path.
`classify_source` tells them apart; the validators refuse anything that could write outside the
models folder or fetch from a non-HTTP scheme.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from hearth.errors import InvalidRequest

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


def validate_filename(name: str) -> str:
    """A file name must be one plain path component, so it can never escape the model folder."""
    bad = (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or ".." in name
        or name.startswith(".")
        or name != name.strip()
        or any(ord(c) < 32 for c in name)
        or len(name.encode("utf-8", "surrogatepass")) > 255
    )
    if bad:
        raise InvalidRequest(
            f"The file name {name!r} is not a plain file name (no '/', '\\', '..', NUL, leading "
            "dot or control characters, at most 255 bytes); rename it, e.g. 'model-Q4_K_M.gguf'.",
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


def classify_source(text: str) -> Literal["url", "hf", "path"]:
    """Tell a file URL, a Hugging Face reference and a local path apart.

    Rules, in order: an existing path, or text starting with `/`, `./`, `../`, `~` or containing a
    backslash, or ending in `.gguf` without a scheme, is a path; `hf.co/...`, `huggingface.co/...`
    with exactly OWNER/REPO, or bare `OWNER/REPO[:QUANT]`, is a Hugging Face reference; any other
    text with a scheme is a URL (validated separately); the rest is a path.
    """
    stripped = text.strip()
    has_scheme = "://" in stripped
    if not has_scheme:
        if stripped.startswith(("/", "./", "../", "~")) or "\\" in stripped:
            return "path"
        if stripped.lower().endswith(".gguf") or Path(stripped).exists():
            return "path"
    if parse_hf_ref(stripped) is not None:
        return "hf"
    return "url" if has_scheme else "path"
