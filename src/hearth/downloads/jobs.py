"""Download jobs: one per pull, running in the background, observable and cancellable.

The server and CLI start a job with `DownloadManager.start(...)`, poll `get`/`list`, stream
`subscribe(...)` snapshots (SSE), and `cancel` it. Jobs live in memory only: after a restart the
`.part` files on disk are what tells a pull is unfinished, and the next pull resumes them.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hearth.core.errors import Conflict, HearthError, InsufficientStorage, NotFound
from hearth.downloads.transfer import DownloadCancelled, DownloadResult, download_file
from hearth.downloads.urls import FileSpec, redact_url, validate_filename, validate_url

__all__ = ["DownloadManager", "FileProgress", "FileSpec", "Job", "JobSnapshot", "JobState"]

log = logging.getLogger(__name__)

JobState = Literal["queued", "downloading", "verifying", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
SPEED_TAU = 3.0  # seconds: the smoothing window of the speed estimate
KEEP_FINISHED = 100
STOP_GRACE = 5.0  # seconds aclose() waits for jobs to wind down before leaving them behind
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class FileProgress:
    filename: str
    url: str  # redacted: no query string, no credentials
    done: int
    total: int | None
    state: JobState
    sha256: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable view of a job at one moment (what GET and the SSE stream send)."""

    id: str
    model_id: str
    state: JobState
    files: tuple[FileProgress, ...]
    done: int
    total: int | None
    speed: float
    eta: float | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["files"] = [asdict(f) for f in self.files]
        return data


OnComplete = Callable[["Job"], Awaitable[None]]


