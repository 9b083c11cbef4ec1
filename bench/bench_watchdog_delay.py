"""What watchdog's move grouper delay costs the model watcher's events (Linux, inotify).

Run by hand: `.venv/bin/python bench/bench_watchdog_delay.py [DELAY] [--runs N]`.
Without DELAY it measures watchdog's own default (0.5 s); `0.05` is what
`hearth.models.watcher` sets. Per run: a file created in a watched folder, a rename inside it,
a file moved out of it, and a file created right after that move (it queues behind the move).
Prints the median and the worst delivery latency of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper


class _Seen(FileSystemEventHandler):
    """When each (event type, file name) first arrived."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()

    def on_any_event(self, event: FileSystemEvent) -> None:
        name = os.path.basename(str(getattr(event, "dest_path", "") or event.src_path))
        with self.cond:
            self.seen.setdefault((event.event_type, name), time.monotonic())
            self.cond.notify_all()

    def wait(self, kind: str, name: str) -> float:
        with self.cond:
            self.cond.wait_for(lambda: (kind, name) in self.seen, timeout=5)
            return self.seen[(kind, name)]


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def measure(runs: int) -> dict[str, list[float]]:
    inside, outside = tempfile.mkdtemp(), tempfile.mkdtemp()
    seen = _Seen()
    observer = Observer()
    observer.schedule(seen, inside)
    observer.start()
    time.sleep(0.3)
    cases = ("created", "renamed inside", "moved out", "created behind a move-out")
    lat: dict[str, list[float]] = {case: [] for case in cases}
    try:
        for i in range(runs):
            start = time.monotonic()
            _touch(os.path.join(inside, f"c{i}"))
            lat["created"].append(seen.wait("created", f"c{i}") - start)
            part = os.path.join(inside, f"r{i}.part")
            _touch(part)
            time.sleep(0.05)
            start = time.monotonic()
            os.rename(part, os.path.join(inside, f"r{i}.gguf"))
            lat["renamed inside"].append(seen.wait("moved", f"r{i}.gguf") - start)
            leaving = os.path.join(inside, f"o{i}")
            _touch(leaving)
            time.sleep(0.05)
            start = time.monotonic()
            os.rename(leaving, os.path.join(outside, f"o{i}"))
            _touch(os.path.join(inside, f"after{i}"))
            lat["moved out"].append(seen.wait("deleted", f"o{i}") - start)
            lat["created behind a move-out"].append(seen.wait("created", f"after{i}") - start)
    finally:
        observer.stop()
        observer.join()
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("delay", nargs="?", type=float, help="the grouper delay, seconds")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    if args.delay is not None:
        InotifyMoveEventGrouper.delay = args.delay
    print(f"delay {InotifyMoveEventGrouper.delay} s, {args.runs} runs")
    print("| event | median ms | max ms |\n|---|---:|---:|")
    for case, values in measure(args.runs).items():
        print(f"| {case} | {statistics.median(values) * 1000:.1f} | {max(values) * 1000:.1f} |")


if __name__ == "__main__":
    main()
