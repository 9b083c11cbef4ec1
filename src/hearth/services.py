"""The services one Hearth process runs, gathered in one object the server and CLI share.

Routes reach everything through `app.state.services`; nothing is a module-level global, so
tests can build as many independent instances as they like.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.config import Settings, ensure_home
from hearth.models.store import ModelEntry, ModelStore

log = logging.getLogger("hearth")

# A status source answers (status, error) for a model, or None to defer to the next one.
StatusSource = Callable[[ModelEntry], tuple[str, str | None] | None]


@dataclass
class Services:
    settings: Settings
    store: ModelStore
    status_sources: list[StatusSource] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        ensure_home(settings)
        store = ModelStore(settings.models_dir)
        store.sweep_trash()
        return cls(settings=settings, store=store)

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
