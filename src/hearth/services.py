"""The services one Hearth process runs, gathered in one object the server and CLI share.

Routes reach everything through `app.state.services`; nothing is a module-level global, so
tests can build as many independent instances as they like.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.coalesce import FreshRun
from hearth.config import Settings, ensure_home
from hearth.downloads.jobs import DownloadManager
from hearth.downloads.pulls import Pulls
from hearth.engines.manager import EngineManager
from hearth.engines.orphans import sweep_orphans
from hearth.models.import_errors import ImportErrors
from hearth.models.importer import Importer
from hearth.models.links import FileRoots
from hearth.models.store import ModelEntry, ModelStore
from hearth.models.watcher import ModelsWatcher

log = logging.getLogger("hearth")

# Folders a model-list scan reads before it lets the event loop answer other requests: ~2 ms
# of stat calls on the 2-core machine the benchmarks run on (see BENCHMARKS.md, "Model list").
LIST_PAUSE_EVERY = 256

# The last list body, with the entries (compared by identity) and statuses it was built from.
_ListMemo = tuple[list[ModelEntry], list[tuple[str, str | None]], bytes]

# A status source answers (status, error) for a model, or None to defer to the next one.
StatusSource = Callable[[ModelEntry], tuple[str, str | None] | None]


@dataclass
class Services:
    settings: Settings
    store: ModelStore
    importer: Importer
    status_sources: list[StatusSource] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    watcher: ModelsWatcher | None = None
    engines: EngineManager = field(init=False)
    pulls: Pulls = field(init=False)
    _lists: FreshRun[bytes] | None = field(default=None, init=False, repr=False)
    _list_memo: _ListMemo | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.engines = EngineManager(self.settings, self.store)
        self.status_sources.append(self.engines.status)
        settings = self.settings
        manager = DownloadManager(
            reserve_bytes=settings.download_reserve_bytes,
            max_bytes=settings.max_download_bytes,
            allow_private=settings.allow_private_redirects,
        )
        self.pulls = Pulls(
            self.store,
            manager,
            reserve_bytes=settings.download_reserve_bytes,
            allow_private=settings.allow_private_redirects,
        )
        self.status_sources.append(self.pulls.status)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        ensure_home(settings)
        roots = FileRoots(settings.home, settings.import_dirs)
        store = ModelStore(settings.models_dir, roots)
        store.sweep_trash()
        errors = ImportErrors(settings.logs_dir / "import-errors.json")
        importer = Importer(store, errors, allowed_roots=list(settings.import_dirs))
        importer.recover_staging()
        return cls(settings=settings, store=store, importer=importer)

    async def start(self) -> None:
        """Background work of a serving process: the drop-in watcher (and its start-up scan).

        First, engines a killed Hearth left running are stopped (their process groups were
        recorded at launch; a live Hearth's are left alone)."""
        for record in await asyncio.to_thread(sweep_orphans, self.engines.registry_dir):
            log.warning(
                "stopped an engine left running by a Hearth that was killed: model %s, "
                "process group %s",
                record.model_id,
                record.pgid,
            )
        if self.settings.watch and self.watcher is None:
            self.watcher = ModelsWatcher(self.importer)
            await asyncio.to_thread(self.watcher.start)

    async def stop(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
            self.watcher = None
        await self.engines.shutdown()  # no engine process outlives the server
        await self.pulls.manager.aclose()  # unfinished pulls keep their .part for a resume
        self.pulls.close()

    def status_of(self, entry: ModelEntry) -> tuple[str, str | None]:
        """The live status: engines and downloads know more than the folder does."""
        if entry.info is not None:
            for source in self.status_sources:
                answer = source(entry)
                if answer is not None:
                    return answer
        return entry.status, entry.error

    def update_model(self, model_id: str, patch: dict[str, Any]) -> ModelEntry:
        """Edit model.json: refused (nothing written) unless the result could load, including
        an engine name that names a configured engine."""
        return self.store.update(model_id, patch, check=self.engines.check_engine)

    def model_json(self, entry: ModelEntry) -> dict[str, Any]:
        status, error = self.status_of(entry)
        return entry.to_api(status, error)

    def models_list_json(self) -> str:
        """The body of GET /v1/models, from a scan on the calling thread."""
        return self._list_body(self.store.list()).decode()

    def _list_body(self, entries: list[ModelEntry]) -> bytes:
        """The list as UTF-8 JSON from each entry's memoized JSON; the last body is reused when
        the scan found the very same entries with the same statuses (joining and encoding 5,000
        models costs ~10 ms, a fifth of a 5,000-folder list)."""
        statuses = [self.status_of(entry) for entry in entries]
        last = self._list_memo
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
        self._list_memo = (entries, statuses, body)
        return body

    async def models_list_body(self) -> bytes:
        """The body of GET /v1/models for a request on the event loop, which stays responsive.

        Concurrent requests share one scan that started after they arrived (never an older one,
        so a change on disk shows in the next list), and the scan pauses every few hundred
        folders so /health and other requests are answered in between.
        """
        if self._lists is None:
            self._lists = FreshRun(self._scan_list_body)
        return await self._lists.get()

    async def _scan_list_body(self) -> bytes:
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
        return self._list_body(entries)
