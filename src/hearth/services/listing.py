"""The model lists as the APIs send them, built fast and shared: GET /v1/models, Ollama's
/api/tags and `hearth models list` all come here.

A list joins each entry's memoized JSON (`ListView.fragment`) with its live status; the last
body is reused when a scan finds the very same entries with the same statuses. On the event
loop, concurrent lists of one view share one scan that started after they arrived, and the
scan pauses every few hundred folders so /health and other requests are answered in between.

A body that must change is built in a worker thread: a new entry's JSON may need its GGUF
header (a model.json written by hand has no facts), and 5,000 new entries are hundreds of
milliseconds of JSON encoding, which must not hold the event loop in one piece. That thread
also drops the cached headers of files the store no longer lists (`facts.HEADERS`).
"""

from __future__ import annotations

import asyncio
import gc
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from hearth.core.coalesce import FreshRun
from hearth.models.facts import HEADERS
from hearth.models.store import ModelEntry, ModelStore

# Folders a model-list scan reads before it lets the event loop answer other requests: ~2 ms
# of stat calls on the 2-core machine the benchmarks run on (see BENCHMARKS.md, "Model list").
LIST_PAUSE_EVERY = 256
# ...or sooner, once a step has run this long: reading new folders' model.json (a first list
# of thousands of hand-written folders), or stat calls that wait for the GIL while a worker
# thread builds a body, would otherwise make a step of 256 folders last 100-200 ms.
LIST_SLICE_SECONDS = 0.01

# After this many new models (folders read by a scan, or entries' JSON made for a body), the
# heap is settled (`settle_heap`).
SETTLE_AFTER = 256

Status = tuple[str, str | None]
# The last list body, with the entries (compared by identity) and statuses it was built from.
_ListMemo = tuple[list[ModelEntry], list[Status], bytes]


def settle_heap() -> None:
    """Take what the last few hundred new models made (records, headers, JSON) out of the
    garbage collector's reach. A full collection walks every tracked object while it holds
    the event loop (and the GIL), and 5,000 models' records are ~140,000 objects: left
    tracked, a first list of a few thousand hand-written folders paused the loop 50-100 ms at
    a time in collections alone. Frozen objects are still freed when dropped (reference
    counts); only cyclic garbage already frozen is never collected, so young garbage is
    collected first, and this happens only as models appear, not in steady use. The server
    freezes its start-up heap the same way (`server/app.py`, `settle`)."""
    gc.collect(1)
    gc.freeze()


@dataclass(frozen=True)
class ListView:
    """One kind of list: `fragment` is one entry's JSON text (None: the view leaves it out),
    called in a worker thread and memoized per entry and status; `head` and `tail` wrap the
    comma-joined fragments."""

    name: str
    fragment: Callable[[ModelEntry, Status], str | None]
    head: str
    tail: str


def _openai_fragment(entry: ModelEntry, status: Status) -> str:
    return entry.to_api_json(*status)


#: GET /v1/models: OpenAI's list object, every folder (broken ones with status "invalid").
OPENAI_LIST = ListView("openai", _openai_fragment, '{"object":"list","data":[', "]}")


@dataclass
class _ViewState:
    """What one view remembers between lists: the last body and each entry's fragment (by
    folder name: the entry object and status it was made from, and the text)."""

    runs: FreshRun[bytes]
    memo: _ListMemo | None = None
    parts: dict[str, tuple[ModelEntry, Status, str | None]] = field(default_factory=dict)


class ModelLists:
    """Builds list bodies for one store; `status_of` gives each entry's live status."""

    def __init__(self, store: ModelStore, status_of: Callable[[ModelEntry], Status]) -> None:
        self.store = store
        self.status_of = status_of
        self._views: dict[str, _ViewState] = {}
        self._scans: FreshRun[list[ModelEntry]] | None = None

    async def shared_body(self, view: ListView = OPENAI_LIST) -> bytes:
        """The body for a request on the event loop: a scan and body shared with concurrent
        callers of the same view, started after this call (so a change on disk shows in the
        next list)."""
        state = self._views.get(view.name)
        if state is None:

            async def produce() -> bytes:
                return await self._body(view, await self._scan())

            state = self._views[view.name] = _ViewState(FreshRun(produce))
        return await state.runs.get()

    async def entries(self) -> list[ModelEntry]:
        """Every entry, from a scan (on the event loop, in steps) shared with concurrent
        callers that started after this call: for lookups such as Ollama's recorded names."""
        if self._scans is None:
            self._scans = FreshRun(self._scan)
        return await self._scans.get()

    async def _body(self, view: ListView, entries: list[ModelEntry]) -> bytes:
        """The last body if nothing changed (decided on the loop: statuses are live state);
        else a new one, built in a worker thread."""
        state = self._views[view.name]
        statuses = [self.status_of(entry) for entry in entries]
        last = state.memo
        if (
            last is not None
            and last[1] == statuses
            and len(last[0]) == len(entries)
            and all(map(operator.is_, last[0], entries))
        ):
            return last[2]
        body = await asyncio.to_thread(self._build, view, state, entries, statuses)
        state.memo = (entries, statuses, body)
        return body

    @staticmethod
    def _build(
        view: ListView, state: _ViewState, entries: list[ModelEntry], statuses: list[Status]
    ) -> bytes:
        """Join the fragments, making those of new or changed entries (worker thread: this may
        read GGUF headers). One build per view at a time (the view's FreshRun)."""
        old, parts = state.parts, {}
        texts: list[str] = []
        made = 0
        for entry, status in zip(entries, statuses, strict=True):
            key = entry.folder.name
            hit = old.get(key)
            if hit is not None and hit[0] is entry and hit[1] == status:
                text = hit[2]
            else:
                text = view.fragment(entry, status)
                made += 1
                if made % SETTLE_AFTER == 0:
                    settle_heap()
            parts[key] = (entry, status, text)
            if text is not None:
                texts.append(text)
        state.parts = parts
        HEADERS.keep_only({str(path) for e in entries if (path := e.model_path) is not None})
        return (view.head + ",".join(texts) + view.tail).encode()

    async def _scan(self) -> list[ModelEntry]:
        """One scan, resumed between other work on the event loop."""
        steps = self.store.scan(pause_every=LIST_PAUSE_EVERY, slice_s=LIST_SLICE_SECONDS)
        read = 0
        try:
            while True:
                try:
                    read += next(steps)
                except StopIteration as done:
                    entries: list[ModelEntry] = done.value
                    return entries
                if read >= SETTLE_AFTER:
                    settle_heap()
                    read = 0
                await asyncio.sleep(0)  # /health and other requests run here
        finally:
            steps.close()  # cancelled mid-scan: the scan's open folder is closed now
