"""One lock per key (a thread, a model folder), alive only while someone holds or awaits it.

A store that serializes writes per item used to keep a `threading.Lock` for every item ever
written, which grows for as long as the server runs (thousands of conversations over weeks,
each id and lock held forever). Counting the users of each lock lets the last one drop it:
the map holds only the items being written right now.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator


class KeyedLocks:
    """`with locks.hold(key):` serializes the holders of one key; different keys run at once."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}  # key -> (lock, its users)
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[key][1] - 1
                if users:
                    self._locks[key] = (lock, users)
                else:
                    del self._locks[key]

    def __len__(self) -> int:
        """How many keys have a holder or a waiter now."""
        return len(self._locks)
