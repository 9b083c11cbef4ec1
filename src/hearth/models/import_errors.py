"""Files the importer could not import, and why: shown by GET /v1/models/import/errors and
`hearth models list`, and persisted in logs/import-errors.json so the CLI sees them offline.

Each record remembers the file's (size, mtime); the watcher does not try the same bytes again,
so a bad file is reported once instead of retried in a loop. Changing the file retries it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from hearth.models.store import write_json_atomic


def _signature(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        try:
            st = path.lstat()  # a dangling symlink: the link itself
        except OSError:
            return None
    return [st.st_size, st.st_mtime_ns]


class ImportErrors:
    def __init__(self, file: Path | None = None) -> None:
        self.file = file
        self._lock = threading.Lock()
        self._items: dict[str, dict[str, Any]] = {}
        if file is not None and file.exists():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
                self._items = {item["path"]: item for item in data if isinstance(item, dict)}
            except (ValueError, KeyError, TypeError, OSError):
                self._items = {}

    def record(self, path: Path, message: str, *, state: str = "failed") -> None:
        item = {
            "path": str(path),
            "error": message,
            "state": state,
            "time": int(time.time()),
            "signature": _signature(path),
        }
        with self._lock:
            old = self._items.get(str(path))
            if old and (old["error"], old["state"], old["signature"]) == (
                message,
                state,
                item["signature"],
            ):
                return
            self._items[str(path)] = item
            self._save()

    def clear(self, path: Path) -> None:
        with self._lock:
            if self._items.pop(str(path), None) is not None:
                self._save()

    def unchanged_failure(self, path: Path) -> bool:
        """True if this exact file (same size and mtime) already failed: don't retry it."""
        with self._lock:
            item = self._items.get(str(path))
        return bool(item and item["state"] == "failed" and item["signature"] == _signature(path))

    def list(self) -> list[dict[str, Any]]:
        """Current problems; records of files that no longer exist are dropped."""
        with self._lock:
            gone = [p for p in self._items if not os.path.lexists(p)]
            for p in gone:
                del self._items[p]
            if gone:
                self._save()
            return [
                {k: v for k, v in item.items() if k != "signature"}
                for item in sorted(self._items.values(), key=lambda i: i["path"])
            ]

    def _save(self) -> None:
        if self.file is None:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.file, list(self._items.values()))
        except OSError:
            pass
