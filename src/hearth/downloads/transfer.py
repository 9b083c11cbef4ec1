"""Download one file over HTTP(S): resumable, verified, optionally over parallel ranges.

`download_file` writes `<name>.part` (+ `<name>.part.json`, see `state.py`) and renames it to
`<name>` only after the size, the GGUF magic and the sha256 check out. Transient failures (reset or
early-closed connections, timeouts, 5xx, 429) are retried with exponential backoff and jitter, each
retry asking only for the bytes still missing. A cancelled download keeps its `.part` for later.

Two transports share everything but the socket (`transport.py`, chosen once per download by
`open_transport`): the fast path (`wire.py` + `pump.py`: stdlib http.client on worker threads,
for http and https) and httpx, kept for callers that pass their own `client` and whenever a proxy
is configured in the environment (only httpx honours proxies). The ranges are fetched by
`ranges.RangeFetcher`, built from a `RangeContext`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hearth.core.errors import InsufficientStorage, InvalidModelFile
from hearth.downloads import common
from hearth.downloads.common import (
    STALL_SECONDS,
    BodyTooLarge,
    CancelEvent,
    ChecksumMismatch,
    DownloadCancelled,
    DownloadFailed,
    DownloadResult,
    ProgressCallback,
    Restart,
    Unsatisfiable,
    body_length,
    unless_cancelled,
)
from hearth.downloads.ranges import Progress, RangeContext, RangeFetcher, ranges_ignored
from hearth.downloads.space import LEDGER
from hearth.downloads.state import PartState, PartWriter, load_state, save_state
from hearth.downloads.transport import Reply, Transport, open_transport
from hearth.downloads.urls import redact_url, validate_filename, validate_url
from hearth.models.gguf import read_gguf_header

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
    reserve_bytes: int = 1 << 30,
    max_bytes: int = 512 << 30,
    allow_private: bool = False,
    stall_seconds: float = STALL_SECONDS,
) -> DownloadResult:
    """Download `url` to `dest_dir/filename`, resuming any `.part` left by an earlier attempt.

    Ranges run over `connections` parallel requests when the server accepts ranges and the file is
    larger than `min_range_size`. `progress(done, total)` is called at most ~10 times a second and
    once at the end. Raises InvalidRequest (bad URL/name/redirect), InsufficientStorage,
    InvalidModelFile (not GGUF), DownloadFailed/ChecksumMismatch, DownloadCancelled.

    Without `client` (and without a proxy in the environment) the body moves on worker threads
    over plain sockets (`wire.py`, `pump.py`); with one, every request goes through that client.

    Hostile servers: a known size is claimed in the process-wide disk ledger (`space.py`) so
    concurrent downloads cannot overcommit a disk; a body of unstated size stops at `max_bytes`
    or before free space falls under `reserve_bytes`; a connection that moves less than 64 KiB
    in `stall_seconds` is dropped and retried; a full disk is InsufficientStorage and leaves no
    `.part`; redirects to private addresses need `allow_private` (or a private start URL).
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
        stall_seconds=stall_seconds,
        reserve_bytes=max(0, reserve_bytes),
        max_bytes=max(1, max_bytes),
        allow_private=allow_private,
    )
    return await unless_cancelled(job.run(client), cancel, filename)


