"""Find models to pull: GGUF repositories on Hugging Face, and names in Ollama's library.

Both functions return plain lists of dicts, ready for a table (`hearth search TEXT [--library]
[--limit N]`) or JSON; neither prints anything. Each row carries `source`: the exact text to give
`hearth pull` (or `POST /v1/models/pull`) for that model.

- `search_hub` asks the Hub's model search (`GET /api/models`, as `HfApi.list_models` does)
  once, with `expand=downloads,likes,siblings`: the file names come in the same answer, so the
  available quantizations cost no call per repository. It asks with httpx itself, not through
  huggingface_hub, whose client retries a refused connection or an unknown name five times with
  backoff (about 25 s of "Retrying in 8s" lines before the error): here an unreachable Hub is
  one clear error at once, a silent one an error within SEARCH_TIMEOUT, and the body is capped.
  It is a blocking call: run it off the event loop in a server. HF_ENDPOINT (read at call time)
  and HF_TOKEN are honoured; the token goes only to the Hub's own origin.
- `search_library` searches a small catalog shipped with Hearth (`ollama_library.json`), because
  Ollama's registry has no search API. It is a snapshot of popular names: a name missing from it
  can still be pulled.
"""

from __future__ import annotations

import functools
import json
import socket
from importlib import resources
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from hearth.downloads.common import DownloadFailed
from hearth.downloads.hf import hf_endpoint, hf_token, quant_of, quant_rank
from hearth.downloads.urls import hub_auth_headers, redact_url

MAX_LIMIT = 100
SEARCH_TIMEOUT = 30.0  # seconds for the whole search; connecting gets SEARCH_CONNECT_TIMEOUT
SEARCH_CONNECT_TIMEOUT = 10.0
MAX_SEARCH_BYTES = 32 * 1024 * 1024
CATALOG = "ollama_library.json"


def search_hub(
    text: str, limit: int = 20, endpoint: str | None = None, token: str | None = None
) -> list[dict[str, Any]]:
    """GGUF repositories on the Hub matching `text`, most downloaded first.

    Each row: `id` (OWNER/REPO), `downloads`, `likes`, `quantizations` (e.g. ["Q4_K_M",
    "Q8_0"], smallest first, read from the file names), `vision` (an mmproj file is there) and
    `source` (what to pull: `OWNER/REPO`, or `OWNER/REPO:QUANT` to choose). `endpoint` defaults to
    HF_ENDPOINT, else huggingface.co; `token` to HF_TOKEN or the saved login (sent only to the
    Hub's own origin, as for pulls). `limit` is capped at 100. Raises DownloadFailed at once when
    the Hub cannot be reached (a name that does not resolve, a refused connection: no retries),
    and within SEARCH_TIMEOUT seconds when it does not answer.
    """
    base = (endpoint or hf_endpoint()).rstrip("/")
    url = f"{base}/api/models"
    params = [
        ("filter", "gguf"),
        ("sort", "downloads"),
        ("limit", str(max(1, min(limit, MAX_LIMIT)))),
    ]
    params += [("expand", field) for field in ("downloads", "likes", "siblings")]
    if text.strip():
        params.insert(0, ("search", text.strip()))
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    headers.update(hub_auth_headers(url, token if token is not None else hf_token(), base) or {})
    body = _get_capped(url, params, headers, base)
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):
        found = None
    if not isinstance(found, list):
        raise DownloadFailed(
            f"Could not search the Hugging Face Hub at {redact_url(base)}: its answer is not a "
            "list of models. Check HF_ENDPOINT."
        )
    return [row for row in map(_hub_row, found) if row is not None][:MAX_LIMIT]


