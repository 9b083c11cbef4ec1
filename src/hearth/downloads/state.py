"""The on-disk side of a download: byte ranges, the `.part.json` sidecar and the ordered writer.

A download writes `<name>.part` and keeps `<name>.part.json` next to it. The sidecar records the
source (URL without its query, ETag, Last-Modified, total size) and, for each range, how many bytes
were handed to the OS. It may lag behind the `.part` (it is saved every second) but never runs ahead
of it, so a resume re-fetches at most a second's worth of bytes and never trusts missing ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIDECAR_VERSION = 1
READ_BACK_CHUNK = 1 << 20


@dataclass
class Segment:
    """One byte range [start, end) of the file; `end` is None while the total size is unknown."""

    start: int
    end: int | None
    written: int = 0

    @property
    def pos(self) -> int:
        return self.start + self.written

    @property
    def complete(self) -> bool:
        return self.end is not None and self.pos >= self.end


@dataclass
class PartState:
    """What the sidecar stores: enough to resume with Range + If-Range and trust the bytes."""

    url: str
    etag: str | None
    last_modified: str | None
    total: int | None
    segments: list[Segment] = field(default_factory=list)

    @classmethod
    def fresh(
        cls, url: str, etag: str | None, last_modified: str | None, total: int | None, parts: int
    ) -> PartState:
        """Split [0, total) into `parts` equal ranges (one open-ended range if total is unknown)."""
        if total is None or parts <= 1:
            return cls(url, etag, last_modified, total, [Segment(0, total)])
        step = -(-total // parts)
        bounds = [(s, min(s + step, total)) for s in range(0, total, step)]
        return cls(url, etag, last_modified, total, [Segment(s, e) for s, e in bounds])

    @property
    def done(self) -> int:
        return sum(s.written for s in self.segments)

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.segments)

    def prefix(self) -> int:
        """Length of the contiguous run of written bytes from offset 0."""
        end = 0
        for seg in self.segments:
            if seg.start > end:
                break
            end = max(end, seg.pos)
            if not seg.complete:
                break
        return end

    def validator(self) -> str | None:
        """The If-Range value: a strong ETag, else Last-Modified (weak ETags are not allowed)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SIDECAR_VERSION,
            "url": self.url,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "total": self.total,
            "segments": [[s.start, s.end, s.written] for s in self.segments],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartState:
        if data.get("version") != SIDECAR_VERSION:
            raise ValueError("unknown sidecar version")
        segs = [
            Segment(int(a), None if b is None else int(b), int(w)) for a, b, w in data["segments"]
        ]
        total = data.get("total")
        return cls(data["url"], data.get("etag"), data.get("last_modified"), total, segs)


def save_state(path: Path, state: PartState) -> None:
    """Write the sidecar atomically (temp file + rename) so a crash never leaves half a JSON."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.to_json()), encoding="utf-8")
    os.replace(tmp, path)


def load_state(path: Path) -> PartState | None:
    """Read a sidecar; anything unreadable counts as no state (the caller starts over)."""
    try:
        return PartState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class PartWriter:
    """Writes ranges into the `.part` with pwrite and hashes the whole file once, in order.

    Writes run on one background thread and hashing on another, so the event loop keeps reading
    the network while bytes are copied to the page cache and hashed at the same time (pwrite and
    hashlib release the GIL). Each thread handles its batches in submission order, and a batch is
    hashed only after its own write has landed, so the two stay ordered without locks.

    The hasher only moves forward through the file. A batch written exactly where the hasher
    stands is hashed from memory - the usual single-connection case, so no second pass over the
    file. Bytes written elsewhere (other parallel ranges, or bytes already on disk from an earlier
    attempt) are read back once, when the contiguous written prefix reaches them. Every byte is
    therefore hashed exactly once and in order, whatever the mix of ranges and resumes.
    """

    def __init__(self, path: Path, state: PartState, *, max_pending: int = 16) -> None:
        self.state = state
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.hashed = 0
        self._sha = hashlib.sha256()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="hearth-download-write")
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="hearth-download-hash")
        self._pending: deque[asyncio.Future[None]] = deque()
        self._max_pending = max_pending
        self._closed = False

    def truncate(self, size: int) -> None:
        """Set the file length (sparse preallocation for parallel ranges, or 0 to start over)."""
        os.ftruncate(self.fd, size)

    async def write(self, seg: Segment, offset: int, chunks: list[bytes]) -> None:
        """Queue one batch; waits only when too many batches are in flight (back-pressure)."""
        wrote = self._io.submit(self._write, seg, offset, chunks)
        fut = asyncio.wrap_future(self._hasher.submit(self._hash, wrote, offset, chunks))
        self._pending.append(fut)
        while self._pending and (len(self._pending) > self._max_pending or self._pending[0].done()):
            await self._pending.popleft()

    async def flush(self) -> None:
        """Wait for every queued batch; re-raises the first write error."""
        while self._pending:
            await self._pending.popleft()

    async def digest(self) -> str:
        """Flush, hash whatever the hasher has not reached yet, and return the hex sha256."""
        await self.flush()
        await asyncio.wrap_future(self._hasher.submit(self._catch_up, None))
        return self._sha.hexdigest()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    async def aclose(self) -> None:
        """Let queued writes land (their errors no longer matter), then release the file."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.flush()
        self._io.shutdown(wait=True)
        self._hasher.shutdown(wait=True)
        os.close(self.fd)

    def _write(self, seg: Segment, offset: int, chunks: list[bytes]) -> None:
        """Write thread: land the batch, then record it as written."""
        written = 0
        views = [memoryview(c) for c in chunks]
        while views:
            n = os.pwritev(self.fd, views, offset + written)
            written += n
            while views and n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            if views and n:
                views[0] = views[0][n:]
        seg.written = offset + written - seg.start

    def _hash(self, wrote: Future[None], offset: int, chunks: list[bytes]) -> None:
        """Hash thread: after the batch lands, hash up to it, then the batch itself from memory."""
        wrote.result()
        self._catch_up(offset)
        if offset == self.hashed:
            for chunk in chunks:
                self._sha.update(chunk)
                self.hashed += len(chunk)
        self._catch_up(None)

    def _catch_up(self, limit: int | None) -> None:
        target = self.state.prefix()
        if limit is not None:
            target = min(target, limit)
        while self.hashed < target:
            data = os.pread(self.fd, min(READ_BACK_CHUNK, target - self.hashed), self.hashed)
            if not data:
                raise OSError(f"the .part file is shorter than recorded (at byte {self.hashed})")
            self._sha.update(data)
            self.hashed += len(data)
