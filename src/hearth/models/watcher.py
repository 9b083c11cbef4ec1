"""Drop-in import: watch models/ and import what lands there, once it is complete.

One worker thread does all the importing, serially, so each file is imported exactly once no
matter how many events it produces. watchdog (inotify on Linux) feeds it events; a scan at
start-up catches files dropped while Hearth was off.

When is a file complete? Its GGUF header must parse *and* its tensor data must fit in the file
(a partial copy fails that as "truncated"), and either the writer has closed it (inotify
close-write), it was moved in whole (a rename), or it has not changed for `settle_seconds`.
Partial downloads (.part, .download, .crdownload) and hidden files are never touched.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer

from hearth.core.errors import HearthError, InvalidModelFile
from hearth.models.gguf import GGUFInfo
from hearth.models.importer import (
    Importer,
    check_model_file,
    is_candidate,
    is_projector,
    open_for_writing,
    seconds_since_change,
    split_name,
)
from hearth.models.store import MODEL_JSON, ModelEntry

log = logging.getLogger("hearth.import")

# Linux: watchdog's inotify grouper holds every IN_MOVED_FROM for `delay` (0.5 s) to pair it
# with its IN_MOVED_TO, and its queue is a FIFO, so every event behind it waits too. Measured
# with watchdog 7.1.1 (`bench/bench_watchdog_delay.py`, BENCHMARKS.md; 20 runs, median): a
# rename inside the watched tree costs 0.4 ms either way (the kernel hands both halves over in
# one read, so they pair at once), but a move whose other half is not seen (out of the tree,
# or into a folder not yet watched, as an import's move into a new model folder can be) is
# reported after 501 ms, and a file created right after it waits the same 501 ms; with
# 0.05 s, 51 ms for both. watchdog has no public setting for it (Observer takes only `timeout`
# and `generate_full_events`; InotifyWatchGroup builds the grouper with no argument), so the
# class attribute is set here, and only while it still exists under that name.
try:
    from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
except ImportError:  # other platforms have no grouper
    pass
else:
    if isinstance(getattr(InotifyMoveEventGrouper, "delay", None), float):
        InotifyMoveEventGrouper.delay = 0.05


class _Events(FileSystemEventHandler):
    def __init__(self, sink: queue.Queue[tuple[str, bool]]) -> None:
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        path = event.dest_path if isinstance(event, FileSystemMovedEvent) else event.src_path
        complete = isinstance(event, (FileClosedEvent, FileSystemMovedEvent))
        self.sink.put((os.fsdecode(path), complete))


class ModelsWatcher:
    def __init__(
        self, importer: Importer, *, settle_seconds: float = 1.0, poll_interval: float = 0.25
    ) -> None:
        self.importer = importer
        self.models_dir = importer.models_dir
        self.settle_seconds = settle_seconds
        self.poll_interval = poll_interval
        self._events: queue.Queue[tuple[str, bool]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self.scans = 0
        self._unsettled_folders: set[Path] = set()

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        observer = Observer()
        observer.schedule(_Events(self._events), str(self.models_dir), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._thread = threading.Thread(target=self._run, name="hearth-import", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._events.put(("", False))  # wake the worker now
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        touched: set[Path] = set()
        complete: set[Path] = set()
        pending = self._safe_scan(touched, complete, everything=True)
        while not self._stop.is_set():
            try:
                path, done = self._events.get(timeout=self.poll_interval if pending else 1.0)
                self._note(path, done, touched, complete)
                while True:  # drain a burst (100 files dropped at once) into one scan
                    path, done = self._events.get_nowait()
                    self._note(path, done, touched, complete)
            except queue.Empty:
                pass
            if self._stop.is_set():
                break
            observer_alive = self._observer is not None and self._observer.is_alive()
            if touched or pending or not observer_alive:
                # Without a live observer (inotify limits, a crashed thread) fall back to polling.
                everything = not observer_alive
                pending = self._safe_scan(touched, complete, everything=everything)
                touched, complete = set(), set()

    def _note(self, path: str, done: bool, touched: set[Path], complete: set[Path]) -> None:
        if not path:
            return
        touched.add(Path(path))
        if done:
            complete.add(Path(path))

    def _safe_scan(self, touched: set[Path], complete: set[Path], *, everything: bool) -> bool:
        try:
            return self.scan(touched, complete, everything=everything)
        except Exception:
            log.exception("import scan failed; will retry")
            return True

    # ---- one pass --------------------------------------------------------------------

    def scan(
        self,
        touched: set[Path] | None = None,
        complete: set[Path] | None = None,
        *,
        everything: bool = True,
    ) -> bool:
        """Import what is ready; return True while something is still settling."""
        self.scans += 1
        touched, complete = touched or set(), complete or set()
        pending = False
        loose: list[Path] = []
        folders: list[Path] = []
        for entry in sorted(os.scandir(self.models_dir), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_file():
                if is_candidate(path):
                    loose.append(path)
            elif entry.is_dir() and not (is_candidate(path) and _empty_of_models(path)):
                folders.append(path)
            elif is_candidate(path):
                self._not_a_file(path)  # a FIFO, a device, a dangling link, a folder "x.gguf"
        ready: list[tuple[Path, GGUFInfo | None]] = []
        for path in loose:
            state = self._readiness(path, path in complete)
            if state == "wait":
                pending = True
            elif isinstance(state, tuple):
                ready.append((path, state[1]))
        models = [(p, i) for p, i in ready if not is_projector(p, i)]
        projectors = [p for p, i in ready if is_projector(p, i)]
        pending |= self._import_loose(models)
        for path in projectors:
            self._attach_loose_projector(path)
        touched_folders = {p if p.parent == self.models_dir else p.parent for p in touched}
        touched_folders |= self._unsettled_folders
        self._unsettled_folders = set()
        for folder in folders:
            if (everything or folder in touched_folders) and self._check_folder(folder, complete):
                self._unsettled_folders.add(folder)
        return pending or bool(self._unsettled_folders)

    def _not_a_file(self, path: Path) -> None:
        """Something named like a model that is no regular file: say so, never open it (a FIFO
        would block the watcher forever)."""
        if self.importer.errors.unchanged_failure(path):
            return
        reason = not_a_file_reason(path)
        log.warning("not importing %s: %s", path, reason)
        self.importer.errors.record(path, reason)

    def _readiness(self, path: Path, closed: bool) -> str | tuple[str, GGUFInfo | None] | None:
        """'wait', None (skip: failed before), or ('ready', header info)."""
        if self.importer.errors.unchanged_failure(path):
            return None
        settled = closed or seconds_since_change(path) >= self.settle_seconds
        try:
            info = check_model_file(path)
        except InvalidModelFile as exc:
            if not settled:
                return "wait"  # probably still being written
            log.warning("not importing %s: %s", path, exc.message)
            self.importer.errors.record(path, exc.message)
            return None
        if not settled:
            # The header and every tensor byte are there; if nobody has it open for writing it
            # was moved in whole (or its writer is done): import now rather than after settling.
            settled = open_for_writing(path) is False
        return ("ready", info) if settled else "wait"

    def _import_loose(self, models: list[tuple[Path, GGUFInfo | None]]) -> bool:
        pending = False
        done: set[Path] = set()
        for path, _ in models:
            if path in done or not path.exists():
                continue
            split = split_name(path.name)
            if split is not None:
                parts = [path.parent / split.part(n, path.name) for n in range(1, split.count + 1)]
                ready_names = {p for p, _ in models}
                missing = [p.name for p in parts if p not in ready_names]
                if missing:
                    self.importer.errors.record(
                        path,
                        f"{path.name} is part of a split model; waiting for "
                        f"{', '.join(missing)}. Put every part into models/.",
                        state="waiting",
                    )
                    pending = True
                    continue
                done.update(parts)
            try:
                entry = self.importer.import_path(path, mode="move")
            except HearthError as exc:
                log.warning("not importing %s: %s", path, exc.message)
                self.importer.errors.record(path, exc.message)
                continue
            log.info("imported %s as model '%s'", path.name, entry.id)
        return pending

    def _attach_loose_projector(self, path: Path) -> None:
        entry = self._owner_of(path)
        if entry is None:
            self.importer.errors.record(
                path,
                f"{path.name} is a vision projector (mmproj), and Hearth cannot tell which model "
                "it belongs to. Move it into that model's folder (models/<id>/).",
            )
            return
        try:
            self.importer.attach_projector(path, entry)
            log.info("attached projector %s to '%s'", path.name, entry.id)
        except HearthError as exc:
            self.importer.errors.record(path, exc.message)

    def _owner_of(self, projector: Path) -> ModelEntry | None:
        """The model whose id shares the longest prefix with the projector's name, if unique."""
        stem = projector.name.lower().replace("mmproj", "").replace(".gguf", "")
        stem = "".join(c if c.isalnum() or c in "._" else "-" for c in stem).strip("-._")
        scored: list[tuple[int, ModelEntry]] = []
        for entry in self.importer.store.list():
            if entry.info is None or entry.info.format == "api":
                continue
            n = _common_prefix(stem, entry.id.lower())
            scored.append((n, entry))
        scored.sort(key=lambda t: -t[0])
        if not scored or scored[0][0] < 4 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
            return None
        return scored[0][1]

    def _check_folder(self, folder: Path, complete: set[Path]) -> bool:
        """A folder without model.json gets one; a new projector inside a model gets attached."""
        try:
            files = [p for p in folder.iterdir() if p.is_file() and is_candidate(p)]
        except OSError:
            return False
        if not files:
            return False
        for path in files:
            if not (
                path in complete
                or seconds_since_change(path) >= self.settle_seconds
                or open_for_writing(path) is False
            ):
                return True  # still arriving
        if not (folder / MODEL_JSON).exists():
            try:
                entry = self.importer.adopt_folder(folder)
            except HearthError as exc:
                self.importer.errors.record(folder, exc.message)
                return False
            if entry is not None:
                log.info("wrote model.json for models/%s", folder.name)
            return False
        projectors = [p for p in files if "mmproj" in p.name.lower()]
        if projectors:
            try:
                entry = self.importer.store.get(folder.name)
            except HearthError:
                return False
            if entry.info is not None and not entry.info.engine_parameters.get("mmproj"):
                try:
                    self.importer.attach_projector(projectors[0], entry)
                    log.info("attached projector %s to '%s'", projectors[0].name, entry.id)
                except HearthError as exc:
                    self.importer.errors.record(projectors[0], exc.message)
        return False


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _empty_of_models(folder: Path) -> bool:
    """A folder with neither a model.json nor a model file (so not a model folder)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return True
    return MODEL_JSON not in names and not any(is_candidate(folder / n) for n in names)


def not_a_file_reason(path: Path) -> str:
    """Why a path named like a model file is not one, with the fix."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if os.path.islink(path):
            return (
                f"{path.name} is a symbolic link to {os.readlink(path)}, which does not exist. "
                "Fix or remove the link."
            )
        return f"{path.name} cannot be read ({exc.strerror})."
    if stat.S_ISDIR(mode):
        return (
            f"{path.name} is a folder, not a model file. A model folder holds its files and a "
            "model.json; rename it without the .gguf ending."
        )
    kind = {stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
            stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}  # fmt: skip
    what = next((name for test, name in kind.items() if test(mode)), "not a regular file")
    return f"{path.name} is {what}, not a model file. Put a real .gguf file here instead."
