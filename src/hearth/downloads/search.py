"""Find models to pull: GGUF repositories on Hugging Face, and names in Ollama's library.

Both functions return plain lists of dicts, ready for a table (`hearth search TEXT [--library]
[--limit N]`) or JSON; neither prints anything. Each row carries `source`: the exact text to give
`hearth pull` (or `POST /v1/models/pull`) for that model.

- `search_hub` asks the Hub's model search (`huggingface_hub.HfApi.list_models`) once, with
  `expand=["downloads", "likes", "siblings"]`: the file names come in the same answer, so the
  available quantizations cost no call per repository. It is a blocking call: run it off the
  event loop in a server. HF_ENDPOINT (read at call time) and HF_TOKEN are honoured.
- `search_library` searches a small catalog shipped with Hearth (`ollama_library.json`), because
  Ollama's registry has no search API. It is a snapshot of popular names: a name missing from it
  can still be pulled.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

from hearth.downloads.common import DownloadFailed
from hearth.downloads.hf import hf_endpoint, quant_of, quant_rank
from hearth.downloads.urls import redact_url
from hearth.errors import HearthError

MAX_LIMIT = 100
CATALOG = "ollama_library.json"


def search_hub(
    text: str, limit: int = 20, endpoint: str | None = None, token: str | None = None
) -> list[dict[str, Any]]:
    """GGUF repositories on the Hub matching `text`, most downloaded first.

    Each row: `id` (OWNER/REPO), `downloads`, `likes`, `quantizations` (e.g. ["Q4_K_M",
    "Q8_0"], smallest first, read from the file names), `vision` (an mmproj file is there) and
    `source` (what to pull: `OWNER/REPO`, or `OWNER/REPO:QUANT` to choose). `endpoint` defaults to
    HF_ENDPOINT, else huggingface.co; `token` to HF_TOKEN or the saved login. `limit` is capped at
    100. Raises DownloadFailed when the Hub cannot be asked (an unreachable Hub only after
    huggingface_hub's own retries, about 25 s).
    """
    from huggingface_hub import HfApi

    base = (endpoint or hf_endpoint()).rstrip("/")
    api = HfApi(endpoint=base, token=token)
    try:
        found = api.list_models(
            search=text.strip() or None,
            filter="gguf",
            sort="downloads",
            limit=max(1, min(limit, MAX_LIMIT)),
            expand=["downloads", "likes", "siblings"],
        )
        return [_hub_row(model) for model in found]
    except HearthError:
        raise
    except Exception as exc:  # huggingface_hub's HTTP errors, httpx's network errors
        raise DownloadFailed(
            f"Could not search the Hugging Face Hub at {redact_url(base)} "
            f"({type(exc).__name__}). Check the network (or HF_ENDPOINT) and try again."
        ) from None


def _hub_row(model: Any) -> dict[str, Any]:
    """One search result as a table row (the Hub's values checked, never trusted for shape)."""
    names = [
        s.rfilename for s in (model.siblings or []) if isinstance(getattr(s, "rfilename", ""), str)
    ]
    ggufs = [PurePosixPath(n).name for n in names if n.lower().endswith(".gguf")]
    models = [n for n in ggufs if not n.lower().startswith("mmproj")]
    quants = sorted({q for q in map(quant_of, models) if q}, key=lambda q: (quant_rank(q), q))
    return {
        "id": str(model.id),
        "downloads": model.downloads if isinstance(model.downloads, int) else None,
        "likes": model.likes if isinstance(model.likes, int) else None,
        "quantizations": quants,
        "vision": len(models) < len(ggufs),
        "source": str(model.id),
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
