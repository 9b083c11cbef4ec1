"""Pulls: turn "download this model" (a model id, a URL, a Hugging Face reference, an Ollama
name) into jobs.

The model folder and a model.json naming the sources are written *before* any byte arrives, so
the model is listed at once as `downloading`, the drop-in importer leaves the folder alone, and
an interrupted pull is resumed by pulling the same model again. Once every file is complete and
verified, model.json is filled from the GGUF header exactly as an import would fill it. Tokens
(HF_TOKEN) travel only in request headers: never in model.json, never in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hearth.core.errors import (
    Conflict,
    HearthError,
    InsufficientStorage,
    InvalidModelFile,
    InvalidRequest,
)
from hearth.downloads.blobs import reuse_known_blobs
from hearth.downloads.common import DownloadFailed, DownloadResult, disk_free, human
from hearth.downloads.hf import hf_endpoint, hf_token, resolve_hf
from hearth.downloads.janpublish import already_there as already_in_jan
from hearth.downloads.janpublish import publish as publish_to_jan
from hearth.downloads.jobs import DownloadManager, Job
from hearth.downloads.ollama import OllamaPlan, resolve_ollama
from hearth.downloads.urls import (
    FileSpec,
    check_source,
    classify_source,
    filename_from_url,
    hub_auth_headers,
    parse_hf_ref,
    redact_url,
    shown_name,
    validate_url,
)
from hearth.models import janwrite
from hearth.models.gguf import read_gguf_header
from hearth.models.ids import (
    id_from_filename,
    is_valid_id,
    is_valid_jan_id,
    readable_name,
    validate_model_id,
)
from hearth.models.importer import build_model_json, is_projector
from hearth.models.names import OllamaRef, ollama_model_id, parse_ollama_ref
from hearth.models.store import ModelEntry, ModelStore

StatusAnswer = tuple[str, str | None] | None

log = logging.getLogger("hearth")
HUB_DEADLINE = 60.0  # seconds for resolving a Hugging Face reference (listing + checks)
MAX_ID_SUFFIX = 99  # model-2 ... model-99: past that the user should pick an id
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
RESERVE_BYTES = 1 << 30  # Settings.download_reserve_bytes's default: kept free on the disk
OLLAMA_REGISTRY = "https://registry.ollama.ai"  # Settings.ollama_registry's default
MAX_BYTES = 512 << 30  # Settings.max_download_bytes's default


class Pulls:
    """Starts and tracks pulls for one home. Must be used from the server's event loop.

    File work (reading GGUF headers, rewriting model.json) runs on a small executor of its own,
    never on asyncio's default pool: a stalled Hub call elsewhere must not keep a finished
    download in `verifying`, and shutdown must not wait behind someone else's stuck thread.
    """

    def __init__(
        self,
        store: ModelStore,
        manager: DownloadManager | None = None,
        *,
        reserve_bytes: int = RESERVE_BYTES,
        hub_deadline: float = HUB_DEADLINE,
        allow_private: bool = False,
        ollama_registry: str = OLLAMA_REGISTRY,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.store = store
        self.ollama_registry = ollama_registry
        self.max_bytes = max_bytes  # the largest file a manifest may ask for
        self.manager = manager or DownloadManager()
        self.reserve_bytes = reserve_bytes
        self.hub_deadline = hub_deadline
        #: Follow the Hub's redirects into loopback/private addresses (allow_private_redirects).
        self.allow_private = allow_private
        self._last_job: dict[str, Job] = {}
        #: A download's id -> the id asked for in Jan's layout (a Jan data folder, `--id`).
        self._jan_ids: dict[str, str] = {}
        #: Models this Pulls created (staged) itself: only these move into Jan's layout when
        #: complete; a download into an existing model.json (Jan's older tree) stays in place.
        self._staged: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._files = ThreadPoolExecutor(2, thread_name_prefix="hearth-pull-files")

    def close(self) -> None:
        """Stop the file executor (after the manager's jobs have ended)."""
        self._files.shutdown(wait=False, cancel_futures=True)

    # ---- entry points ----------------------------------------------------------------

    async def pull(self, source: str, model_id: str | None = None) -> Job | None:
        """A model id (its sources), a URL, or an HF reference. None: nothing left to fetch."""
        return (await self.pull_model(source, model_id))[1]

    async def pull_model(self, source: str, model_id: str | None = None) -> tuple[str, Job | None]:
        """Like `pull`, also naming the model the pull went to (a new `-2` id when another
        model already has this file name from another source).

        Which source is meant, in order: an `ollama://`, `ollama.com/` or `registry.ollama.ai/`
        prefix is Ollama; a model id of this home is that model; an http(s) URL or
        `[hf.co/]OWNER/REPO[:QUANT]` is what it was before; a bare `NAME[:TAG]` is a name in
        Ollama's library (see `hearth.models.names`); the rest (`./x`, `/x`, `x.gguf`) is a
        local path, refused with a pointer to `hearth models import`. A source of any length
        or content is a clear 400 (`check_source`), and the file system is never asked.
        """
        check_source(source)
        ollama = parse_ollama_ref(source)
        if ollama is not None and ollama.explicit:
            return await self._pull_ollama(ollama, model_id)
        kind = classify_source(source)
        if kind == "path":
            if model_id is None and _looks_like_id(source) and self._exists(source):
                return source, self.download_model(source)
            if ollama is not None:
                return await self._pull_ollama(ollama, model_id)
            raise InvalidRequest(
                f"{shown_name(source)} is not a model id here, an http(s) URL, a Hugging Face "
                "reference (OWNER/REPO[:QUANT]) or an Ollama name (NAME[:TAG], "
                "ollama.com/OWNER/NAME:TAG). To add a file from this machine use "
                "`hearth models import`.",
                param="source",
            )
        if kind == "hf":
            ref = parse_hf_ref(source)
            assert ref is not None
            resolution = await self._resolve(ref)
            specs = resolution.files
            note = resolution.note
        else:
            url = validate_url(source)
            specs = [FileSpec(url, filename_from_url(url), headers=_auth_for(url))]
            note = None
        first = next(s for s in specs if not is_projector(Path(s.filename), None))
        wanted, model_id = await self._jan_wish(model_id)
        if model_id is None and not wanted and (held := await self._in_jan(specs, None)):
            return held, None  # in Jan's layout already, the same bytes
        if model_id is None:
            base = id_from_filename(_split_stem(first.filename))
            validate_model_id(base)
            model_id = self._free_id(base, specs)
        validate_model_id(model_id)
        if wanted:
            self._jan_ids[model_id] = wanted
        return model_id, self._start_new(model_id, specs, note)

    async def _jan_wish(self, model_id: str | None) -> tuple[str | None, str | None]:
        """In a Jan data folder an id asked for (`--id`, "id") is the id in Jan's layout (it
        may nest); the download's own folder then gets a name of its own. Returns (the Jan id
        wished for, the id to download under). Checked in the file pool (it stats folders)."""
        if self.store.jan is None or model_id is None:
            return None, model_id
        if not is_valid_jan_id(model_id):
            validate_model_id(model_id)  # the error, in Hearth's words
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._files, janwrite.check_new_id, self.store.jan.models_dir, model_id
        )
        return model_id, None

    async def _in_jan(self, specs: list[FileSpec], ollama_id: str | None) -> str | None:
        """`janpublish.already_there`, read in the file pool (never on the event loop)."""
        if self.store.jan is None:
            return None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._files, already_in_jan, self.store, specs, ollama_id)

    def download_model(self, model_id: str) -> Job | None:
        """Fetch the missing files of an existing model from its `sources`."""
        entry = self.store.get(model_id)
        if entry.info is None:
            raise InvalidRequest(f"Model '{model_id}' is invalid: {entry.error}")
        specs = []
        for source in entry.info.sources:
            if (entry.folder / source.filename).is_file():
                continue
            if not source.url or urlsplit(source.url).scheme not in ("http", "https"):
                raise InvalidRequest(
                    f"models/{entry.folder.name}: {source.filename} is missing and its source "
                    "has no http(s) url to download it from. Add one to model.json's sources, "
                    "or put the file into the folder.",
                    param="sources",
                )
            specs.append(
                FileSpec(
                    source.url, source.filename, source.size, source.sha256, _auth_for(source.url)
                )
            )
        if not specs:
            if entry.info.sources:
                return None  # every file is present
            raise InvalidRequest(
                f"Model '{model_id}' lists no sources, so there is nothing to download. Add "
                '"sources": [{"filename", "url"}] to its model.json.',
                param="sources",
            )
        return self._start(entry.id, entry.folder, specs)

    async def _pull_ollama(self, ref: OllamaRef, model_id: str | None) -> tuple[str, Job | None]:
        """Resolve the manifest, create the model, link blobs the home already has, then fetch
        the rest. File names come from the name's id (`<id>.gguf`), whatever id the model gets,
        so pulling the same name again finds the same files."""
        base = ollama_model_id(ref)
        plan: OllamaPlan = await resolve_ollama(
            ref, base, registry=self.ollama_registry, max_bytes=self.max_bytes,
            timeout=self.hub_deadline, allow_private=self.allow_private,
        )  # fmt: skip
        specs = plan.files
        wanted, model_id = await self._jan_wish(model_id)
        if model_id is None and not wanted and (held := await self._in_jan(specs, base)):
            return held, None  # in Jan's layout already, the same bytes
        model_id = validate_model_id(model_id or self._free_id(base, specs))
        if wanted:
            self._jan_ids[model_id] = wanted
        created = self._same_source(model_id, specs) is not True
        if created:
            self._create(model_id, specs, None, plan.model_json)
        entry = self.store.get(model_id)
        loop = asyncio.get_running_loop()
        with disk_errors(entry.folder):
            reused = await loop.run_in_executor(
                self._files, reuse_known_blobs, self.store, entry.folder, specs
            )
        job = self.download_model(model_id)
        if job is not None and created:
            self._forget_if_nothing_arrives(model_id, job)
        if job is None and reused:  # nothing to download: fill model.json as a download would
            try:
                with disk_errors(entry.folder):
                    final = await loop.run_in_executor(self._files, self._fill, model_id, [])
                model_id = final or model_id
            except InvalidModelFile:
                for name in reused:
                    (entry.folder / name).unlink(missing_ok=True)
                raise
        return model_id, job

    async def _resolve(self, ref: Any) -> Any:
        """The Hub's answer within a deadline, so a Hub that never answers cannot hang the POST."""
        try:
            return await asyncio.wait_for(
                resolve_hf(ref, allow_private=self.allow_private), self.hub_deadline
            )
        except TimeoutError:
            raise DownloadFailed(
                f"The Hugging Face Hub did not answer about {ref} within "
                f"{self.hub_deadline:.0f} s. Check the network (or HF_ENDPOINT) and pull again."
            ) from None

    # ---- status for GET /v1/models ----------------------------------------------------

    def status(self, entry: ModelEntry) -> StatusAnswer:
        job = self._last_job.get(entry.id)
        if job is None:
            return None
        if not job.finished:
            return "downloading", None
        if job.state == "failed" and entry.status != "ready":
            # Not `downloading` (a `.part` may be left, but nothing runs) nor a plain `missing`:
            # say that the pull failed and why, until the next pull or the files arrive.
            return "failed", f"The last download failed: {job.error} Pull it again to retry."
        return None

    # ---- internals -------------------------------------------------------------------

    def _exists(self, model_id: str) -> bool:
        try:
            self.store.get(model_id)
        except Exception:
            return False
        return True

    def _same_source(self, model_id: str, specs: list[FileSpec]) -> bool | None:
        """None: no model by that id. Else whether it is this pull (same files from the same
        place), so pulling it again resumes rather than trusting whichever bytes came first."""
        folder = self.store.models_dir / model_id
        if not folder.exists() and not self.store.exists(model_id):
            return None
        if not (folder / "model.json").exists():
            return False  # a folder being imported or left over: not ours to write into
        entry = self.store.get(model_id)
        if entry.info is None:
            return False
        have = {s.filename: source_key(s.url) for s in entry.info.sources}
        want = {s.filename: source_key(s.url) for s in specs}
        return have == want and None not in have.values()

    def _free_id(self, base: str, specs: list[FileSpec]) -> str:
        """`base`, or the first of `base-2`, `base-3`... that is free or already this pull."""
        for n in range(1, MAX_ID_SUFFIX + 1):
            candidate = base if n == 1 else f"{base}-{n}"
            if n > 1 and not is_valid_id(candidate):
                break
            if self._same_source(candidate, specs) in (None, True):
                return candidate
        raise Conflict(
            f"Models '{base}' to '{base}-{MAX_ID_SUFFIX}' already exist with other sources. "
            'Pick an id for this one (--id / "id").'
        )

    def _start_new(self, model_id: str, specs: list[FileSpec], note: str | None) -> Job | None:
        if self._same_source(model_id, specs) is True:
            return self.download_model(model_id)
        self._create(model_id, specs, note)
        job = self._start(model_id, self.store.models_dir / model_id, specs)
        self._forget_if_nothing_arrives(model_id, job)
        return job

    def _forget_if_nothing_arrives(self, model_id: str, job: Job) -> None:
        """Remove the model this pull created if the pull fails before any byte arrived (a
        typo in a URL, an offline machine): a `missing` model nobody asked for would stay in
        every list. A pull that got data keeps its folder and `.part` files, to resume."""

        async def watch() -> None:
            snap = await job.wait()
            if snap.state != "failed" or job.bytes_done() > 0:
                return
            folder = self.store.models_dir / model_id
            kept = {"model.json"}
            if any(p.name not in kept and p.stat().st_size > 0 for p in folder.glob("*")):
                return
            with contextlib.suppress(HearthError, OSError):
                self.store.delete(model_id)
                log.info("Removed '%s': its pull failed before any data arrived.", model_id)

        task = asyncio.get_running_loop().create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _create(
        self,
        model_id: str,
        specs: list[FileSpec],
        note: str | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write the new model's model.json naming its sources (Conflict if the id is taken);
        `extra`: more fields (an Ollama pull's parameters and metadata)."""
        if self._same_source(model_id, specs) is False:
            raise Conflict(
                f"A model '{model_id}' already exists {self._describe(model_id)}; this pull "
                f'is {_describe_specs(specs)}. Pick another id (--id / "id"), or remove it '
                f"first (`hearth models rm {model_id}`)."
            )
        projector = next((s for s in specs if is_projector(Path(s.filename), None)), None)
        raw: dict[str, Any] = {
            "id": model_id,
            "object": "model",
            "engine": "llama-cpp",
            "sources": [s.to_source() for s in specs],
        }
        if note:
            raw["description"] = note
        for key, value in (extra or {}).items():
            raw[key] = value
        if projector is not None:
            engine = {**raw.get("engine_parameters", {}), "mmproj": projector.filename}
            raw["engine_parameters"] = engine
        with disk_errors(self.store.models_dir):
            self.store.create(model_id, raw)
        self._staged.add(model_id)

    def _describe(self, model_id: str) -> str:
        """Where an existing model's files come from, for a Conflict message."""
        try:
            entry = self.store.get(model_id)
        except HearthError:
            return "(its folder cannot be read)"
        sources = entry.info.sources if entry.info else []
        urls = [redact_url(s.url) for s in sources if s.url]
        if not urls:
            return "with files of its own and no download source"
        return f"with {sources[0].filename} from {urls[0]}" + (
            f" (and {len(urls) - 1} more)" if len(urls) > 1 else ""
        )

    def _start(self, model_id: str, folder: Path, specs: list[FileSpec]) -> Job:
        _check_space(folder, specs, self.reserve_bytes + self.manager.promised_bytes())

        async def complete(job: Job) -> None:
            loop = asyncio.get_running_loop()
            try:
                with disk_errors(folder):
                    final = await loop.run_in_executor(
                        self._files, self._fill, model_id, job.results
                    )
            except InvalidModelFile:
                # Never leave a file that does not read as GGUF under its final name: the
                # model would be listed `ready`. The job fails with the reason instead.
                for result in job.results:
                    result.path.unlink(missing_ok=True)
                raise
            if final is not None:  # moved into Jan's layout under Jan's id
                job.model_id = final
                self._last_job[final] = job

        job = self.manager.start(model_id, specs, folder, on_complete=complete)
        self._last_job[model_id] = job
        return job

    def _fill(self, model_id: str, done: list[DownloadResult]) -> str | None:
        """Record what we now know (sizes, hashes, the GGUF header) in model.json; in a Jan
        data folder, then move the model into Jan's layout and return its Jan id."""
        entry = self.store.get(model_id)
        assert entry.info is not None
        # a context size the pull asked for (Ollama's num_ctx), not the GGUF's one filled in below
        asked_ctx = entry.info.engine_parameters.get("ctx_len")
        results = {r.path.name: r for r in done}
        sources = []
        for source in entry.info.sources:
            item = source.model_dump(exclude_none=True)
            result = results.get(source.filename)
            if result is not None:
                item["size"], item["sha256"] = result.size, result.sha256
            sources.append(item)
        files = [
            entry.folder / s.filename
            for s in entry.info.sources
            if not is_projector(Path(s.filename), None) and (entry.folder / s.filename).is_file()
        ]
        infos = [read_gguf_header(p) for p in files[:1]] + [None] * (len(files) - 1)
        if not files:
            self.store.update(model_id, {"sources": sources})
            return None
        display = readable_name(_split_stem(files[0].name)) if files else entry.info.name
        generated = build_model_json(model_id, files, infos, display_name=display)
        engine = dict(generated["engine_parameters"])
        engine.update(entry.info.engine_parameters)  # never override what is already set
        model_params = dict(generated["model_parameters"])
        model_params.update(entry.info.model_parameters)
        raw = entry.raw or {}
        patch: dict[str, Any] = {
            key: generated[key] for key in ("format", "name", "created") if key not in raw
        }
        patch.update(
            engine_parameters=engine,
            model_parameters=model_params,
            metadata={**generated["metadata"], **entry.info.metadata},
            sources=sources,
        )
        self.store.update(model_id, patch)
        if self.store.jan is not None and model_id in self._staged:  # moves into Jan's layout
            jan_id = self._jan_ids.pop(model_id, None)
            extra = {"ctx_size": asked_ctx} if asked_ctx else None  # Jan's name for ctx_len
            final = publish_to_jan(self.store, model_id, jan_id=jan_id, extra=extra)
            self._staged.discard(model_id)
            return final
        return None


def source_key(url: str | None) -> str | None:
    """What makes two URLs the same source: no query or credentials, and a Hub `resolve/<rev>/`
    revision left out (a repo's new commit is still that repo's file)."""
    if not url:
        return None
    return re.sub(r"/resolve/[^/]+/", "/resolve/*/", redact_url(url))


def _describe_specs(specs: list[FileSpec]) -> str:
    more = f" (and {len(specs) - 1} more)" if len(specs) > 1 else ""
    return f"{specs[0].filename} from {redact_url(specs[0].url)}{more}"


@contextmanager
def disk_errors(where: Path) -> Iterator[None]:
    """A full disk (ENOSPC, EDQUOT) while writing is a clear 507 naming the disk, never a 500."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise InsufficientStorage(
            f"The disk holding {where} is full ({exc.strerror}). Free some space (e.g. `hearth "
            "models rm` a model you no longer use) and pull again."
        ) from None


def _check_space(folder: Path, specs: list[FileSpec], reserve: int) -> None:
    """Refuse before starting when the sizes are known and the whole pull cannot fit, next to
    the bytes that running downloads have already been promised (`reserve` counts them)."""
    if any(s.size is None for s in specs):
        return  # checked per file once the server says how big it is
    needed = 0
    for spec in specs:
        part = folder / f"{spec.filename}.part"
        have = _allocated(part)
        needed += max(0, (spec.size or 0) - have)
    free = disk_free(folder)
    if needed + reserve > free:
        raise InsufficientStorage(
            f"Not enough disk space for this download: it needs {human(needed)} more (plus "
            f"{human(reserve)} kept free or promised to running downloads) and {folder.parent} "
            f"has {human(free)} free. Free some "
            "space (e.g. `hearth models rm` a model you no longer use) and pull again."
        )


def _allocated(path: Path) -> int:
    """Bytes a `.part` really holds on disk: it is preallocated sparse, so its size is no guide."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    return min(stat.st_size, getattr(stat, "st_blocks", stat.st_size // 512 + 1) * 512)


def _auth_for(url: str) -> dict[str, str] | None:
    """HF_TOKEN goes only to the Hub's exact origin (scheme, host and port; `hub_auth_headers`
    is the one rule), so another port on its host or plain http to it gets nothing."""
    return hub_auth_headers(url, hf_token(), hf_endpoint())


def _split_stem(filename: str) -> str:
    """'name-00001-of-00003.gguf' -> 'name.gguf' so a split model gets the model's name."""
    return re.sub(r"-\d{5}-of-\d{5}(\.gguf)$", r"\1", filename, flags=re.IGNORECASE)


def _looks_like_id(text: str) -> bool:
    return is_valid_id(text)