@dataclass
class _Transfer:
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
    stall_seconds: float
    reserve_bytes: int
    max_bytes: int
    allow_private: bool
    no_ranges: bool = False  # the server answered a Range with the whole file
    note: str | None = None
    restarted: bool = False
    resumed_from: int = 0
    counts: Progress = field(init=False, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)  # fast-path threads
    _fetcher: RangeFetcher | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.counts = Progress(self.progress)

    @property
    def part(self) -> Path:
        return self.dest / f"{self.filename}.part"

    @property
    def sidecar(self) -> Path:
        return self.dest / f"{self.filename}.part.json"

    @property
    def where(self) -> str:
        return redact_url(self.url)

    @property
    def fetcher(self) -> RangeFetcher:
        assert self._fetcher is not None, "run() builds the fetcher"
        return self._fetcher

    def _range_context(self, transport: Transport) -> RangeContext:
        return RangeContext(
            url=self.url,
            where=self.where,
            dest=self.dest,
            filename=self.filename,
            sidecar=self.sidecar,
            headers=self.headers,
            require_gguf=self.require_gguf,
            backoff=self.backoff,
            stall_seconds=self.stall_seconds,
            reserve_bytes=self.reserve_bytes,
            max_bytes=self.max_bytes,
            transport=transport,
            progress=self.counts,
        )

    def check_space(self, remaining: int | None) -> None:
        """Claim the remaining bytes in the disk ledger (replacing an earlier claim), or refuse.

        The claim counts next to what the other running downloads to the same disk have yet
        to write, so two that fit alone but not together are refused up front.
        """
        if not remaining or remaining < 0:
            return
        counts = self.counts
        LEDGER.release(counts.claim)
        counts.claim = None
        counts.claim = LEDGER.claim(self.dest, self.filename, remaining, DISK_MARGIN)
        counts.claim_from = counts.received

    def _bytes_on_disk(self) -> int:
        """Space an earlier `.part` already takes (allocated blocks: preallocation is sparse)."""
        try:
            return self.part.stat().st_blocks * 512
        except OSError:
            return 0

    def _set_note(self, message: str) -> None:
        self.note = message if self.note is None else f"{self.note} {message}"
        log.warning("%s: %s", self.filename, message)

    def _discard(self) -> None:
        for path in (self.part, self.sidecar):
            path.unlink(missing_ok=True)

    def _load(self) -> PartState | None:
        """Pick up an earlier `.part` when its sidecar says it came from this URL.

        Only plain files count: a `.part` or sidecar that is a symlink (or has other names) may
        have been planted in a shared folder, and is removed, never followed."""
        for path in (self.part, self.sidecar):
            if path.is_symlink() or (path.exists() and not _own_plain_file(path)):
                self._set_note(f"{path.name} was not a plain file; removed it and started over.")
                path.unlink(missing_ok=True)
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
        """Run the download over the transport `open_transport` picks for `client`."""
        # Own threads even for the httpx transport (the GGUF check runs here): never the shared
        # default pool, which a stalled download could otherwise exhaust for everyone.
        self._pool = ThreadPoolExecutor(self.connections + 1, "hearth-download")
        try:
            if self.expected_size is not None:  # here, so that the `finally` releases it
                self.check_space(self.expected_size - self._bytes_on_disk())
            async with open_transport(
                client,
                self._pool,
                connections=self.connections,
                timeout=self.timeout,
                allow_private=self.allow_private,
            ) as transport:
                self._fetcher = RangeFetcher(self._range_context(transport))
                return await self._run()
        except OSError as exc:
            if not common.disk_full(exc):
                raise
            self._discard()
            raise InsufficientStorage(
                f"The disk holding {self.dest} is full: {self.filename} could not be written "
                "and its partial file was deleted. Free some space and pull again."
            ) from None
        finally:
            LEDGER.release(self.counts.claim)
            self.counts.claim = None
            self._pool.shutdown(wait=True)  # idle by now: run_blocking waits for its thread

    async def _run(self) -> DownloadResult:
        state = self._load()
        if state is not None:
            self.resumed_from = state.done
            log.info("resuming %s from byte %d", self.filename, self.resumed_from)
        ignored = False
        for _ in range(MAX_RESTARTS + 1):
            try:
                return await self._attempt(state)
            except Restart as exc:
                ignored = exc.ranges_ignored
                self.no_ranges = self.no_ranges or ignored
                why = " (the server ignores Range)" if ignored else ""
                self._set_note(f"{exc}{why}; started over from byte 0.")
                self.restarted = True
                state = None
        if ignored:
            raise DownloadFailed(
                f"The server at {self.where} cannot resume downloads (it ignores Range) and the "
                f"connection dropped {MAX_RESTARTS + 1} times; try again later or use a mirror."
            )
        raise DownloadFailed(
            f"The file at {self.where} changed {MAX_RESTARTS + 1} times during the download; "
            "try again later."
        )

    async def _attempt(self, state: PartState | None) -> DownloadResult:
        first: Reply | None = None
        try:
            if state is not None and not state.complete:
                seg = next(s for s in state.segments if not s.complete)
                first = await self.fetcher.open_retrying(seg.pos, seg.end, state)
                if first.status_code == 200:
                    self.no_ranges = ranges_ignored(first, state)
                    self._set_note(
                        "The server sent the whole file instead of the missing part (the file "
                        "changed or the server ignores Range); started over from byte 0."
                    )
                    self.restarted = True
                    state = None
            if state is None:
                if first is None:
                    first = await self.fetcher.open_retrying(None, None, None)
                state = self._plan(first)
                fresh = True
            else:
                fresh = False
                if state.total is not None:
                    self.check_space(state.total - state.done)
            return await self._transfer(state, first, fresh)
        finally:
            if first is not None:
                await first.aclose()

    def _plan(self, resp: Reply) -> PartState:
        """Lay out a fresh download from a 200 response: check sizes and space, pick ranges."""
        total = body_length(resp, self.where)
        if self.expected_size is not None and total is not None and total != self.expected_size:
            raise DownloadFailed(
                f"The server reports {total} bytes for {self.where} but {self.expected_size} were "
                "expected; the URL may point at another file. Check the URL or the expected size."
            )
        self.check_space(total or self.expected_size)
        ranges_ok = resp.headers.get("accept-ranges", "").lower() == "bytes"
        parts = 1
        if ranges_ok and not self.no_ranges and total is not None and total > self.min_range_size:
            parts = min(self.connections, -(-total // self.min_range_size))
        etag, modified = resp.headers.get("etag"), resp.headers.get("last-modified")
        self._discard()
        return PartState.fresh(self.where, etag, modified, total, parts)

    async def _transfer(self, state: PartState, first: Reply | None, fresh: bool) -> DownloadResult:
        counts = self.counts
        counts.total = state.total
        counts.received = counts.claim_from = state.done  # the claim covers the bytes from here
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
                self.fetcher.fetch(writer, s, first if i == 0 else None) for i, s in enumerate(todo)
            ]
            await self._run_all(jobs)
            await writer.flush()
            counts.received = state.done
            counts.report(force=True)
            digest = await writer.digest()
            size = writer.size()
            await writer.aclose()
            ok = True
            return await self._finish(min(size, state.done), digest)
        except (InvalidModelFile, ChecksumMismatch, Restart, BodyTooLarge, InsufficientStorage):
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
                f"shorter (it ends before byte {max(counts.received, state.done)}). The server is "
                "misbehaving; try again later or use another mirror."
            ) from None
        finally:
            if not ok:
                await writer.aclose()
                if self.part.exists():
                    save_state(self.sidecar, state)

    async def _finish(self, size: int, digest: str) -> DownloadResult:
        """Verify size, hash and the GGUF header, then publish the file under its final name."""
        wanted = self.expected_size if self.expected_size is not None else self.counts.total
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
        if self.require_gguf:
            assert self._pool is not None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, self._check_gguf)
        final = self.dest / self.filename
        os.replace(self.part, final)
        self.sidecar.unlink(missing_ok=True)
        log.info("downloaded %s (%d bytes, sha256 %s)", self.filename, size, digest)
        return DownloadResult(final, size, digest, self.resumed_from, self.restarted, self.note)

    def _check_gguf(self) -> None:
        """Read the GGUF header of the complete `.part` (bounded), before it gets its name.

        A truncated, empty or zero-filled file must never sit under its final name, where the
        model would be listed `ready`. Later parts of a split GGUF carry no architecture of
        their own, so they get the structural check only (magic, version, counts).
        """
        try:
            if _later_split_part(self.filename):
                _check_split_part(self.part)
            else:
                read_gguf_header(self.part)
        except InvalidModelFile as exc:
            raise InvalidModelFile(
                f"The file downloaded from {self.where} for {self.filename} is not a usable GGUF "
                f"model, so it was deleted and not published. {exc.message}",
                param="url",
            ) from None

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


_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def _later_split_part(filename: str) -> bool:
    """`name-00002-of-00003.gguf` and on: parts after the first of a llama.cpp split."""
    found = _SPLIT.search(filename)
    return found is not None and int(found.group(1)) > 1


def _check_split_part(path: Path) -> None:
    """The fixed start of a GGUF: magic, a known version, counts that fit in the file."""
    with open(path, "rb") as f:
        head = f.read(24)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 24 or head[:4] != b"GGUF":
        raise InvalidModelFile(f"{path.name} is truncated or does not start with a GGUF header.")
    version = int.from_bytes(head[4:8], "little")
    kv_count = int.from_bytes(head[16:24], "little")
    if version not in (2, 3) or kv_count * 13 > size:
        raise InvalidModelFile(f"{path.name} has no valid GGUF header (version {version}).")


def _own_plain_file(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1
