"""Turn a Hugging Face reference (`OWNER/REPO[:QUANT]`) into the files to download.

The repo listing comes from the Hub API (`hub.list_repo`, bounded in time and size), which gives
each file's size and LFS sha256. We pin the resolve URLs to the listed commit so a resumed pull
fetches the same bytes even if the repo moves on.

Quantization choice: QUANT_ORDER lists the common llama.cpp quantizations from smallest/lowest
quality to largest. The requested one (default Q4_K_M) is matched case-insensitively; when no quant
was named and the default is missing, the nearest available entry by position in QUANT_ORDER wins,
ties going to the smaller one (it is more likely to fit in memory). Unknown tags (e.g. Q4_K_XL)
sort just after their known family (Q4_K). An explicitly requested quant that is missing is an
error listing what the repo has.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from hearth.core.errors import InvalidRequest, NotFound
from hearth.downloads.common import DownloadFailed
from hearth.downloads.hub import HUB_TIMEOUT, MAX_LISTING_BYTES, list_repo
from hearth.downloads.urls import (
    FileSpec,
    HfRef,
    hub_auth_headers,
    parse_hf_ref,
    shown_name,
    validate_filename,
)

DEFAULT_QUANT = "Q4_K_M"
QUANT_ORDER: tuple[str, ...] = (
    "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S", "Q2_K",
    "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "Q3_K_S", "Q3_K", "Q3_K_M", "Q3_K_L", "IQ4_XS",
    "IQ4_NL", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K", "Q4_K_M", "MXFP4", "Q5_0", "Q5_1", "Q5_K_S",
    "Q5_K", "Q5_K_M", "Q6_K", "Q8_0", "BF16", "F16", "F32",
)  # fmt: skip
MMPROJ_PREFERENCE = ("F16", "BF16", "Q8_0", "F32")
_QUANT_RE = re.compile(
    r"(?<![a-z0-9])(i?q\d_(?:k(?:_[a-z]+)?|\d|[a-z]+)|tq\d_\d|mxfp4|bf16|f16|f32)(?![a-z0-9])",
    re.IGNORECASE,
)
_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class HfResolution:
    """The chosen files of a repo: model parts in order, then the mmproj if there is one."""

    repo_id: str
    revision: str
    quant: str | None
    files: list[FileSpec]
    note: str | None = None


def quant_of(filename: str) -> str | None:
    """The quantization tag in a file name, upper-cased (`model.q4_k_m.gguf` -> `Q4_K_M`)."""
    found = _QUANT_RE.findall(PurePosixPath(filename).name)
    return found[-1].upper() if found else None


def quant_rank(quant: str) -> float:
    """Position in QUANT_ORDER; unknown tags sit just after their longest known prefix."""
    if quant in QUANT_ORDER:
        return float(QUANT_ORDER.index(quant))
    best = ""
    for known in QUANT_ORDER:
        if quant.startswith(known) and len(known) > len(best):
            best = known
    return QUANT_ORDER.index(best) + 0.5 if best else float(len(QUANT_ORDER))


def _is_mmproj(path: str) -> bool:
    return PurePosixPath(path).name.lower().startswith("mmproj")


def _split_index(path: str) -> int:
    match = _SPLIT_RE.search(path)
    return int(match.group(1)) if match else 0


def pick_files(
    repo_id: str, paths: list[str], requested: str | None
) -> tuple[str | None, list[str], str | None, str | None]:
    """Choose (quant, model paths in part order, mmproj path or None, note) from a listing."""
    ggufs = [p for p in paths if p.lower().endswith(".gguf")]
    models = [p for p in ggufs if not _is_mmproj(p)]
    if not models:
        raise NotFound(
            f"The Hugging Face repo {repo_id} has no .gguf files; Hearth runs GGUF models. "
            "Look for a '-GGUF' version of the model."
        )
    groups: dict[str | None, list[str]] = {}
    for path in models:
        groups.setdefault(quant_of(path), []).append(path)
    known = sorted((q for q in groups if q), key=quant_rank)
    note = None
    if requested:
        want = requested.upper()
        chosen = want if want in groups else None
        if chosen is None:  # a custom tag: match it anywhere in the name
            hits = [p for p in models if want.lower() in p.lower()]
            if hits:
                groups[want] = hits
                chosen = want
        if chosen is None:
            available = listed(known) or "none recognised"
            raise NotFound(
                f"The quantization {requested!r} is not in {repo_id}; available: {available}. "
                f"Pull one of them, e.g. `{repo_id}:{known[0] if known else 'Q4_K_M'}`."
            )
    elif DEFAULT_QUANT in groups:
        chosen = DEFAULT_QUANT
    elif known:
        target = quant_rank(DEFAULT_QUANT)
        chosen = min(known, key=lambda q: (abs(quant_rank(q) - target), quant_rank(q)))
        note = f"{DEFAULT_QUANT} is not in {repo_id}; picked the closest, {chosen}."
    else:
        chosen = None
        if len(models) > 1 and len({_SPLIT_RE.sub("", p) for p in models}) > 1:
            raise InvalidRequest(
                f"{repo_id} has several GGUF files and no recognisable quantization tags: "
                f"{listed(models)}. Download one by URL instead."
            )
    files = sorted(groups[chosen], key=lambda p: (_SPLIT_RE.sub("", p), _split_index(p)))
    _check_parts(repo_id, files)
    mmprojs = [p for p in ggufs if _is_mmproj(p)]
    mmproj = None
    if mmprojs:

        def score(path: str) -> tuple[int, str]:
            tag = quant_of(path)
            pref = MMPROJ_PREFERENCE.index(tag) if tag in MMPROJ_PREFERENCE else 99
            return pref, path

        mmproj = min(mmprojs, key=score)
    return chosen, files, mmproj, note


def listed(names: list[str], limit: int = 8) -> str:
    """Names from a listing for a message: escaped, at most `limit`, then how many more.

    A repo may list 100k files with hostile names; the message stays short and inert.
    """
    plain = (
        n if n.isascii() and n.isprintable() and len(n) <= 80 else shown_name(n) for n in names
    )
    shown = ", ".join(itertools.islice(plain, limit))
    more = len(names) - limit
    return f"{shown} and {more:,} more" if more > 0 else shown


def _check_parts(repo_id: str, files: list[str]) -> None:
    """A split model needs every part; more than one unsplit file means an ambiguous pick."""
    stems = {_SPLIT_RE.sub("", p) for p in files}
    if len(stems) > 1:
        raise InvalidRequest(
            f"{repo_id} has several files for this quantization: {listed(files)}. "
            "Download the one you want by URL instead."
        )
    match = _SPLIT_RE.search(files[0])
    if match:
        count = int(match.group(2))
        if sorted(_split_index(p) for p in files) != list(range(1, count + 1)):
            raise NotFound(f"{repo_id} is missing parts of the split model {shown_name(files[0])}.")


def hf_endpoint() -> str:
    """HF_ENDPOINT read at call time (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hf_token() -> str | None:
    """HF_TOKEN, else the token saved by `hf auth login`."""
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


async def resolve_hf(
    ref: HfRef | str,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    timeout: float = HUB_TIMEOUT,
    max_listing_bytes: int = MAX_LISTING_BYTES,
    allow_private: bool = False,
) -> HfResolution:
    """Resolve a reference into FileSpecs with pinned resolve URLs, sizes, sha256 and headers.

    The Hub call is bounded (`hub.list_repo`: `timeout` seconds in all, `max_listing_bytes`), and
    the token goes only where `token_allowed` says: the Hub's exact origin.
    """
    if isinstance(ref, str):
        parsed = parse_hf_ref(ref)
        if parsed is None:
            raise InvalidRequest(
                f"{shown_name(ref)} is not a Hugging Face reference; use OWNER/REPO or "
                "OWNER/REPO:QUANT."
            )
        ref = parsed
    base = (endpoint or hf_endpoint()).rstrip("/")
    secret = token if token is not None else hf_token()
    commit, listing = await list_repo(
        ref.repo_id, ref.revision, base, secret,
        timeout=timeout, max_bytes=max_listing_bytes, allow_private=allow_private,
    )  # fmt: skip
    quant, models, mmproj, note = pick_files(ref.repo_id, list(listing), ref.quant)
    specs: list[FileSpec] = []
    for path in [*models, *([mmproj] if mmproj else [])]:
        size, sha = listing[path]
        name = validate_filename(_checked_path(ref.repo_id, path).name)
        url = f"{base}/{ref.repo_id}/resolve/{commit}/{quote(path)}"
        specs.append(FileSpec(url, name, size, sha, hub_auth_headers(url, secret, base)))
    if len({s.filename for s in specs}) != len(specs):
        raise InvalidRequest(f"{ref.repo_id} has two chosen files with the same name.")
    return HfResolution(ref.repo_id, commit, quant, specs, note)


def _checked_path(repo_id: str, path: str) -> PurePosixPath:
    """A repo path made only of plain names, so its resolve URL cannot climb out of the repo."""
    parts = path.split("/")
    if any(not part or part in (".", "..") or "\\" in part for part in parts):
        raise DownloadFailed(
            f"The Hub lists a file of {repo_id} with an unsafe path ({shown_name(path)}); "
            "download the file you want by URL instead."
        )
    return PurePosixPath(path)
