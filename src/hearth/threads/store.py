"""The thread store: folders under `<home>/threads/` <-> threads and their messages.

Everything that changes a conversation on disk goes through here. Guarantees:
- Ids are folder names checked against the id grammar before any path is built, and a folder
  or file that is a link leading out of the threads folder is never followed (403).
- Writes to one thread are serialized across threads and processes (a lock per thread plus
  flock on its folder). A new message is an append of whole lines (a rewrite when the file has
  other hard links); an edit or delete rewrites messages.jsonl atomically, keeping every other
  line byte for byte (unparseable ones too).
- A message's id never changes: one stored without an id shows an id derived from its line,
  and an edit writes that id into the line it changes.
- A new or imported thread is written in a hidden staging folder and renamed into place, and a
  deleted one is renamed aside first: a crash never leaves half a thread that looks whole.
- Nothing deletes a file but DELETE of that thread (its folder) or of messages (their lines),
  and a write's sweep of the temp files a crashed rewrite left (`jsonl.remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.core.errors import Conflict, Forbidden, NotFound
from hearth.core.keyedlocks import KeyedLocks
from hearth.models.ids import is_valid_id
from hearth.models.links import is_inside
from hearth.threads import jsonl
from hearth.threads.ids import new_thread_id, validate_message_id, validate_thread_id
from hearth.threads.jsonl import Line
from hearth.threads.views import message_id, stored_id

log = logging.getLogger("hearth.threads")

THREAD_JSON = "thread.json"
MESSAGES = "messages.jsonl"
_STAGING = ".new-"
_TRASH = ".deleting-"
_STALE_STAGING_S = 3600.0
#: A rewrite's temp file older than this is a crash's leftover, never a live writer's.
_STALE_TEMP_S = 600.0

#: A message as the store hands it out: its id (stored or derived) and its stored object.
Message = tuple[str, dict[str, Any]]


@dataclass
class StoredThread:
    """One thread folder as read: thread.json's object ({} when absent or unreadable)."""

    id: str
    folder: Path
    raw: dict[str, Any]
    mtime: float
    error: str | None = None  # thread.json exists but is not a JSON object: shown, not rewritten


def thread_not_found(thread_id: str) -> NotFound:
    return NotFound(
        f"The thread '{thread_id}' does not exist. List threads with GET /v1/threads; create one "
        "with POST /v1/threads.",
        param="thread_id",
        code="thread_not_found",
    )


def message_not_found(thread_id: str, msg_id: str) -> NotFound:
    return NotFound(
        f"The message '{msg_id}' does not exist in thread '{thread_id}'. List its messages with "
        f"GET /v1/threads/{thread_id}/messages.",
        param="message_id",
        code="message_not_found",
    )


