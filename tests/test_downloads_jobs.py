"""DownloadManager: background jobs, shared pulls, progress snapshots, cancel and resume."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fault_server import FaultServer, gguf_bytes, sha256

from hearth.core.errors import Conflict, NotFound
from hearth.downloads.jobs import DownloadManager, FileSpec, Job, JobSnapshot

SIZE = 1_500_000
FAST = {"backoff": 0.001, "max_backoff": 0.01, "min_range_size": 256 * 1024}


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def specs(server: FaultServer, *names: str, seed: int = 0) -> list[FileSpec]:
    out = []
    for i, name in enumerate(names):
        data = gguf_bytes(SIZE, seed + i)
        url = server.add(f"/{name}", data)
        out.append(FileSpec(url, name, SIZE, sha256(data), {"Authorization": "Bearer hf_hidden"}))
    return out


def test_two_pulls_of_the_same_files_share_one_job(server: FaultServer, tmp_path: Path) -> None:
    files = specs(server, "a.gguf", "mmproj.gguf")
    completed: list[str] = []

    async def on_complete(job: Job) -> None:
        completed.append(job.id)

    async def main() -> tuple[Job, Job, JobSnapshot]:
        manager = DownloadManager(**FAST)
        first = manager.start("m", files, tmp_path, on_complete)
        second = manager.start("m", list(files), tmp_path, on_complete)
        assert manager.list() == [first] and manager.get(first.id) is first
        return first, second, await manager.wait(first.id)

    first, second, snap = asyncio.run(main())
    assert first is second and completed == [first.id]
    assert snap.state == "completed" and snap.error is None
    assert snap.done == snap.total == 2 * SIZE and snap.eta is None
    assert [(f.filename, f.done, f.total, f.state) for f in snap.files] == [
        ("a.gguf", SIZE, SIZE, "completed"),
        ("mmproj.gguf", SIZE, SIZE, "completed"),
    ]
    assert snap.files[0].sha256 == files[0].sha256
    data = snap.to_dict()
    assert data["files"][1]["filename"] == "mmproj.gguf" and "hf_hidden" not in str(data)
    assert snap.started_at is not None and snap.finished_at is not None
    whole = [r for r in server.requests_for("/a.gguf") if r.range is None]
    assert len(whole) == 1  # downloaded once (in parallel ranges), not twice


def test_subscribe_streams_snapshots_until_the_end(server: FaultServer, tmp_path: Path) -> None:
    server.fault("/slow.gguf", trickle=0.002, trickle_chunk=64 * 1024, times=None)
    files = specs(server, "slow.gguf")

    async def main() -> list[JobSnapshot]:
        manager = DownloadManager(connections=1, **FAST)
        job = manager.start("m", files, tmp_path)
        return [snap async for snap in manager.subscribe(job.id)]

    snaps = asyncio.run(main())
    assert snaps[0].state in ("queued", "downloading") and snaps[-1].state == "completed"
    dones = [s.done for s in snaps]
    assert dones == sorted(dones) and dones[-1] == SIZE
    assert any(0 < s.done < SIZE for s in snaps)
    assert all(s.speed >= 0 for s in snaps)


def test_cancel_keeps_the_part_and_the_next_pull_resumes(
    server: FaultServer, tmp_path: Path
) -> None:
    # ~1 s in all: the cancel surely lands mid-transfer even on a loaded machine
    server.fault("/big.gguf", trickle=0.01, trickle_chunk=16 * 1024)
    files = specs(server, "big.gguf")

    async def main() -> tuple[JobSnapshot, JobSnapshot, Job]:
        manager = DownloadManager(connections=1, **FAST)
        job = manager.start("m", files, tmp_path)
        async for snap in manager.subscribe(job.id):
            if snap.done > 100_000 and snap.state == "downloading":
                manager.cancel(job.id)
        cancelled = await job.wait()
        assert (tmp_path / "big.gguf.part").exists()
        again = manager.start("m", files, tmp_path)
        return cancelled, await again.wait(), again

    cancelled, done, again = asyncio.run(main())
    assert cancelled.state == "cancelled" and "cancelled" in (cancelled.error or "")
    assert cancelled.files[0].state == "cancelled"
    assert done.state == "completed" and again.results[0].resumed_from > 100_000
    assert (tmp_path / "big.gguf").read_bytes()[:4] == b"GGUF"
    assert not (tmp_path / "big.gguf.part").exists()


def test_failures_are_reported_on_the_job(server: FaultServer, tmp_path: Path) -> None:
    files = [FileSpec(server.url("/missing.gguf"), "missing.gguf")]

    async def main() -> JobSnapshot:
        manager = DownloadManager(**FAST)
        return await manager.start("m", files, tmp_path).wait()

    snap = asyncio.run(main())
    assert snap.state == "failed" and "404 Not Found" in (snap.error or "")


def test_overlapping_pulls_conflict_and_unknown_jobs_are_not_found(
    server: FaultServer, tmp_path: Path
) -> None:
    server.fault("/a.gguf", trickle=0.002, trickle_chunk=64 * 1024)
    a, b = specs(server, "a.gguf", "b.gguf")

    async def main() -> None:
        manager = DownloadManager(**FAST)
        job = manager.start("m", [a], tmp_path)
        with pytest.raises(Conflict, match=job.id):
            manager.start("m", [a, b], tmp_path)
        with pytest.raises(NotFound):
            manager.get("dl_nope")
        assert manager.active_paths() == {(tmp_path / "a.gguf").resolve()}
        await manager.aclose()
        assert job.state == "cancelled"

    asyncio.run(main())


@pytest.mark.slow
def test_running_jobs_count_the_bytes_they_still_promise(
    server: FaultServer, tmp_path: Path
) -> None:
    server.fault("/p.gguf", trickle=0.01, trickle_chunk=16 * 1024)
    files = specs(server, "p.gguf")

    async def main() -> tuple[list[int], int]:
        manager = DownloadManager(connections=1, **FAST)
        job = manager.start("m", files, tmp_path)
        seen = [manager.promised_bytes()]
        async for snap in manager.subscribe(job.id):
            if 0 < snap.done < SIZE:
                seen.append(manager.promised_bytes())
        return seen, manager.promised_bytes()

    seen, after = asyncio.run(main())
    assert seen[0] == SIZE  # a queued job already holds its whole size
    assert all(0 <= s <= SIZE for s in seen) and min(seen) < SIZE
    assert after == 0
