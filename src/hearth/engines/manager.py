"""The engine manager: which process serves a model, and the way a request gets to it.

It ties the pieces together: the store says what a model is, the model's engine kind
(engines/registry.py) says how to run it, the planner turns both into a `LoadRequest`
(parameters, fingerprint, memory), the scheduler decides what stays loaded, a `ReplicaSet` of
`EngineProcess`es runs it (one per replica) and picks a replica per request, and the proxy
carries requests there. The service layer calls only this class.

Each request crosses one seam: the model's kind opens the answer (`EngineKind.open`) and calls
back the side it belongs to, which this class is (`registry.Engines`): `open_local` plans,
leases, routes to a replica and sends over the lean client (engines/local.py); `open_remote`
takes the model's profile and sends over httpx (engines/remote.py). Neither side asks the
other's questions, and nothing here asks a target whether it is remote.

Failures show up where people look: a model whose engine failed to start or died is listed
with status "failed" and the reason (with the engine's last output) until it starts again,
which the next request does by itself. Remote (`openai-compatible`) models bypass the
scheduler: they use no local memory and no slot in `max_loaded_models`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hearth.core.config import Settings
from hearth.core.errors import Conflict, EngineError, InvalidParameter, InvalidRequest
from hearth.engines import registry
from hearth.engines.context import (
    Overflow,
    Refused,
    answer_room,
    exceeded,
    grown_sizes,
    needed,
    overflow_of,
)
from hearth.engines.local import LocalTarget
from hearth.engines.plan import Planner
from hearth.engines.process import EngineProcess
from hearth.engines.proxy import (
    GENERATION,
    LLAMA_DEFAULTS,
    OPENAI_DEFAULTS,
    Answer,
    prepare_body,
)
from hearth.engines.registry import EngineKind, LaunchSpec, LocalKind, RemoteKind
from hearth.engines.remote import RemoteHTTP, RemoteTarget
from hearth.engines.replicas import ReplicaSet
from hearth.engines.scheduler import Lease, LoadedInfo, LoadRequest, Scheduler
from hearth.engines.upstream import EngineClient
from hearth.models.facts import facts_off_loop
from hearth.models.limits import ENGINE_RANGES
from hearth.models.schema import DEFAULT_ENGINE, ModelInfo
from hearth.models.store import ModelEntry, ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    """A local request as it was sent: what a reload with a larger context sends again."""

    path: str
    body: dict[str, Any]
    route_by: dict[str, Any]
    content: bytes


class EngineManager:
    """Loads models on demand, proxies requests to them, and reports what runs."""

    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store
        self.planner = Planner(settings.engines_dir, settings.logs_dir)
        self.scheduler: Scheduler[ReplicaSet] = Scheduler(
            self._make_runner,
            max_loaded_models=settings.max_loaded_models,
            memory_budget_bytes=settings.memory_budget,
            default_keep_alive=settings.keep_alive,
        )
        #: The local engines' lean client and the remotes' httpx client (engines/upstream.py).
        self.client = EngineClient()
        self.http = RemoteHTTP()
        #: Live engines' process groups, so a Hearth killed with SIGKILL leaves none behind
        #: once it starts again (`sweep_orphans`).
        self.registry_dir = settings.logs_dir / "engines"
        self._failed: dict[str, tuple[str, str]] = {}  # id -> (reason, model.json digest)

    # ---- status -----------------------------------------------------------------------------

    def status(self, entry: ModelEntry) -> tuple[str, str | None] | None:
        """A status source for GET /v1/models: starting, running, or failed (with why)."""
        state = self.scheduler.state_of(entry.id)
        if state == "starting":
            return "starting", None
        if state is not None:
            return "running", None
        failed = self._failed.get(entry.id)
        if failed is not None and entry.status == "ready" and failed[1] == _raw_digest(entry):
            return "failed", failed[0]
        return None

    def _fail(self, entry: ModelEntry, reason: str) -> None:
        self._failed[entry.id] = (reason, _raw_digest(entry))

    # ---- the runner factory and its callbacks ---------------------------------------------

    def _make_runner(self, req: LoadRequest) -> ReplicaSet:
        spec: LaunchSpec = req.payload
        kind = registry.local_kind(spec.kind)
        if kind is None:
            raise EngineError(f"The engine kind {spec.kind!r} is no longer installed.")
        return ReplicaSet(kind, spec, make_process=self._make_process, on_death=self._died)

    def _make_process(
        self, spec: LaunchSpec, index: int, on_exit: Callable[[EngineProcess], None]
    ) -> EngineProcess:
        """One replica's process: replica 0 logs to <id>.log, replica k to <id>.k.log."""
        log_path = spec.log_path
        if index:
            log_path = log_path.with_name(f"{spec.model_id}.{index}.log")
        self.planner.rotate_log(log_path)
        kind = registry.local_kind(spec.kind)
        assert kind is not None
        return EngineProcess(
            kind, spec, log_path=log_path, registry_dir=self.registry_dir, on_exit=on_exit
        )

    def _died(self, runner: ReplicaSet) -> None:
        """Forget a dead model (once), so it reads failed and the next request restarts it."""
        model_id = runner.alias
        if self.scheduler.runner_for(model_id) is not runner:
            return  # already handled, or an older instance
        reason = runner.death_reason()
        with contextlib.suppress(Exception):
            self._fail(self.store.get(model_id), reason)
        self.scheduler.mark_failed(model_id, reason)

    # ---- resolving a model ----------------------------------------------------------------

    def check_engine(self, info: ModelInfo) -> None:
        """For edits: a remote model must name an engine that is configured."""
        if info.is_remote and not self.planner.remote_configured(info.engine):
            raise InvalidParameter(
                f"'engine' is {info.engine!r}, which is not configured. For a server that speaks "
                f"OpenAI's API, first create engines/{info.engine}/engine.json in your Hearth "
                'home with {"type": "openai-compatible", "base_url": "https://host/v1", '
                '"api_key_env": "ENV_VAR"}; built in: openai, groq, mistral, openrouter. For a '
                'local GGUF use "llama-cpp".',
                param="engine",
                code="unknown_engine",
            )

    def _usable(self, model_id: str) -> ModelEntry:
        entry = self.store.get(model_id)
        if entry.info is None:
            raise InvalidRequest(
                f"Model '{entry.id}' cannot run: {entry.error}", param="model", code="model_invalid"
            )
        if entry.info.is_remote:
            return entry
        if entry.status == "downloading":
            raise Conflict(
                f"Model '{entry.id}' is still downloading; try again when GET /v1/models/"
                f'{entry.id} says "ready".',
                code="model_not_ready",
            )
        if entry.status != "ready" or entry.model_path is None:
            names = ", ".join(entry.missing) or "a .gguf file"
            raise Conflict(
                f"Model '{entry.id}' has no model file yet (missing: {names}). Download it into "
                f"models/{entry.folder.name}/ (its model.json 'sources' say from where), or "
                "import one with `hearth models import FILE`.",
                code="model_not_ready",
            )
        if entry.info.format == "ggml":
            raise InvalidRequest(
                f"Model '{entry.id}' is in the legacy GGML format, which llama.cpp no longer "
                "runs. Convert it with llama.cpp's convert_llama_ggml_to_gguf.py, or download a "
                "GGUF build of the model.",
                param="model",
                code="unsupported_format",
            )
        return entry

    @staticmethod
    def _kind(entry: ModelEntry) -> EngineKind:
        """The kind that answers for a usable model: its local kind, or its remote kind (a
        model.json with `"format": "api"` or an engine no local kind is named is remote)."""
        info = entry.info
        assert info is not None
        if info.is_remote:
            return registry.remote_kind(info.engine)
        kind = registry.local_kind(info.engine)
        assert kind is not None  # is_remote says otherwise
        return kind

    def _plan(self, entry: ModelEntry, overrides: Mapping[str, Any] | None = None) -> LoadRequest:
        """Plan a load. Without overrides, a loaded instance whose files have not changed since
        is reused as it is (with any overrides it was started with)."""
        assert entry.info is not None
        if entry.info.engine == DEFAULT_ENGINE:
            self.planner.ensure_engine_json(DEFAULT_ENGINE)
        try:
            fresh = self.planner.plan(entry)
        except InvalidParameter as exc:
            self._fail(entry, exc.message)
            raise
        if overrides:
            planned = self.planner.plan(entry, dict(overrides))
            self._check_files(entry, planned)
            return planned
        loaded = self.scheduler.loaded_request(entry.id)
        if loaded is not None and loaded.payload.config_key == fresh.payload.config_key:
            return loaded
        if loaded is None:
            self._check_files(entry, fresh)  # about to launch: look at the files once more
        return fresh

    def _check_files(self, entry: ModelEntry, req: LoadRequest) -> None:
        """Right before a launch, every file the engine will open must still resolve where the
        model may keep files: a symlink can change after the folder was read, and a start
        request may name another projector. engine.json's own `mmproj` is the user's choice."""
        params = req.payload.params
        mmproj = params.get("mmproj")
        assert entry.info is not None
        trusted = self.planner.engine_layer_value(entry.info.engine, "mmproj")
        extra = [mmproj] if isinstance(mmproj, str) and mmproj != trusted else []
        try:
            self.store.check_launch(entry, extra)
        except InvalidRequest as exc:
            self._fail(entry, exc.message)
            raise

    async def _load(self, entry: ModelEntry, req: LoadRequest, *, lease: bool) -> Any:
        try:
            loaded: Any = (
                await self.scheduler.acquire(req) if lease else await self.scheduler.load(req)
            )
        except EngineError as exc:
            self._fail(entry, exc.message)
            raise
        self._failed.pop(entry.id, None)
        return loaded

    # ---- requests -------------------------------------------------------------------------

    async def open(
        self,
        path: str,
        body: dict[str, Any],
        keep_alive: float | None,
        *,
        route_by: dict[str, Any] | None = None,
    ) -> Answer:
        """Send one OpenAI-style request (`path` like "chat/completions") to its model, loading
        it first if needed. The returned answer holds the model until it is consumed.

        `route_by`: the body a replica is chosen by, when it is not `body` itself: a request
        Hearth composes from a chat (a forced tool call's completion) goes where the chat's
        earlier turns are cached (`engines/replicas.py`)."""
        entry = await asyncio.to_thread(self._usable, str(body["model"]))  # reads its folder
        match self._kind(entry):
            case LocalKind() as kind:
                routed = body if route_by is None else route_by
                return await self._open_local(kind, entry, path, body, keep_alive, routed)
            case RemoteKind():
                return await self._open_remote(entry, path, body)
        raise AssertionError("the registry holds only local and remote kinds")

    async def _open_remote(self, entry: ModelEntry, path: str, body: dict[str, Any]) -> Answer:
        """A remote kind's answer: the model's profile, over httpx."""
        assert entry.info is not None
        engine = self.planner.profile(entry)
        target = RemoteTarget(engine, self.http)
        content = prepare_body(
            body,
            path=path,
            model_parameters=entry.info.model_parameters,
            defaults=OPENAI_DEFAULTS,
            rewrite=engine.rewrite_body,
        )
        return await target.send(path, content)

    async def _open_local(
        self,
        kind: LocalKind,
        entry: ModelEntry,
        path: str,
        body: dict[str, Any],
        keep_alive: float | None,
        route_by: dict[str, Any],
    ) -> Answer:
        """A local kind's answer: plan, lease, a replica, and the lean client."""
        assert entry.info is not None
        req = self._plan(entry)
        spec: LaunchSpec = req.payload
        kind.check_request(spec, path)
        if keep_alive is not None:
            req = replace(req, keep_alive=keep_alive)
        if path in GENERATION and body.get("stream") is True:
            body.setdefault("return_progress", True)  # keep-alives, progress (server/respond)
        content = prepare_body(
            body, path=path, model_parameters=entry.info.model_parameters, defaults=LLAMA_DEFAULTS
        )
        answer = await self._send_local(entry, req, path, route_by, content)
        if answer.status_code != 400 or path not in GENERATION:
            return answer
        refusal = await answer.read()  # an error: small, and reading it frees the lease
        sent = Sent(path, body, route_by, content)
        return await self._refit(entry, req, sent, refusal, keep_alive)

    async def _refit(
        self,
        entry: ModelEntry,
        req: LoadRequest,
        sent: Sent,
        refusal: bytes,
        keep_alive: float | None,
    ) -> Answer:
        """After the engine's 400: a request too long for the loaded context is sent once more
        to the model reloaded with a larger one (`_grown`); any other refusal is handed on."""
        overflow = overflow_of(refusal)
        if overflow is None:
            return Refused(400, refusal)
        room = answer_room(sent.body)
        grown = await self._grown(entry, req, overflow, room, keep_alive)
        answer = await self._send_local(entry, grown, sent.path, sent.route_by, sent.content)
        if answer.status_code != 400:
            return answer
        refusal = await answer.read()  # once only: a second refusal is the client's
        overflow = overflow_of(refusal)
        if overflow is not None:
            raise exceeded(entry.id, overflow, room=room)
        return Refused(400, refusal)

    async def _send_local(
        self,
        entry: ModelEntry,
        req: LoadRequest,
        path: str,
        route_by: dict[str, Any],
        content: bytes,
    ) -> Answer:
        """Lease the model as `req` plans it (loading it if needed), pick the replica `route_by`
        belongs on, send."""
        lease: Lease[ReplicaSet] = await self._load(entry, req, lease=True)
        try:
            replica, process = await lease.runner.route(route_by)
        except BaseException:
            lease.release()
            raise
        target = LocalTarget(lease, replica, process, self.client)
        try:
            return await target.send(path, content)
        except BaseException:
            target.release()
            raise

    async def _grown(
        self,
        entry: ModelEntry,
        req: LoadRequest,
        overflow: Overflow,
        room: int | None,
        keep_alive: float | None,
    ) -> LoadRequest:
        """The load that fits a request too long for `req`'s context, or ContextExceeded
        naming the size it needs and why no reload helps (the setting is off, the context was
        asked for explicitly, over the trained context or the memory budget)."""
        spec: LaunchSpec = req.payload
        trained = (await facts_off_loop(entry)).context_length  # a GGUF's (stranger's) number
        if trained is not None:
            trained = min(trained, int(ENGINE_RANGES["ctx_len"][1]))  # what ctx_len may be
        prompt = overflow.prompt_tokens
        if prompt is None:
            raise exceeded(entry.id, overflow, room=room, trained=trained)
        need = needed(prompt, room)
        current = self.scheduler.loaded_request(entry.id)  # grown meanwhile by another request?
        if (
            current is not None
            and current is not req
            and current.payload.config_key == spec.config_key
            and int(current.payload.params.get("ctx_len", 0)) >= need
        ):
            return current
        why = self._no_growth(spec, trained)
        if why or trained is None or prompt + (room or 1) > trained:
            raise exceeded(entry.id, overflow, room=room, trained=trained, why=why)
        budget = self.scheduler.memory_budget_bytes
        tried: list[tuple[int, int]] = []
        for size in grown_sizes(need, trained):
            grown = await asyncio.to_thread(self.planner.with_context, entry, req, size, keep_alive)
            if grown.memory_bytes <= budget:
                log.info(
                    "model %s: reloading with a context of %d tokens (was %s): a request needs "
                    "%d (its prompt is %d tokens)", entry.id, size, overflow.n_ctx, need, prompt,
                )  # fmt: skip
                return grown
            tried.append((size, grown.memory_bytes))
        size, memory = tried[-1]
        why = f" (a context of {size:,} needs an estimated {memory / 2**30:.1f} GiB, over the "
        why += f"memory budget of {budget / 2**30:.1f} GiB: the `memory_budget` setting)"
        raise exceeded(entry.id, overflow, room=room, trained=trained, why=why)

    def _no_growth(self, spec: LaunchSpec, trained: int | None) -> str:
        """Why a too-long request may not grow this engine's context ("" when it may)."""
        if not self.settings.grow_context:
            return " (automatic context growth is off: the `grow_context` setting)"
        if spec.context_fixed:
            return (
                f" (it was started with ctx_len {spec.params.get('ctx_len')} by a start request "
                "or Ollama's num_ctx, which Hearth never grows)"
            )
        if trained is None:
            return " (its GGUF does not say its trained context, so Hearth does not grow it)"
        return ""

    # ---- explicit control -----------------------------------------------------------------

    async def start(
        self,
        model_id: str,
        overrides: Mapping[str, Any] | None = None,
        keep_alive: float | None = None,
    ) -> dict[str, Any]:
        """Load a model now (engine parameter overrides apply to this load) and describe it."""
        entry = await asyncio.to_thread(self._usable, model_id)  # reads its folder
        match self._kind(entry):
            case LocalKind():
                return await self._start_local(entry, overrides, keep_alive)
            case RemoteKind():
                return await self._start_remote(entry)
        raise AssertionError("the registry holds only local and remote kinds")

    async def _start_remote(self, entry: ModelEntry) -> dict[str, Any]:
        """A remote model "starts" once its upstream answers at all."""
        assert entry.info is not None
        engine = self.planner.profile(entry)
        await engine.check_reachable()
        return {"id": entry.id, "object": "running_model", "status": "running",
                "engine": entry.info.engine, "base_url": engine.base_url}  # fmt: skip

    async def _start_local(
        self,
        entry: ModelEntry,
        overrides: Mapping[str, Any] | None,
        keep_alive: float | None,
    ) -> dict[str, Any]:
        req = self._plan(entry, overrides)
        if keep_alive is not None:
            req = replace(req, keep_alive=keep_alive)
        info: LoadedInfo[ReplicaSet] = await self._load(entry, req, lease=False)
        return running_json(info)

    async def stop(self, model_id: str, *, force: bool = False) -> bool:
        """Unload a model (in-flight requests finish first unless `force`); False if it was
        not loaded. A model still starting is cancelled: there is nothing to finish."""
        entry = await asyncio.to_thread(self.store.get, model_id)  # reads its folder
        self._failed.pop(entry.id, None)
        force = force or self.scheduler.state_of(entry.id) == "starting"
        return await self.scheduler.unload(entry.id, force=force)

    def running(self) -> list[dict[str, Any]]:
        return [running_json(info) for info in self.scheduler.snapshot()]

    async def shutdown(self) -> None:
        """Stop every engine and close the connection pools (the server is exiting)."""
        await self.scheduler.shutdown()
        self.client.close()
        await self.http.aclose()


def running_json(info: LoadedInfo[ReplicaSet]) -> dict[str, Any]:
    """One loaded model as GET /v1/running shows it (pid and port: its first replica's)."""
    runner = info.runner
    return {
        "id": info.model_id,
        "object": "running_model",
        "status": info.state,
        "engine": runner.spec.kind,
        "pid": runner.pid,
        "port": runner.port,
        "memory": runner.rss_bytes(),
        "memory_estimate": info.memory_bytes,
        "since": info.loaded_at,
        "load_seconds": runner.load_seconds,
        "requests_served": info.requests_served,
        "active_requests": info.refcount,
        "keep_alive": info.keep_alive,
        "expires_at": info.expires_at,
        "engine_parameters": runner.spec.params,
        "log": str(runner.log_path) if runner.log_path else None,
        "replica_routing": runner.spec.routing,
        "replicas": runner.replicas_json(),
    }


def _raw_digest(entry: ModelEntry) -> str:
    return json.dumps(entry.raw, sort_keys=True, default=str)
