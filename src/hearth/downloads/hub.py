"""List a Hugging Face repo's files through the Hub API, with every answer bounded.

`huggingface_hub.HfApi.model_info` cannot be bounded (no overall deadline, the whole body read into
memory, a blocking call that needs a thread), so Hearth asks the same route itself:
`GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true`, asynchronously with httpx. A Hub that
never answers fails within `timeout` seconds (connect, each read and the whole call), the body is
streamed and refused past `max_bytes` before any parsing, and the JSON is checked field by field,
so a hostile or broken Hub gives a clear DownloadFailed instead of a hang, a RecursionError or a
KeyError. Nothing the server sent is quoted in an error.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote

import httpx

from hearth.core.errors import Forbidden, NotFound
from hearth.downloads import redirects
from hearth.downloads.common import DownloadFailed
from hearth.downloads.urls import hub_auth_headers, redact_url

HUB_TIMEOUT = 30.0  # seconds for the whole listing call
HUB_CONNECT_TIMEOUT = 10.0
MAX_LISTING_BYTES = 32 * 1024 * 1024
MAX_HUB_REDIRECTS = 5
_COMMIT_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # a git sha1 (or sha256) in hex
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

Listing = dict[str, tuple[int | None, str | None]]  # path -> (size, sha256)


async def list_repo(
    repo_id: str,
    revision: str,
    endpoint: str,
    token: str | None,
    *,
    timeout: float = HUB_TIMEOUT,
    max_bytes: int = MAX_LISTING_BYTES,
    allow_private: bool = False,
) -> tuple[str, Listing]:
    """The commit sha and {path: (size, sha256)} of a repo's files, or a clear error in time."""
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}?blobs=true"
    limits = httpx.Timeout(timeout, connect=min(HUB_CONNECT_TIMEOUT, timeout))
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(timeout=limits, follow_redirects=False) as client:
                body = await _get_json_body(client, url, repo_id, revision, token, endpoint,
                                            max_bytes, allow_private)  # fmt: skip
    except TimeoutError:
        raise DownloadFailed(
            f"The Hub at {redact_url(endpoint)} did not answer for {repo_id} within "
            f"{timeout:g} s. Check the network (or HF_ENDPOINT) and try again."
        ) from None
    except httpx.InvalidURL:  # httpx builds a redirect's next hop inside send()
        raise DownloadFailed(
            f"The Hub at {redact_url(endpoint)} redirected {repo_id}'s file list to an invalid "
            "URL. Check HF_ENDPOINT."
        ) from None
    except httpx.HTTPError as exc:
        raise DownloadFailed(
            f"Could not list {repo_id} on {redact_url(endpoint)}: {type(exc).__name__}. "
            "Check the network (or HF_ENDPOINT) and try again."
        ) from None
    return parse_listing(body, repo_id)


async def _get_json_body(
    client: httpx.AsyncClient,
    url: str,
    repo_id: str,
    revision: str,
    token: str | None,
    endpoint: str,
    max_bytes: int,
    allow_private: bool,
) -> bytes:
    """Follow the Hub's own redirects (a renamed repo) by `redirects.py`; read the body."""
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    headers.update(hub_auth_headers(url, token, endpoint) or {})
    current = httpx.URL(url)
    for _ in range(MAX_HUB_REDIRECTS + 1):
        resp = await client.send(client.build_request("GET", current, headers=headers), stream=True)
        try:
            where_to = redirects.location(resp.status_code, resp.headers)
            if where_to is not None:  # Authorization is dropped when the hop leaves the origin
                hop = await redirects.next_hop_async(
                    url, current, where_to, headers, allow_private=allow_private
                )
                current, headers = hop.url, hop.headers
                continue
            _check_hub_status(resp, repo_id, revision)
            return await _read_capped(resp, max_bytes, repo_id)
        finally:
            await resp.aclose()
    raise DownloadFailed(f"The Hub redirected too often listing {repo_id}; check HF_ENDPOINT.")


def _check_hub_status(resp: httpx.Response, repo_id: str, revision: str) -> None:
    """Map the Hub's answer to Hearth's errors, as huggingface_hub does (X-Error-Code first)."""
    code = resp.status_code
    if code == 200:
        return
    kind = resp.headers.get("x-error-code", "")
    if kind == "GatedRepo" or (code == 403 and not kind):
        raise Forbidden(f"{repo_id} is gated: accept its terms on huggingface.co and set HF_TOKEN.")
    if kind == "RevisionNotFound":
        raise NotFound(f"The revision {revision!r} does not exist in {repo_id}.")
    if kind == "RepoNotFound" or code in (401, 404):
        raise NotFound(
            f"The Hugging Face repo {repo_id} was not found (or it is private: set HF_TOKEN). "
            "Check the OWNER/REPO spelling."
        )
    raise DownloadFailed(
        f"The Hub answered HTTP {code} when listing {repo_id}. Try again later, or check "
        "HF_ENDPOINT."
    )


async def _read_capped(resp: httpx.Response, max_bytes: int, repo_id: str) -> bytes:
    """The body, refused as soon as it passes `max_bytes` (a stated Content-Length first)."""
    stated = resp.headers.get("content-length", "")
    if stated.isdigit() and int(stated) > max_bytes:
        raise _too_big(repo_id, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _too_big(repo_id, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(repo_id: str, max_bytes: int) -> DownloadFailed:
    return DownloadFailed(
        f"The Hub's file list for {repo_id} is larger than {max_bytes // (1024 * 1024)} MiB, "
        "which no model repo needs; check HF_ENDPOINT, or download the file by URL."
    )


def _bad(repo_id: str, what: str) -> DownloadFailed:
    return DownloadFailed(
        f"The Hub's answer for {repo_id} is malformed ({what}). Check HF_ENDPOINT, or download "
        "the file by URL instead."
    )


def parse_listing(body: bytes, repo_id: str) -> tuple[str, Listing]:
    """Check the listing's shape: a hex commit `sha`, an `id`, and well-formed `siblings`."""
    try:
        info = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _bad(repo_id, "not JSON, or nested too deeply") from None
    if not isinstance(info, dict):
        raise _bad(repo_id, "not a JSON object")
    if not isinstance(info.get("id"), str):
        raise _bad(repo_id, "no 'id'")
    sha = info.get("sha")
    if not isinstance(sha, str) or not _COMMIT_RE.fullmatch(sha):
        raise _bad(repo_id, "its commit 'sha' is missing or not a hexadecimal commit id")
    siblings = info.get("siblings")
    if not isinstance(siblings, list):
        raise _bad(repo_id, "no 'siblings' file list")
    files: Listing = {}
    for index, sib in enumerate(siblings):
        path, size, sha256 = _parse_sibling(sib)
        if path is None:
            raise _bad(repo_id, f"entry {index} of 'siblings' is not a file with a valid size")
        files[path] = (size, sha256)
    return sha, files


def _parse_sibling(sib: Any) -> tuple[str | None, int | None, str | None]:
    """(path, size, sha256) of one listed file; path None when the entry is malformed."""
    if not isinstance(sib, dict) or not isinstance(sib.get("rfilename"), str):
        return None, None, None
    lfs = sib.get("lfs")
    if lfs is not None:
        if not isinstance(lfs, dict) or not _is_size(lfs.get("size")):
            return None, None, None
        sha256 = lfs.get("sha256")
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            return None, None, None
        return sib["rfilename"], lfs["size"], sha256
    size = sib.get("size")
    if size is not None and not _is_size(size):
        return None, None, None
    return sib["rfilename"], size, None


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
