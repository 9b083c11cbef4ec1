"""Download one file over HTTP(S): resumable, verified, optionally over parallel ranges.

`download_file` writes `<name>.part` (+ `<name>.part.json`, see `state.py`) and renames it to
`<name>` only after the size, the GGUF magic and the sha256 check out. Transient failures (reset or
early-closed connections, timeouts, 5xx, 429) are retried with exponential backoff and jitter, each
retry asking only for the bytes still missing. A cancelled download keeps its `.part` for later.

Two transports share everything but the socket: the fast path (`wire.py` + `pump.py`: stdlib
http.client on worker threads, for http and https) and httpx, kept for callers that pass their own
`client` and whenever a proxy is configured in the environment (only httpx honours proxies).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hearth.downloads import common
from hearth.downloads.common import (
    CancelEvent,
    ChecksumMismatch,
    DownloadCancelled,
    DownloadFailed,
    DownloadResult,
    ProgressCallback,
    Restart,
    Unsatisfiable,
    body_length,
    human,
    unless_cancelled,
)
from hearth.downloads.ranges import RangeFetcher, Response
from hearth.downloads.state import PartState, PartWriter, load_state, save_state
from hearth.downloads.urls import redact_url, validate_filename, validate_url
from hearth.downloads.wire import proxies_configured
from hearth.errors import InsufficientStorage, InvalidModelFile

__all__ = [
    "ChecksumMismatch",
    "DownloadCancelled",
    "DownloadFailed",
    "DownloadResult",
    "download_file",
]

log = logging.getLogger(__name__)

DISK_MARGIN = 16 << 20
MAX_RESTARTS = 2


async def download_file(
    url: str,
    dest_dir: Path | str,
    filename: str,
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    headers: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelEvent | None = None,
    connections: int = 4,
    min_range_size: int = 64 << 20,
    retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 20.0,
    timeout: float = 30.0,
    require_gguf: bool = True,
    client: httpx.AsyncClient | None = None,
) -> DownloadResult:
    """Download `url` to `dest_dir/filename`, resuming any `.part` left by an earlier attempt.

    Ranges run over `connections` parallel requests when the server accepts ranges and the file is
    larger than `min_range_size`. `progress(done, total)` is called at most ~10 times a second and
    once at the end. Raises InvalidRequest (bad URL/name/redirect), InsufficientStorage,
    InvalidModelFile (not GGUF), DownloadFailed/ChecksumMismatch, DownloadCancelled.

    Without `client` (and without a proxy in the environment) the body moves on worker threads
    over plain sockets (`wire.py`, `pump.py`); with one, every request goes through that client.
    """
    url = validate_url(url)
    validate_filename(filename)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    job = _Transfer(
        url=url,
        dest=dest,
        filename=filename,
        expected_size=expected_size,
        expected_sha256=expected_sha256.lower() if expected_sha256 else None,
        headers=dict(headers or {}),
        progress=progress,
        cancel=cancel,
        connections=max(1, connections),
        min_range_size=max(1, min_range_size),
        require_gguf=require_gguf,
        backoff=(retries, backoff, max_backoff),
        timeout=timeout,
    )
    job.check_space(expected_size)
    if client is not None:
        return await unless_cancelled(job.run(client), cancel, filename)
    if not proxies_configured():
        return await unless_cancelled(job.run(None), cancel, filename)
    limits = httpx.Limits(max_connections=job.connections + 2)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as own:
        return await unless_cancelled(job.run(own), cancel, filename)


@dataclass
class _Transfer(RangeFetcher):
    """The state of one `download_file` call (kept in one object to keep the steps small)."""

    url: str
    dest: Path
    filename: str
    expected_size: int | None
    expected_sha256: str | None
    headers: dict[str, str]
    progress: ProgressCallback | None
    cancel: CancelEvent | None
    connections: int
    min_range_size: int
    require_gguf: bool
    backoff: tuple[int, float, float]
    timeout: float
    received: int = 0
    total: int | None = None
    note: str | None = None
    restarted: bool = False
    resumed_from: int = 0
    _last_report: float = 0.0
    _last_save: float = 0.0
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)  # fast-path threads

    @property
    def part(self) -> Path:
        return self.dest / f"{self.filename}.part"

    @property
    def sidecar(self) -> Path:
        return self.dest / f"{self.filename}.part.json"

    @property
    def where(self) -> str:
        return redact_url(self.url)

    def check_space(self, remaining: int | None) -> None:
        """Refuse early when the remaining bytes plus a margin do not fit on the disk."""
        if not remaining:
            return
        free = common.disk_free(self.dest)
        if remaining + DISK_MARGIN > free:
            raise InsufficientStorage(
                f"Not enough disk space in {self.dest} for {self.filename}: it needs "
                f"{human(remaining + DISK_MARGIN)} (including a {human(DISK_MARGIN)} margin) "
                f"but only {human(free)} is free. Free some space or move the models folder."
            )

    def _set_note(self, message: str) -> None:
        self.note = message if self.note is None else f"{self.note} {message}"
        log.warning("%s: %s", self.filename, message)

    def _discard(self) -> None:
        for path in (self.part, self.sidecar):
            path.unlink(missing_ok=True)

    def _load(self) -> PartState | None:
        """Pick up an earlier `.part` when its sidecar says it came from this URL."""
        if not self.part.exists():
            self.sidecar.unlink(missing_ok=True)
            return None
        state = load_state(self.sidecar)
        reason = None
        if state is None:
            reason = "found a .part without a readable state file"
        elif state.url != self.where:
            reason = "the .part was downloaded from a different URL"
        if reason is not None or state is None:
            self._set_note(f"{reason}; started over.")
            self.restarted = True
            self._discard()
            return None
        size = self.part.stat().st_size
        for seg in state.segments:  # never trust bytes the file does not have
            seg.written = max(0, min(seg.written, size - seg.start))
        return state

    async def run(self, client: httpx.AsyncClient | None) -> DownloadResult:
        """Run the download; `client` None selects the fast path (threads, plain sockets)."""
        if client is None:
            self._pool = ThreadPoolExecutor(self.connections + 1, "hearth-download")
        try:
            return await self._run(client)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)  # idle by now: run_blocking waits for its thread

    async def _run(self, client: httpx.AsyncClient | None) -> DownloadResult:
        state = self._load()
        if state is not None:
            self.resumed_from = state.done
            log.info("resuming %s from byte %d", self.filename, self.resumed_from)
        for _ in range(MAX_RESTARTS + 1):
            try:
                return await self._attempt(client, state)
            except Restart as exc:
                self._set_note(f"{exc}; started over from byte 0.")
                self.restarted = True
                state = None
        raise DownloadFailed(
            f"The file at {self.where} changed {MAX_RESTARTS + 1} times during the download; "
            "try again later."
        )

    async def _attempt(
        self, client: httpx.AsyncClient | None, state: PartState | None
    ) -> DownloadResult:
        first: Response | None = None
        try:
            if state is not None and not state.complete:
                seg = next(s for s in state.segments if not s.complete)
                first = await self._open_retrying(client, seg.pos, seg.end, state)
                if first.status_code == 200:
                    self._set_note(
                        "The server sent the whole file instead of the missing part (the file "
                        "changed or the server ignores Range); started over from byte 0."
                    )
                    self.restarted = True
                    state = None
            if state is None:
                if first is None:
                    first = await self._open_retrying(client, None, None, None)
                state = self._plan(first)
                fresh = True
            else:
                fresh = False
                if state.total is not None:
                    self.check_space(state.total - state.done)
            return await self._transfer(client, state, first, fresh)
        finally:
            if first is not None:
                await first.aclose()

    def _plan(self, resp: Response) -> PartState:
        """Lay out a fresh download from a 200 response: check sizes and space, pick ranges."""
        total = body_length(resp)
        if self.expected_size is not None and total is not None and total != self.expected_size:
            raise DownloadFailed(
                f"The server reports {total} bytes for {self.where} but {self.expected_size} were "
                "expected; the URL may point at another file. Check the URL or the expected size."
            )
        self.check_space(total or self.expected_size)
        ranges_ok = resp.headers.get("accept-ranges", "").lower() == "bytes"
        parts = 1
        if ranges_ok and total is not None and total > self.min_range_size:
            parts = min(self.connections, -(-total // self.min_range_size))
        etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
        self._discard()
        return PartState.fresh(self.where, etag, modified, total, parts)

    async def _transfer(
        self, client: httpx.AsyncClient | None, state: PartState, first: Response, fresh: bool
    ) -> DownloadResult:
        self.total = state.total
        self.received = state.done
        writer = PartWriter(self.part, state)
        ok = False
        try:
            if fresh:
                # Sparse preallocation whenever the size is known, one range included (it measured
                # faster than growing the file with every write, together with the read-back
                # hashing in `PartWriter.land`). The sidecar, not the file size, says which bytes
                # are written, and `_finish` checks the count of written bytes.
                writer.truncate(state.total or 0)
                save_state(self.sidecar, state)
            todo = [s for s in state.segments if not s.complete]
            jobs = [
                self._fetch(client, writer, s, first if i == 0 else None)
                for i, s in enumerate(todo)
            ]
            await self._run_all(jobs)
            await writer.flush()
            self.received = state.done
            self._report(force=True)
            digest = await writer.digest()
            size = writer.size()
            await writer.aclose()
            ok = True
            return self._finish(min(size, state.done), digest)
        except (InvalidModelFile, ChecksumMismatch, Restart):
            ok = True
            await writer.aclose()
            self._discard()
            raise
        except Unsatisfiable:
            ok = True
            await writer.aclose()
            self._discard()
            raise DownloadFailed(
                f"The server promised {state.total} bytes for {self.where} but the file is "
                f"shorter (it ends before byte {max(self.received, state.done)}). The server is "
                "misbehaving; try again later or use another mirror."
            ) from None
        finally:
            if not ok:
                await writer.aclose()
                if self.part.exists():
                    save_state(self.sidecar, state)

    def _finish(self, size: int, digest: str) -> DownloadResult:
        """Verify size and hash, then publish the file under its final name."""
        wanted = self.expected_size if self.expected_size is not None else self.total
        if wanted is not None and size != wanted:
            self._discard()
            raise DownloadFailed(
                f"Downloaded {size} bytes for {self.filename} but {wanted} were promised; "
                "the partial file was deleted. Pull again."
            )
        if self.expected_sha256 and digest != self.expected_sha256:
            self._discard()
            raise ChecksumMismatch(
                f"sha256 mismatch for {self.filename}: expected {self.expected_sha256}, got "
                f"{digest}. The partial file was deleted; pull again, and if it repeats the "
                "source is corrupt or the expected hash is wrong.",
                expected=self.expected_sha256,
                actual=digest,
            )
        final = self.dest / self.filename
        os.replace(self.part, final)
        self.sidecar.unlink(missing_ok=True)
        log.info("downloaded %s (%d bytes, sha256 %s)", self.filename, size, digest)
        return DownloadResult(final, size, digest, self.resumed_from, self.restarted, self.note)

    async def _run_all(self, jobs: list[Any]) -> None:
        """Run the range workers; the first failure stops all of them."""
        tasks = [asyncio.ensure_future(j) for j in jobs]
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
