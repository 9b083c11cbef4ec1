"""A record of every live engine on disk, so the next Hearth can stop what a killed one left.

Why: Hearth stops each engine's whole process group when it unloads a model or exits. Killed
with SIGKILL it can do nothing; our worker and a user's `llama-server` then get SIGTERM from
the kernel (PR_SET_PDEATHSIG), but only the direct child does: anything a user's binary
started itself (helpers, a wrapper script's real server) survives, holding memory and maybe a
port. So each engine writes `<folder>/<pid>.json` (pgid, leader pid and its start time, the
model id, and which Hearth owns it) when it starts, and removes it when it is stopped. At the
next start, `sweep_orphans(folder)` SIGKILLs every recorded group whose owner is gone.

A recorded pgid is trusted only while it provably still names the same group: the leader runs
with the recorded start time, or, once the leader is gone, members remain in that very
session and group and none of them is older than the leader (the kernel does not hand out a
pid that is still a live group's id, so such members can only be the leader's descendants).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from hearth.core import atomic

#: psutil derives start times from clock ticks (10 ms); a match within this is the same process.
_SAME_START = 0.05


@dataclass(frozen=True)
class EngineRecord:
    """One engine process group as written to `<pid>.json`."""

    pgid: int
    pid: int
    create_time: float
    model_id: str
    owner_pid: int
    owner_create_time: float


def start_time(pid: int) -> float | None:
    """When `pid` started (psutil's create_time), or None if it does not run."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, ValueError):
        return None


def _runs(pid: int, created: float) -> bool:
    started = start_time(pid)
    return started is not None and abs(started - created) < _SAME_START


def record_engine(folder: Path, *, pid: int, model_id: str) -> Path | None:
    """Write the record of a just-started engine (its own session: pgid == pid); None if the
    child is already gone. Atomic (temp file + rename), so a sweep never reads half a record."""
    created, owner_created = start_time(pid), start_time(os.getpid())
    if created is None or owner_created is None:
        return None
    record = EngineRecord(pid, pid, created, model_id, os.getpid(), owner_created)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pid}.json"
    atomic.write_json(path, asdict(record), mode=0o600)  # read back after a crash: durable
    return path


def forget_engine(path: Path | None) -> None:
    """Remove an engine's record once its group has been stopped."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _read(path: Path) -> EngineRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return EngineRecord(
            pgid=int(data["pgid"]),
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            model_id=str(data["model_id"]),
            owner_pid=int(data["owner_pid"]),
            owner_create_time=float(data["owner_create_time"]),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _group_is_ours(record: EngineRecord) -> bool:
    """True when `record.pgid` still names the group that engine started (module docstring)."""
    if record.pgid <= 1 or record.pgid in (os.getpgrp(), os.getpid()):
        return False
    leader = start_time(record.pid)
    if leader is not None:  # the leader runs: ours only if it is the very same process
        return abs(leader - record.create_time) < _SAME_START
    found = False
    for proc in psutil.process_iter(["create_time"]):
        try:
            if os.getpgid(proc.pid) != record.pgid:
                continue
            if os.getsid(proc.pid) != record.pgid:
                return False
            if float(proc.info["create_time"]) < record.create_time - _SAME_START:
                return False  # older than the leader: not its descendant
            found = True
        except (OSError, psutil.Error, TypeError, ValueError):
            continue
    return found


def sweep_orphans(folder: Path) -> list[EngineRecord]:
    """SIGKILL the process group of every recorded engine whose Hearth is gone; return those.

    Records of engines whose owner still runs (this process, or another live Hearth) are
    kept; every other record, and temp files a crash left mid-write, are removed.
    """
    if not folder.is_dir():
        return []
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    killed: list[EngineRecord] = []
    for path in sorted(folder.glob("*.json")):
        record = _read(path)
        if record is not None and _runs(record.owner_pid, record.owner_create_time):
            continue  # a live Hearth's engine: not an orphan
        if record is not None and _group_is_ours(record):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record.pgid, signal.SIGKILL)
                killed.append(record)
        forget_engine(path)
    return killed