class ThreadStore:
    """Thread folders under `threads_dir` (created on the first write). Thread-safe."""

    def __init__(self, threads_dir: Path) -> None:
        self.threads_dir = threads_dir
        self._locks = KeyedLocks()  # only threads being written: none kept after
        self._warned: set[tuple[str, int, bytes]] = set()
        self._sweep()

    # ---- paths ------------------------------------------------------------------------------

    def _root(self) -> str:
        return os.path.realpath(self.threads_dir)

    def _folder(self, thread_id: str) -> Path:
        """The thread's folder, refusing ids outside the grammar (400) and links leading out of
        the threads folder (403). It may not exist."""
        folder = self.threads_dir / validate_thread_id(thread_id)
        if folder.is_symlink():
            root, real = self._root(), os.path.realpath(folder)
            if real == root or not is_inside(real, root):
                raise Forbidden(
                    f"threads/{thread_id} is a link to a folder outside the threads folder, "
                    "which Hearth does not follow. Move the conversation's folder into "
                    "threads/ instead.",
                    param="thread_id",
                )
        return folder

    def _file(self, folder: Path, name: str) -> Path:
        path = folder / name
        if path.is_symlink() and not is_inside(os.path.realpath(path), os.path.realpath(folder)):
            raise Forbidden(
                f"threads/{folder.name}/{name} is a link to a file outside the thread's folder, "
                "which Hearth does not follow. Replace it with a real file.",
                param="thread_id",
            )
        return path

    def _existing(self, thread_id: str) -> Path:
        folder = self._folder(thread_id)
        if folder.is_dir() and any(os.path.lexists(folder / n) for n in (THREAD_JSON, MESSAGES)):
            return folder
        raise thread_not_found(thread_id)

    # ---- reading ----------------------------------------------------------------------------

    def all(self) -> list[StoredThread]:
        """Every thread folder (one with thread.json or messages.jsonl); folders that cannot be
        read safely are skipped and logged, never fatal to the list."""
        return list(self.each())

    def each(self) -> Iterator[StoredThread]:
        """`all`, one thread at a time: a caller that keeps only a little of each (the list's
        order) never holds every thread at once."""
        try:
            names = sorted(d.name for d in os.scandir(self.threads_dir) if d.is_dir())
        except FileNotFoundError:
            return
        for name in names:
            if not is_valid_id(name):  # also hidden: staging, trash
                continue
            try:
                thread = self.get(name)
            except NotFound:
                continue
            except Exception as exc:  # a link out, a FIFO: skip it, say why once
                self._warn_once(name, 0, str(exc).encode(), f"skipped threads/{name}: {exc}")
                continue
            yield thread

    def get(self, thread_id: str) -> StoredThread:
        folder = self._existing(thread_id)
        path = self._file(folder, THREAD_JSON)
        self._file(folder, MESSAGES)  # a link out is refused for the whole thread
        mtime = _mtime(folder / MESSAGES, path, folder)
        data = jsonl.read_bytes(path)
        if data is None:
            return StoredThread(thread_id, folder, {}, mtime)
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:
            return StoredThread(thread_id, folder, {}, mtime, f"thread.json is not JSON ({exc})")
        if not isinstance(raw, dict):
            return StoredThread(thread_id, folder, {}, mtime, "thread.json is not a JSON object")
        return StoredThread(thread_id, folder, raw, mtime)

    def lines(self, thread_id: str) -> list[Line]:
        """messages.jsonl's lines; unparseable ones are logged once each."""
        folder = self._existing(thread_id)
        data = jsonl.read_bytes(self._file(folder, MESSAGES))
        lines = jsonl.parse(data or b"")
        for line in lines:
            if line.data is None and line.raw.strip():
                self._warn_once(
                    thread_id,
                    line.number,
                    line.raw[:64],
                    f"threads/{thread_id}/messages.jsonl line {line.number} is not a JSON object; "
                    "skipped (it stays in the file)",
                )
        return lines

    def skipped_lines(self, thread_id: str) -> list[int]:
        """The numbers of messages.jsonl's lines that are not messages (not JSON objects): the
        rest of the thread is shown, and these are named (Jan fails the whole thread)."""
        return [ln.number for ln in self.lines(thread_id) if ln.data is None and ln.raw.strip()]

    def messages(self, thread_id: str, thread: StoredThread | None = None) -> list[Message]:
        """The thread's messages, oldest first: an early draft's `messages` in thread.json,
        then messages.jsonl's."""
        thread = thread or self.get(thread_id)
        out: list[Message] = []
        legacy = thread.raw.get("messages")
        if isinstance(legacy, list):
            for m in legacy:
                if isinstance(m, dict):
                    out.append((message_id(m, jsonl.dumps(m)), m))
        for line in self.lines(thread_id):
            if line.data is not None:
                out.append((message_id(line.data, line.raw), line.data))
        return out

    def _warn_once(self, thread_id: str, number: int, sample: bytes, text: str) -> None:
        key = (thread_id, number, sample)
        if key not in self._warned:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned.add(key)
            log.warning("%s", text)

    # ---- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, thread_id: str) -> Iterator[Path]:
        """Serialize writes to one thread: a thread lock plus flock on its folder."""
        folder = self._existing(thread_id)
        with self._locks.hold(thread_id):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:  # deleted while this request waited for the lock
                raise thread_not_found(thread_id) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                folder = self._existing(thread_id)  # it may have been deleted while we waited
                self._sweep_temps(folder)
                yield folder
            finally:
                os.close(fd)

    def create(
        self, raw: dict[str, Any], messages: list[dict[str, Any]], thread_id: str | None = None
    ) -> str:
        """Write a new thread (its `id` and each message's `thread_id` set to the folder's)
        under `thread_id` if that is free, else under a new UUID; the id it got."""
        self.threads_dir.mkdir(parents=True, exist_ok=True)
        stage = self.threads_dir / f"{_STAGING}{uuid.uuid4().hex}"
        stage.mkdir()
        try:
            wanted = validate_thread_id(thread_id) if thread_id else None
            for _ in range(8):
                chosen = wanted or new_thread_id()
                wanted = None
                target = self.threads_dir / chosen
                if os.path.lexists(target):
                    continue
                self._write_new(stage, chosen, raw, messages)
                try:
                    os.rename(stage, target)  # an empty folder in the way is replaced
                except OSError:
                    continue  # taken meanwhile: next id
                return chosen
            raise Conflict("Could not find a free thread id; try again.")
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    @staticmethod
    def _write_new(
        stage: Path, thread_id: str, raw: dict[str, Any], messages: list[dict[str, Any]]
    ) -> None:
        thread = {**raw, "id": thread_id}
        write_thread_json(stage / THREAD_JSON, thread)
        lines = [{**m, "thread_id": thread_id} for m in messages]
        jsonl.write_atomic(stage / MESSAGES, b"".join(jsonl.dumps(m) + b"\n" for m in lines))

    def update(self, thread_id: str, change: Callable[[dict[str, Any]], None]) -> StoredThread:
        """Read thread.json, let `change` edit the object in place, write it atomically (a
        thread.json that is not a JSON object is refused, never overwritten)."""
        with self.locked(thread_id) as folder:
            current = self.get(thread_id)
            if current.error:
                raise Conflict(
                    f"threads/{thread_id}/{current.error}; fix the file by hand first (an "
                    "empty object {} is a valid thread.json).",
                    param="thread_id",
                )
            raw = dict(current.raw)
            change(raw)
            write_thread_json(self._file(folder, THREAD_JSON), raw)
        return self.get(thread_id)

    def delete(self, thread_id: str) -> None:
        """Remove the thread's folder (a link to a folder in threads/: only the link)."""
        with self.locked(thread_id) as folder:
            if folder.is_symlink():
                folder.unlink()
                return
            trash = self.threads_dir / f"{_TRASH}{thread_id}-{uuid.uuid4().hex[:8]}"
            os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def append(self, thread_id: str, messages: list[dict[str, Any]]) -> None:
        with self.locked(thread_id) as folder:
            jsonl.append(self._file(folder, MESSAGES), messages)

    def edit_message(
        self, thread_id: str, msg_id: str, change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Let `change` edit one message in place; rewrite messages.jsonl atomically."""
        validate_message_id(msg_id)
        with self.locked(thread_id) as folder:
            lines = self.lines(thread_id)
            index = self._find(thread_id, lines, msg_id)
            data = dict(lines[index].data or {})
            if stored_id(data) is None:  # derived from the line this edit changes: keep it
                data = {"id": msg_id, **{k: v for k, v in data.items() if k != "id"}}
            change(data)
            lines[index] = Line(lines[index].number, jsonl.dumps(data), data)
            jsonl.rewrite(self._file(folder, MESSAGES), lines)
            return data

    def delete_messages(self, thread_id: str, msg_id: str, *, and_after: bool = False) -> int:
        """Delete one message (and, with `and_after`, every later one; lines that are not
        messages stay). How many were deleted."""
        validate_message_id(msg_id)
        with self.locked(thread_id) as folder:
            lines = self.lines(thread_id)
            index = self._find(thread_id, lines, msg_id)
            doomed = {index}
            if and_after:
                doomed |= {i for i in range(index, len(lines)) if lines[i].data is not None}
            kept = [line for i, line in enumerate(lines) if i not in doomed]
            jsonl.rewrite(self._file(folder, MESSAGES), kept)
            return len(doomed)

    def _find(self, thread_id: str, lines: list[Line], msg_id: str) -> int:
        for i, line in enumerate(lines):
            if line.data is not None and message_id(line.data, line.raw) == msg_id:
                return i
        legacy = self.get(thread_id).raw.get("messages")
        if isinstance(legacy, list) and any(
            isinstance(m, dict) and message_id(m, jsonl.dumps(m)) == msg_id for m in legacy
        ):
            raise Conflict(
                f"The message '{msg_id}' is stored in thread.json's 'messages' field (an early "
                "Jan draft), which Hearth reads but does not rewrite. Edit the file by hand, or "
                "export and import the thread to move its messages to messages.jsonl.",
                param="message_id",
            )
        raise message_not_found(thread_id, msg_id)

    def _sweep_temps(self, folder: Path) -> None:
        """Before a write, under the thread's lock: the temp files of rewrites that crashed
        (the cheapest place: one small folder listing, and only for a thread being written)."""
        for name in jsonl.remove_stale_temps(folder, (MESSAGES, THREAD_JSON), _STALE_TEMP_S):
            log.info("removed threads/%s/%s, left by a rewrite that did not finish",
                     folder.name, name)  # fmt: skip

    def _sweep(self) -> None:
        """Remove what a crash left: staging folders of old creates, folders renamed aside."""
        try:
            entries = list(os.scandir(self.threads_dir))
        except OSError:
            return
        now = time.time()
        for entry in entries:
            stale = entry.name.startswith(_STAGING) and now - _mtime(Path(entry.path)) > (
                _STALE_STAGING_S
            )
            if (stale or entry.name.startswith(_TRASH)) and not entry.is_symlink():
                shutil.rmtree(entry.path, ignore_errors=True)


def write_thread_json(path: Path, raw: dict[str, Any]) -> None:
    jsonl.write_atomic(path, jsonl.encode(raw, indent=2) + b"\n")


def _mtime(*paths: Path) -> float:
    for path in paths:
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return time.time()