class Job:
    """A running or finished pull of one model's files (mutated only on the event loop)."""

    def __init__(self, model_id: str, specs: list[FileSpec], dest_dir: Path) -> None:
        self.id = f"dl_{uuid.uuid4().hex[:12]}"
        self.model_id = model_id
        self.specs = specs
        self.dest_dir = dest_dir
        self.paths = frozenset((dest_dir / s.filename).resolve() for s in specs)
        self.state: JobState = "queued"
        self.error: str | None = None
        self.created_at = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.results: list[DownloadResult] = []
        self.cancel_event = asyncio.Event()
        self._done = [0] * len(specs)
        self._total: list[int | None] = [s.size for s in specs]
        self._states: list[JobState] = ["queued"] * len(specs)
        self._notes: list[str | None] = [None] * len(specs)
        self._speed = 0.0
        self._last: tuple[float, int] | None = None
        self._subscribers: set[asyncio.Queue[JobSnapshot]] = set()
        self._finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def snapshot(self) -> JobSnapshot:
        totals = self._total
        total = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
        done = sum(self._done)
        eta = None
        if total is not None and self._speed > 0 and not self.finished:
            eta = max(0.0, (total - done) / self._speed)
        files = tuple(
            FileProgress(
                s.filename,
                redact_url(s.url),
                self._done[i],
                self._total[i],
                self._states[i],
                self.results[i].sha256 if i < len(self.results) else None,
                self._notes[i],
            )
            for i, s in enumerate(self.specs)
        )
        speed = 0.0 if self.finished else self._speed
        return JobSnapshot(
            self.id, self.model_id, self.state, files, done, total, speed, eta, self.error,
            self.created_at, self.started_at, self.finished_at,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return self.snapshot().to_dict()

    def remaining(self) -> int:
        """Bytes still to come for the files whose size is known."""
        return sum(max(0, t - d) for t, d in zip(self._total, self._done, strict=True) if t)

    def bytes_done(self) -> int:
        """Bytes of the job's files on disk so far (resumed ones included)."""
        return sum(self._done)

    async def wait(self) -> JobSnapshot:
        """Wait until the job reaches a terminal state; returns its last snapshot."""
        await self._finished.wait()
        return self.snapshot()

    def _progress(self, index: int, done: int, total: int | None) -> None:
        """Per-file callback: update counters, the smoothed speed, and notify subscribers."""
        now = time.monotonic()
        self._done[index] = done
        if total is not None:
            self._total[index] = total
        overall = sum(self._done)
        if self._last is None:  # first report may include resumed bytes: not a speed sample
            self._last = (now, overall)
        else:
            dt, db = now - self._last[0], overall - self._last[1]
            if dt > 0:
                weight = 1 - math.exp(-dt / SPEED_TAU)
                self._speed += weight * (max(0, db) / dt - self._speed)
                self._last = (now, overall)
        if total is not None and done >= total:
            self._states[index] = self.state = "verifying"
        elif self.state == "verifying":
            self.state = "downloading"
        self._publish()

    def _set(self, state: JobState, index: int | None = None) -> None:
        """Set the job's state, or with `index` one file's state (the job then downloads)."""
        if index is None:
            self.state = state
        else:
            self._states[index] = state
            self.state = "downloading"
        self._publish()

    def _publish(self) -> None:
        snap = self.snapshot()
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(snap)  # latest wins: a slow subscriber never blocks the download


class DownloadManager:
    """Runs jobs on the current event loop; `download_options` go to `download_file`."""

    def __init__(self, *, max_concurrent: int = 2, **download_options: Any) -> None:
        self._jobs: dict[str, Job] = {}
        self._slots = asyncio.Semaphore(max_concurrent)
        self._options = download_options

    def start(
        self,
        model_id: str,
        files: list[FileSpec],
        dest_dir: Path,
        on_complete: OnComplete | None = None,
    ) -> Job:
        """Start (or join) the pull of `files` into `dest_dir`; must run inside the event loop.

        A pull of exactly the same destination files as an active job returns that job; a pull
        that overlaps only part of one is refused (Conflict), since two writers on one `.part`
        would corrupt it.
        """
        if not files:
            raise NotFound(f"Nothing to download for {model_id}: the file list is empty.")
        for spec in files:
            validate_url(spec.url)
            validate_filename(spec.filename)
        job = Job(model_id, list(files), Path(dest_dir))
        for other in self._jobs.values():
            if other.finished or not (other.paths & job.paths):
                continue
            if other.paths == job.paths:
                return other
            raise Conflict(
                f"Some of these files are already being downloaded by job {other.id} "
                f"({other.model_id}); wait for it or cancel it first."
            )
        self._jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job, on_complete))
        self._forget_old()
        return job

    def list(self) -> list[Job]:
        return list(self._jobs.values())

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"No download job {job_id!r}; list jobs to see the current ones.")
        return job

    def cancel(self, job_id: str) -> Job:
        """Ask the job to stop; its `.part` files stay so that the next pull resumes."""
        job = self.get(job_id)
        job.cancel_event.set()
        return job

    def promised_bytes(self) -> int:
        """Bytes that unfinished jobs still expect to write (known sizes only): a new pull must
        leave room for them, since preallocated `.part` files are sparse and take it later."""
        return sum(j.remaining() for j in self._jobs.values() if not j.finished)

    def active_paths(self) -> set[Path]:
        """Final paths that an unfinished job is writing (for a model's 'downloading' status)."""
        return {p for j in self._jobs.values() if not j.finished for p in j.paths}

    async def subscribe(self, job_id: str) -> AsyncIterator[JobSnapshot]:
        """Yield the current snapshot, then each change, ending after the terminal one."""
        job = self.get(job_id)
        queue: asyncio.Queue[JobSnapshot] = asyncio.Queue(maxsize=1)
        job._subscribers.add(queue)
        try:
            snap = job.snapshot()
            yield snap
            while snap.state not in TERMINAL:
                snap = await queue.get()
                yield snap
        finally:
            job._subscribers.discard(queue)

    async def wait(self, job_id: str) -> JobSnapshot:
        return await self.get(job_id).wait()

    async def aclose(self, grace: float = STOP_GRACE) -> None:
        """Cancel every unfinished job and wait for them (keeps their `.part` files).

        Bounded: a job stuck in a blocking call gets its task cancelled after `grace` seconds,
        so shutting the server down (SIGTERM) never waits on a server that does not answer.
        """
        tasks = []
        for job in self._jobs.values():
            if not job.finished and job.task is not None:
                job.cancel_event.set()
                tasks.append(job.task)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    async def _run(self, job: Job, on_complete: OnComplete | None) -> None:
        try:
            async with self._slots:
                job.started_at = time.time()
                for index, spec in enumerate(job.specs):
                    if job.cancel_event.is_set():
                        raise DownloadCancelled(f"Download of {job.model_id} cancelled.")
                    job._set("downloading", index)
                    result = await download_file(
                        spec.url,
                        job.dest_dir,
                        spec.filename,
                        expected_size=spec.size,
                        expected_sha256=spec.sha256,
                        headers=spec.headers,
                        cancel=job.cancel_event,
                        progress=functools.partial(job._progress, index),
                        **self._options,
                    )
                    job.results.append(result)
                    job._notes[index] = result.note
                    job._done[index] = job._total[index] = result.size
                    job._set("completed", index)
                job._set("verifying")
                if on_complete is not None:
                    await on_complete(job)
            job.finished_at = time.time()
            job._set("completed")
        except DownloadCancelled as exc:
            self._end(job, "cancelled", exc.message)
        except InsufficientStorage as exc:
            self._discard_current(job)
            self._end(job, "failed", exc.message)
        except HearthError as exc:
            self._end(job, "failed", exc.message)
        except OSError as exc:
            self._end_os_error(job, exc)
        except asyncio.CancelledError:
            self._end(job, "cancelled", "The download was stopped (server shutting down).")
            raise
        except Exception as exc:  # a bug or an unexpected OS error: report, never crash the loop
            log.exception("download job %s failed", job.id)
            self._end(job, "failed", f"Unexpected error: {type(exc).__name__}: {exc}")
        finally:
            job._finished.set()

    def _end_os_error(self, job: Job, exc: OSError) -> None:
        """A full disk is final and frees what it took; other OS errors are reported plainly."""
        if exc.errno in DISK_FULL:
            self._discard_current(job)
            message = (
                f"The disk holding {job.dest_dir} is full ({exc.strerror}); the partial file was "
                "deleted. Free some space and pull again."
            )
        else:
            log.exception("download job %s failed", job.id)
            message = f"Could not write the download in {job.dest_dir}: {exc.strerror or exc}."
        self._end(job, "failed", message)

    @staticmethod
    def _discard_current(job: Job) -> None:
        """Delete the `.part` (and its state file) of the file that was being written: after a
        full disk, keeping it would only keep the disk full and the model `downloading`."""
        index = len(job.results)
        if index >= len(job.specs):
            return
        part = job.dest_dir / f"{job.specs[index].filename}.part"
        state = part.with_name(part.name + ".json")
        for path in (part, state, state.with_name(state.name + ".tmp")):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                log.warning("could not delete %s", path)

    def _end(self, job: Job, state: JobState, message: str) -> None:
        job.error = message
        job.finished_at = time.time()
        for i, s in enumerate(job._states):
            if s not in TERMINAL:
                job._states[i] = state
        job._set(state)
