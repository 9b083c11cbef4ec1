"""The model list as the API sends it, built fast and shared: GET /v1/models and `hearth models
list` both come here.

A list joins each entry's memoized JSON with its live status; the last body is reused when a
scan finds the very same entries with the same statuses. On the event loop, concurrent lists
share one scan that started after they arrived, and the scan pauses every few hundred folders
so /health and other requests are answered in between.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable

from hearth.coalesce import FreshRun
from hearth.models.store import ModelEntry, ModelStore

# Folders a model-list scan reads before it lets the event loop answer other requests: ~2 ms
# of stat calls on the 2-core machine the benchmarks run on (see BENCHMARKS.md, "Model list").
LIST_PAUSE_EVERY = 256

Status = tuple[str, str | None]
# The last list body, with the entries (compared by identity) and statuses it was built from.
_ListMemo = tuple[list[ModelEntry], list[Status], bytes]


class ModelLists:
    """Builds list bodies for one store; `status_of` gives each entry's live status."""

    def __init__(self, store: ModelStore, status_of: Callable[[ModelEntry], Status]) -> None:
        self.store = store
        self.status_of = status_of
        self._runs: FreshRun[bytes] | None = None
        self._memo: _ListMemo | None = None

    def body(self, entries: list[ModelEntry]) -> bytes:
        """The list as UTF-8 JSON from each entry's memoized JSON; the last body is reused when
        the scan found the very same entries with the same statuses (joining and encoding 5,000
        models costs ~10 ms, a fifth of a 5,000-folder list)."""
        statuses = [self.status_of(entry) for entry in entries]
        last = self._memo
        if (
            last is not None
            and last[1] == statuses
            and len(last[0]) == len(entries)
            and all(map(operator.is_, last[0], entries))
        ):
            return last[2]
        pairs = zip(entries, statuses, strict=True)
        parts = [entry.to_api_json(*status) for entry, status in pairs]
        body = ('{"object":"list","data":[' + ",".join(parts) + "]}").encode()
        self._memo = (entries, statuses, body)
        return body

    async def shared_body(self) -> bytes:
        """The body for a request on the event loop: a scan shared with concurrent callers that
        started after this call (so a change on disk shows in the next list)."""
        if self._runs is None:
            self._runs = FreshRun(self._scan)
        return await self._runs.get()

    async def _scan(self) -> bytes:
        """One shared run: the scan, resumed between other work, then the body."""
        steps = self.store.scan(pause_every=LIST_PAUSE_EVERY)
        try:
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    entries: list[ModelEntry] = done.value
                    break
                await asyncio.sleep(0)  # /health and other requests run here
        finally:
            steps.close()  # cancelled mid-scan: the scan's open folder is closed now
        return self.body(entries)
