"""A memory probe for the soak bench (bench/bench_soak.py), off unless its environment asks.

When `HEARTH_MEMDEBUG_DIR` names a folder and tracemalloc is tracing (the bench starts the
server with `PYTHONTRACEMALLOC`), SIGUSR1 makes the server write what grew since the first
SIGUSR1: tracemalloc's top allocations by traceback and the live objects counted by type. A
signal, not a route: only the user running the server (or root) can ask, and a normal server
has neither the variable nor the handler.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

from hearth.core import atomic

ENV = "HEARTH_MEMDEBUG_DIR"
TOP = 40


class _Probe:
    """The first dump is the baseline; each later one is written as the growth since it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.base: tracemalloc.Snapshot | None = None
        self.base_types: Counter[str] = Counter()
        self.count = 0

    def dump(self, _signum: int, _frame: FrameType | None) -> None:
        gc.collect()
        snap = tracemalloc.take_snapshot().filter_traces(
            [
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, __file__, all_frames=True),
            ]
        )
        types = Counter(type(o).__name__ for o in gc.get_objects())
        self.count += 1
        lines = [f"dump {self.count} at {time.time():.0f}, traced {_mib(snap)} MiB"]
        if self.base is None:
            self.base, self.base_types = snap, types
            lines.append("baseline taken")
        else:
            lines.append(f"top {TOP} growth since the baseline, by traceback:")
            for stat in snap.compare_to(self.base, "traceback")[:TOP]:
                lines.append(f"{stat.size_diff / 1024:+.1f} KiB {stat.count_diff:+d} blocks")
                lines.extend("    " + line for line in stat.traceback.format(limit=8))
            lines.append("objects by type, growth since the baseline:")
            growth = Counter({k: types[k] - self.base_types.get(k, 0) for k in types})
            lines.extend(f"{n:+d} {name}" for name, n in growth.most_common(TOP) if n > 0)
        path = self.folder / f"dump-{self.count:03d}.txt"
        atomic.write_text(path, "\n".join(lines) + "\n", durable=False)  # a debugging aid


def _mib(snap: tracemalloc.Snapshot) -> str:
    return f"{sum(s.size for s in snap.statistics('filename')) / 2**20:.1f}"


def install() -> bool:
    """Install the SIGUSR1 probe when the environment asks for it; say whether it did."""
    folder = os.environ.get(ENV)
    if not folder or not tracemalloc.is_tracing() or not hasattr(signal, "SIGUSR1"):
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGUSR1, _Probe(Path(folder)).dump)
    return True
