"""The one service layer: everything a face (HTTP route, CLI command) may do to a Hearth home.

Routes and commands are thin translations into these methods, so each operation has one
implementation: deleting a model stops its engine first whether the DELETE came over HTTP or
from `hearth models rm` on a home with no server; a pull from the CLI does the same start-up
work (`Services.create`) as `hearth serve`. Answers are the API's JSON objects, which both faces
show. Nothing here is a module-level global, so tests build as many instances as they like.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.core.config import Settings, ensure_home
from hearth.core.errors import InvalidRequest
from hearth.core.keepalive import keep_alive_param
from hearth.models.import_errors import ImportErrors
from hearth.models.importer import Importer, Progress
from hearth.models.links import FileRoots
from hearth.models.store import ModelEntry, ModelStore
from hearth.services.listing import ModelLists

if TYPE_CHECKING:
    from hearth.downloads.jobs import Job
    from hearth.downloads.pulls import Pulls
    from hearth.engines.manager import EngineManager
    from hearth.engines.proxy import Answer
    from hearth.models.watcher import ModelsWatcher
    from hearth.services.assistants import AssistantService
    from hearth.services.derive import ModelChanges
    from hearth.services.mcp import McpService
    from hearth.services.threads import ThreadService

log = logging.getLogger("hearth")

# A status source answers (status, error) for a model, or None to defer to the next one.
StatusSource = Callable[[ModelEntry], tuple[str, str | None] | None]


@dataclass
class Services:
    """The engines and the downloader are built on first use (and their modules imported
    then): `hearth models list` with no server reads the folder without loading httpx, the
    download stack or the engine manager, and a process that never loaded or pulled anything
    has no status to add to the folder's."""

    settings: Settings
    store: ModelStore
    importer: Importer
    status_sources: list[StatusSource] = field(default_factory=list)
    watcher: ModelsWatcher | None = None
    lists: ModelLists = field(init=False, repr=False)
    _engines: EngineManager | None = field(default=None, init=False, repr=False)
    _pulls: Pulls | None = field(default=None, init=False, repr=False)
    _threads: ThreadService | None = field(default=None, init=False, repr=False)
    _assistants: AssistantService | None = field(default=None, init=False, repr=False)
    _mcp: McpService | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.lists = ModelLists(self.store, self.status_of)

    @property
    def engines(self) -> EngineManager:
        if self._engines is None:
            from hearth.engines.manager import EngineManager

            self._engines = EngineManager(self.settings, self.store)
            self.status_sources.append(self._engines.status)
        return self._engines

    @property
    def pulls(self) -> Pulls:
        if self._pulls is None:
            from hearth.downloads.jobs import DownloadManager
            from hearth.downloads.pulls import Pulls

            settings = self.settings
            manager = DownloadManager(
                reserve_bytes=settings.download_reserve_bytes,
                max_bytes=settings.max_download_bytes,
                allow_private=settings.allow_private_redirects,
            )
            self._pulls = Pulls(
                self.store,
                manager,
                reserve_bytes=settings.download_reserve_bytes,
                allow_private=settings.allow_private_redirects,
                ollama_registry=settings.ollama_registry,
                max_bytes=settings.max_download_bytes,
            )
            self.status_sources.append(self._pulls.status)
        return self._pulls

    @property
    def threads(self) -> ThreadService:
        """Conversations in <home>/threads (Jan's layout), built on first use."""
        if self._threads is None:
            from hearth.services.thread_tools import ThreadTools
            from hearth.services.threads import ThreadService
            from hearth.threads.store import ThreadStore

            store = ThreadStore(self.settings.threads_dir)
            self._threads = ThreadService(
                store,
                self.open_inference,
                self.store.get,
                self.settings.context_overflow,
                self.assistants.for_thread,
                ThreadTools(
                    lambda: self.mcp, self.settings.state_dir, self.settings.mcp_max_rounds
                ),
            )
        return self._threads

    @property
    def assistants(self) -> AssistantService:
        """Assistants in <home>/assistants (Jan's layout), built on first use."""
        if self._assistants is None:
            from hearth.services.assistants import AssistantService
            from hearth.threads.assistants import AssistantStore

            self._assistants = AssistantService(AssistantStore(self.settings.assistants_dir))
        return self._assistants

    @property
    def mcp(self) -> McpService:
        """The user's MCP servers (mcp.json, Jan's mcp_config.json), read on first use; the
        `mcp` SDK is imported then, so a process that never uses a tool never loads it."""
        if self._mcp is None:
            from hearth.services.mcp import McpService

            self._mcp = McpService(self.settings)
        return self._mcp

    @classmethod
    def create(cls, settings: Settings) -> Services:
        """The start-up work every process that works on a home does first: create what is
        missing, finish deletes and imports a crash interrupted."""
        from hearth.engines.rules import RULES  # what the engine kinds say about model.json

        ensure_home(settings)
        roots = FileRoots(settings.state_dir, settings.import_dirs)
        store = ModelStore(settings.models_dir, roots, RULES, settings.jan_models_dir)
        store.sweep_trash()
        errors = ImportErrors(settings.logs_dir / "import-errors.json")
        importer = Importer(store, errors, allowed_roots=list(settings.import_dirs))
        importer.recover_staging()
        return cls(settings=settings, store=store, importer=importer)

    async def start(self) -> None:
        """Background work of a serving process: the drop-in watcher (and its start-up scan).

        First, engines a killed Hearth left running are stopped (their process groups were
        recorded at launch; a live Hearth's are left alone)."""
        from hearth.engines.orphans import sweep_orphans
        from hearth.models.watcher import ModelsWatcher

        for record in await asyncio.to_thread(sweep_orphans, self.engines.registry_dir):
            log.warning(
                "stopped an engine left running by a Hearth that was killed: model %s, "
                "process group %s",
                record.model_id,
                record.pgid,
            )
        # answers a killed server left `pending` become `error`, keeping their text
        await asyncio.to_thread(lambda: self.threads.start_recovery())
        if self.settings.watch and self.settings.jan:
            # models/ in a Jan folder is Jan's older tree (Cortex files, paths other models.yml
            # may point at): a file there is Jan's to keep, never one to move into a folder.
            log.info("drop-in import is off in a Jan data folder (its models/ is Jan's own)")
        elif self.settings.watch and self.watcher is None:
            self.watcher = ModelsWatcher(self.importer)
            await asyncio.to_thread(self.watcher.start)

    async def stop(self) -> None:
        """Stop everything this instance runs: no engine process outlives it, and unfinished
        pulls keep their `.part` for a resume."""
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
            self.watcher = None
        if self._mcp is not None:
            await self._mcp.aclose()  # no MCP server's process outlives Hearth
        if self._engines is not None:
            await self._engines.shutdown()
        if self._pulls is not None:
            await self._pulls.manager.aclose()
            self._pulls.close()

    # ---- models: list, get, edit, delete ---------------------------------------------------

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

    def list_models(self) -> list[dict[str, Any]]:
        """Every model folder, broken ones included (status "invalid" and an error)."""
        return [self.model_json(entry) for entry in self.store.list()]

    async def models_list_body(self) -> bytes:
        """GET /v1/models's body, from a scan that keeps the event loop responsive and is
        shared by concurrent requests (see `listing.py`)."""
        return await self.lists.shared_body()

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self.model_json(self.store.get(model_id))

    def update_model(self, model_id: str, patch: Any) -> dict[str, Any]:
        """Merge `patch` into model.json (RFC 7396: objects merge, null removes a field):
        refused, with nothing written, unless the result could load, including an engine
        name that names a configured engine."""
        if not isinstance(patch, dict):
            raise InvalidRequest("The body must be a JSON object of model.json fields.")
        entry = self.store.update(model_id, patch, check=self.engines.check_engine)
        return self.model_json(entry)

    async def delete_model(self, model_id: str) -> dict[str, Any]:
        """Stop the model's engine (failing its in-flight requests), then delete its folder. A
        file imported by reference, or a folder that is a symlink, is never deleted."""
        entry = await asyncio.to_thread(self.store.get, model_id)  # reads the folder
        await self.engines.stop(entry.id, force=True)
        await asyncio.to_thread(self.store.delete, entry.id)
        return {"id": entry.id, "object": "model", "deleted": True}

    # ---- engines: start, stop, running ------------------------------------------------------

    async def start_model(self, model_id: str, body: Any = None) -> dict[str, Any]:
        """Load a model now, answering once it serves. `body`: engine parameters for this load
        over engine.json and model.json, and `keep_alive`; None uses the model's own."""
        if body is not None and not isinstance(body, dict):
            raise InvalidRequest(
                'The body must be a JSON object of engine parameters, like {"ctx_len": 4096}.'
            )
        params = dict(body or {})
        raw = params.pop("keep_alive", None)
        keep_alive = None if raw is None else keep_alive_param(raw)
        return await self.engines.start(model_id, params, keep_alive)

    async def stop_model(self, model_id: str, *, force: bool = False) -> dict[str, Any]:
        """Unload a model: in-flight requests finish first unless `force`. `stopped` is False
        when it was not loaded."""
        stopped = await self.engines.stop(model_id, force=force)
        entry = await asyncio.to_thread(self.store.get, model_id)  # reads the folder
        status, _ = self.status_of(entry)
        return {"id": entry.id, "object": "model", "stopped": stopped, "status": status}

    async def open_inference(
        self, path: str, body: dict[str, Any], keep_alive: float | None
    ) -> Answer:
        """An OpenAI inference request (`path` such as "chat/completions") sent to the model's
        engine, loading it on demand. A plain request's answer streams back untouched (the hot
        path); forced tool calls, `n` and legacy completions are composed (`inference.py`)."""
        from hearth.services.inference import Inference

        return await Inference(self.store, self.engines).open(path, body, keep_alive)

    def running(self) -> list[dict[str, Any]]:
        """Loaded models, most recently used first."""
        return self.engines.running()

    # ---- models made from others: copy, create (Ollama's /api/copy, /api/create; hearth cp) --

    async def copy_model(
        self, source_id: str, new_id: str, changes: ModelChanges | None = None
    ) -> dict[str, Any]:
        """A new model sharing the source's files (hard links); Conflict if new_id exists."""
        from hearth.services.derive import copy_model

        return await copy_model(self, source_id, new_id, changes)

    async def create_model_from_file(
        self, path: Path, new_id: str, changes: ModelChanges | None = None
    ) -> dict[str, Any]:
        """Import a GGUF (from the home or import_dirs only: a request names it) as new_id,
        then apply `changes`."""
        from hearth.services.derive import create_from_file

        return await create_from_file(self, path, new_id, changes)

    # ---- files in: pull, download, import ---------------------------------------------------

    async def pull(self, source: str, model_id: str | None = None) -> tuple[str, Job | None]:
        """Start fetching a URL, a Hugging Face reference, an Ollama name (`llama3.2`,
        `qwen2.5:0.5b`, `ollama.com/OWNER/NAME:TAG`) or an existing model's sources: the model
        it goes to, and its job (None when every file is already there)."""
        return await self.pulls.pull_model(source, model_id)

    def download(self, model_id: str) -> Job | None:
        """Fetch the missing files of a model from its `sources` (resuming any `.part`)."""
        return self.pulls.download_model(model_id)

    def downloads(self) -> list[dict[str, Any]]:
        """Every download job of this run: progress, speed, ETA, state, error."""
        return [job.to_dict() for job in self.pulls.manager.list()]

    def get_download(self, job_id: str) -> dict[str, Any]:
        return self.pulls.manager.get(job_id).to_dict()

    async def download_progress(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """A job's snapshots as it moves, until it ends (the last one is its final state)."""
        async for snap in self.pulls.manager.subscribe(job_id):
            yield snap.to_dict()

    async def cancel_download(self, job_id: str) -> dict[str, Any]:
        """Cancel a job and answer its final state; its `.part` files stay, so pulling the
        model again resumes."""
        job = self.pulls.manager.cancel(job_id)
        return (await job.wait()).to_dict()

    def import_model(
        self,
        path: Path,
        *,
        model_id: str | None = None,
        mode: str = "copy",
        progress: Progress | None = None,
        check_allowed: bool = False,
    ) -> dict[str, Any]:
        """Import a model file (copy, move or link). `check_allowed`: only from the home or an
        `import_dirs` folder, for callers who do not own the machine's files (the API)."""
        entry = self.importer.import_path(
            path, model_id=model_id, mode=mode, progress=progress, check_allowed=check_allowed
        )
        return self.model_json(entry)

    def import_errors(self) -> list[dict[str, Any]]:
        """Files in models/ that were not imported, and why (or which split part is awaited)."""
        return self.importer.errors.list()
