"""The services one Hearth process runs, gathered in one object the server and CLI share.

Routes reach everything through `app.state.services`; nothing is a module-level global, so
tests can build as many independent instances as they like.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.config import Settings, ensure_home
from hearth.downloads.pulls import Pulls
from hearth.engines.manager import EngineManager
from hearth.models.import_errors import ImportErrors
from hearth.models.importer import Importer
from hearth.models.store import ModelEntry, ModelStore
from hearth.models.watcher import ModelsWatcher

log = logging.getLogger("hearth")

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

    def __post_init__(self) -> None:
        self.engines = EngineManager(self.settings, self.store)
        self.status_sources.append(self.engines.status)
        self.pulls = Pulls(self.store)
        self.status_sources.append(self.pulls.status)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        ensure_home(settings)
        store = ModelStore(settings.models_dir)
        store.sweep_trash()
        errors = ImportErrors(settings.logs_dir / "import-errors.json")
        importer = Importer(store, errors, allowed_roots=list(settings.import_dirs))
        importer.recover_staging()
        return cls(settings=settings, store=store, importer=importer)

    async def start(self) -> None:
        """Background work of a serving process: the drop-in watcher (and its start-up scan)."""
        if self.settings.watch and self.watcher is None:
            self.watcher = ModelsWatcher(self.importer)
            await asyncio.to_thread(self.watcher.start)

    async def stop(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
            self.watcher = None
        await self.engines.shutdown()  # no engine process outlives the server
        await self.pulls.manager.aclose()  # unfinished pulls keep their .part for a resume

    def status_of(self, entry: ModelEntry) -> tuple[str, str | None]:
        """The live status: engines and downloads know more than the folder does."""
        if entry.info is not None:
            for source in self.status_sources:
                answer = source(entry)
                if answer is not None:
                    return answer
        return entry.status, entry.error

    def model_json(self, entry: ModelEntry) -> dict[str, Any]:
        status, error = self.status_of(entry)
        return entry.to_api(status, error)

    def models_list_json(self) -> str:
        """The body of GET /v1/models, built from each entry's memoized JSON."""
        parts = [entry.to_api_json(*self.status_of(entry)) for entry in self.store.list()]
        return '{"object":"list","data":[' + ",".join(parts) + "]}"