def _get_capped(
    url: str, params: list[tuple[str, str]], headers: dict[str, str], base: str
) -> bytes:
    """The body of one GET (no redirects followed, none retried), at most MAX_SEARCH_BYTES."""
    where = redact_url(base)
    limits = httpx.Timeout(SEARCH_TIMEOUT, connect=SEARCH_CONNECT_TIMEOUT)
    query = httpx.QueryParams(tuple(params))
    try:
        with (
            httpx.Client(timeout=limits, follow_redirects=False) as client,
            client.stream("GET", url, params=query, headers=headers) as resp,
        ):
            if resp.status_code != 200:
                raise DownloadFailed(
                    f"Could not search the Hugging Face Hub at {where}: it answered HTTP "
                    f"{resp.status_code}. Check HF_ENDPOINT, or try again later."
                )
            body = bytearray()
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_SEARCH_BYTES:
                    raise DownloadFailed(
                        f"Could not search the Hugging Face Hub at {where}: it sent more than "
                        f"{MAX_SEARCH_BYTES >> 20} MiB for one search. Check HF_ENDPOINT."
                    )
            return bytes(body)
    except httpx.TimeoutException:
        raise DownloadFailed(
            f"Could not search the Hugging Face Hub at {where}: no answer within "
            f"{SEARCH_TIMEOUT:g} s. Check the network (or HF_ENDPOINT) and try again."
        ) from None
    except httpx.HTTPError as exc:
        raise DownloadFailed(
            f"Could not search the Hugging Face Hub at {where}: {_why(exc, base)}. "
            "Check the network (or HF_ENDPOINT) and try again."
        ) from None


def _why(exc: httpx.HTTPError, base: str) -> str:
    """What went wrong, in words (the OS's reason; nothing the server sent)."""
    cause: BaseException | None = exc
    for _ in range(8):  # httpx's error wraps httpcore's, which wraps the OS's
        if isinstance(cause, socket.gaierror):
            return f"the name {urlsplit(base).hostname or base!r} does not resolve (no network?)"
        if isinstance(cause, ConnectionRefusedError):
            return "the connection was refused"
        cause = cause.__cause__ or cause.__context__ if cause is not None else None
    return f"{type(exc).__name__} ({str(exc)[:200] or 'no detail'})"


def _hub_row(model: Any) -> dict[str, Any] | None:
    """One search result as a table row (the Hub's values checked, never trusted for shape)."""
    if not isinstance(model, dict) or not isinstance(model.get("id"), str):
        return None
    siblings = model.get("siblings")
    names = [
        s["rfilename"]
        for s in (siblings if isinstance(siblings, list) else [])
        if isinstance(s, dict) and isinstance(s.get("rfilename"), str)
    ]
    ggufs = [PurePosixPath(n).name for n in names if n.lower().endswith(".gguf")]
    models = [n for n in ggufs if not n.lower().startswith("mmproj")]
    quants = sorted({q for q in map(quant_of, models) if q}, key=lambda q: (quant_rank(q), q))
    downloads, likes = model.get("downloads"), model.get("likes")
    return {
        "id": model["id"],
        "downloads": downloads
        if isinstance(downloads, int) and not isinstance(downloads, bool)
        else None,
        "likes": likes if isinstance(likes, int) and not isinstance(likes, bool) else None,
        "quantizations": quants,
        "vision": len(models) < len(ggufs),
        "source": model["id"],
    }


@functools.cache
def _catalog() -> tuple[dict[str, Any], ...]:
    text = resources.files("hearth.downloads").joinpath(CATALOG).read_text(encoding="utf-8")
    return tuple(json.loads(text)["models"])


def search_library(text: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """Names in Hearth's catalog of Ollama's library matching `text` (case-insensitive).

    Each row: `name` (pull it as is, e.g. `hearth pull qwen2.5`), `sizes` (its size tags, e.g.
    ["0.5b", "1.5b"]: pull one as `qwen2.5:0.5b`), `description` (one line) and `source` (the
    name itself, which pulls the library's `latest` tag). Order: the exact name, then
    names starting with `text`, names containing it, descriptions containing it; within each,
    the catalog's own order (popular first). Empty `text` lists the whole catalog.
    """
    needle = text.strip().lower()
    ranked: list[tuple[int, int, dict[str, Any]]] = []
    for index, item in enumerate(_catalog()):
        name, description = item["name"], item["description"]
        if not needle or name == needle:
            rank = 0
        elif name.startswith(needle):
            rank = 1
        elif needle in name:
            rank = 2
        elif needle in description.lower():
            rank = 3
        else:
            continue
        ranked.append((rank, index, item))
    ranked.sort(key=lambda row: row[:2])
    rows = [
        {
            "name": item["name"],
            "sizes": list(item["sizes"]),
            "description": item["description"],
            "source": item["name"],
        }
        for _, _, item in ranked
    ]
    return rows if limit is None else rows[: max(0, limit)]
