"""Decides which models are loaded: refcounts, keep-alive timers, LRU eviction, a memory budget.

Modelled on Ollama's server/sched.go. Each loaded model is one `Runner` (a set of engine
processes in production, a fake in tests) made by an injected `runner_factory`, so this
module is pure asyncio scheduling logic: it knows no engine, and a model's memory estimate
comes with its `LoadRequest`.

Concurrency model: every state transition is a synchronous section between two `await`s, which
asyncio's single-threaded loop makes atomic, so no check-then-act race is possible. Waiters block
on a "something changed" event that is replaced on every transition (a lock-free condition
variable). Runner starts and stops run in their own tasks, outside any critical section, so one
slow load never blocks acquiring an already-loaded model. Call every method from the event loop's
thread (from other threads use `loop.call_soon_threadsafe`, e.g. for `mark_failed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Literal, Protocol, TypeVar

import psutil

from hearth.core.errors import EngineError, HearthError, Unavailable

log = logging.getLogger(__name__)

State = Literal["starting", "running", "stopping"]


class Runner(Protocol):
    """What the scheduler needs from a loaded model: start it, stop it, ask whether it lives."""

    @property
    def alive(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


#: The concrete runner type (engines.replicas.ReplicaSet), so `lease.runner.route` type-checks.
R = TypeVar("R", bound=Runner)


@dataclass(frozen=True)
class LoadRequest:
    """Everything needed to decide about, and to start, one model.

    keep_alive: seconds to stay loaded after the last release; None = the scheduler default,
    0 = unload right after use, negative = never unload. The latest request's value wins.
    fingerprint: hash of the engine parameters; a running model with a different fingerprint
    is restarted once idle. payload: opaque, for the runner factory.
    """

    model_id: str
    memory_bytes: int
    keep_alive: float | None = None
    fingerprint: str = ""
    payload: Any = None


@dataclass(frozen=True)
class LoadedInfo(Generic[R]):
    """A point-in-time view of one loaded model, for status endpoints. Times are wall-clock."""

    model_id: str
    state: State
    refcount: int
    requests_served: int
    loaded_at: float | None
    last_used: float
    keep_alive: float
    expires_at: float | None
    memory_bytes: int
    fingerprint: str
    draining: bool
    runner: R


@dataclass(eq=False)
class _Entry(Generic[R]):
    req: LoadRequest
    runner: R
    keep_alive: float
    state: State = "starting"
    refcount: int = 0
    requests_served: int = 0
    loaded_at: float | None = None
    last_used: float = field(default_factory=time.time)
    lru: float = field(default_factory=time.monotonic)
    expires_at: float | None = None
    draining: bool = False
    timer: asyncio.TimerHandle | None = None
    start_task: asyncio.Task[None] | None = None
    abort_reason: str | None = None
    ready: asyncio.Future[None] = field(default_factory=asyncio.Future)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def model_id(self) -> str:
        return self.req.model_id

    @property
    def memory_bytes(self) -> int:
        return self.req.memory_bytes

    @property
    def fingerprint(self) -> str:
        return self.req.fingerprint


class Lease(Generic[R]):
    """Proof that a request is using a loaded model; the model is never evicted while held.

    Release exactly once (extra calls are ignored), or use `async with lease:`.
    """

    def __init__(self, scheduler: Scheduler[R], entry: _Entry[R]) -> None:
        self._scheduler = scheduler
        self._entry = entry
        self.released = False

    @property
    def model_id(self) -> str:
        return self._entry.model_id

    @property
    def runner(self) -> R:
        return self._entry.runner

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._scheduler._release(self._entry)

    async def __aenter__(self) -> Lease[R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Scheduler(Generic[R]):
    """Owns the loaded models. See the module docstring for the concurrency model.

    memory_budget_bytes: None = `memory_available()` (psutil available RAM) measured once, here.
    queue_timeout: how long an acquire may wait for busy models to free room (→ Unavailable).
    """

    def __init__(
        self,
        runner_factory: Callable[[LoadRequest], R],
        *,
        max_loaded_models: int = 3,
        memory_budget_bytes: int | None = None,
        memory_available: Callable[[], int] | None = None,
        default_keep_alive: float = 300.0,
        queue_timeout: float = 120.0,
    ) -> None:
        if max_loaded_models < 1:
            raise ValueError("max_loaded_models must be at least 1")
        self._factory = runner_factory
        self.max_loaded_models = max_loaded_models
        avail = memory_available or (lambda: int(psutil.virtual_memory().available))
        self.memory_budget_bytes = (
            memory_budget_bytes if memory_budget_bytes is not None else avail()
        )
        self.default_keep_alive = default_keep_alive
        self.queue_timeout = queue_timeout
        self._entries: dict[str, _Entry[R]] = {}
        self._last_error: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._closed = False

    # ---- public API -------------------------------------------------------------------------

    async def acquire(self, req: LoadRequest, *, timeout: float | None = None) -> Lease[R]:
        """Return a lease on a running `req.model_id`, starting it (and evicting idle LRU models)
        if needed. Raises Unavailable if it can never fit or room does not free up in time
        (`timeout`, default `queue_timeout`), EngineError if the start fails."""
        return await self._acquire(req, timeout, count=True)

    async def _acquire(self, req: LoadRequest, timeout: float | None, *, count: bool) -> Lease[R]:
        """acquire() and load(); `count` says whether this is a request (requests_served)."""
        budget = self.memory_budget_bytes
        if req.memory_bytes > budget:  # checked before anything is started or stopped
            raise Unavailable(
                f"Model '{req.model_id}' needs an estimated {_gib(req.memory_bytes)} but the "
                f"memory budget is {_gib(budget)}. Use a smaller quantization or a smaller "
                "ctx_len, or raise the budget with the `memory_budget` setting.",
                param="model",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.queue_timeout if timeout is None else timeout)
        while True:
            if self._closed:
                raise Unavailable("The server is shutting down; try again once it is back.")
            entry = self._entries.get(req.model_id)
            bounded = True  # waiting on other requests' leases is bounded; on a stop is not
            waiting_for = "all loaded models are busy"
            if entry is None:
                room = self._make_room(req)
                if room == "fits":
                    entry = self._new_entry(req)
                    return await self._join_start(entry, req, count)
                bounded = room == "busy"
            elif entry.state == "running" and not entry.runner.alive:
                self.mark_failed(req.model_id, "the engine process exited unexpectedly")
                continue
            elif entry.state == "stopping":
                bounded = False
            elif entry.draining:
                waiting_for = f"model '{req.model_id}' is being unloaded once its requests finish"
            elif entry.fingerprint != req.fingerprint:
                waiting_for = f"model '{req.model_id}' is busy with different settings"
                if entry.state == "running" and entry.refcount == 0:
                    self._begin_stop(entry)
                    bounded = False
            elif entry.state == "starting":
                return await self._join_start(entry, req, count)
            else:
                return self._grant(entry, req, count)
            await self._wait_for_change(deadline if bounded else None, waiting_for)

    async def load(self, req: LoadRequest, *, timeout: float | None = None) -> LoadedInfo[R]:
        """Load without holding it (explicit start); the keep-alive timer is armed at once."""
        lease = await self._acquire(req, timeout, count=False)
        lease.release()  # first, so the info shows the armed keep-alive and no holder
        return self._info(lease._entry)

    async def unload(self, model_id: str, *, force: bool = False) -> bool:
        """Stop a model and wait until it is stopped; False if it was not loaded.

        Busy models drain by default: new acquires wait, and it stops when the last lease is
        released (so in-flight requests finish). force=True stops it now; their leases become
        no-ops and their requests fail at the engine. A model still starting is cancelled if
        forced, otherwise stopped right after its start completes and its holders release.
        """
        entry = self._entries.get(model_id)
        if entry is None:
            return False
        entry.draining = True
        self._notify()
        if entry.state == "starting" and force and entry.start_task is not None:
            entry.abort_reason = f"model '{model_id}' was unloaded while it was starting"
            entry.start_task.cancel()
        elif entry.state == "running" and (force or entry.refcount == 0):
            self._begin_stop(entry)
        await entry.stopped.wait()
        return True

    def mark_failed(self, model_id: str, reason: str) -> None:
        """Forget a runner that died unexpectedly (the supervisor calls this) so the next
        acquire restarts it; the reason stays queryable via `last_error`."""
        self._last_error[model_id] = reason
        entry = self._entries.get(model_id)
        if entry is None:
            return
        log.warning("model %s failed: %s", model_id, reason)
        if entry.state == "starting" and entry.start_task is not None:
            entry.abort_reason = reason
            entry.start_task.cancel()
            return
        del self._entries[model_id]
        self._cancel_timer(entry)
        if entry.state == "running":  # reap whatever is left of the process
            entry.state = "stopping"
            self._spawn(self._run_stop(entry))
        self._notify()

    def last_error(self, model_id: str) -> str | None:
        """Why this model last failed to start or died; kept after a successful restart."""
        return self._last_error.get(model_id)

    def runner_for(self, model_id: str) -> R | None:
        """The running runner for a model, or None if it is not loaded and ready."""
        entry = self._entries.get(model_id)
        return entry.runner if entry is not None and entry.state == "running" else None

    def state_of(self, model_id: str) -> State | None:
        """The model's state, or None if not in the table. O(1): for statuses of long lists."""
        entry = self._entries.get(model_id)
        return entry.state if entry is not None else None

    def loaded_request(self, model_id: str) -> LoadRequest | None:
        """The request a starting or running model was loaded with (None otherwise), so a
        caller can reuse its settings instead of restarting it with different ones."""
        entry = self._entries.get(model_id)
        return entry.req if entry is not None and entry.state != "stopping" else None

    def snapshot(self) -> list[LoadedInfo[R]]:
        """All models in the table (starting, running or stopping), most recently used first."""
        entries = sorted(self._entries.values(), key=lambda e: e.lru, reverse=True)
        return [self._info(e) for e in entries]

    def memory_in_use(self) -> int:
        """Estimated bytes held by every model in the table, including starting and stopping."""
        return sum(e.memory_bytes for e in self._entries.values())

    async def shutdown(self) -> None:
        """Stop everything, busy or not, and wait for it: leaves no runner behind."""
        self._closed = True
        for entry in list(self._entries.values()):
            entry.draining = True
            if entry.state == "starting" and entry.start_task is not None:
                entry.abort_reason = "the server is shutting down"
                entry.start_task.cancel()
            elif entry.state == "running":
                self._begin_stop(entry)
        self._notify()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---- internals ----------------------------------------------------------------------------

    def _make_room(self, req: LoadRequest) -> Literal["fits", "stopping", "busy"]:
        """ "fits" if `req` fits now. Else, if stopping the least-recently-used idle models (plus
        stops already under way) makes room, start those stops and return "stopping"; otherwise
        stop nothing (evicting cannot help yet) and return "busy": wait for a release."""
        for e in list(self._entries.values()):
            if e.state == "running" and e.refcount == 0 and not e.runner.alive:
                self.mark_failed(e.model_id, "the engine process exited unexpectedly")
        entries = list(self._entries.values())
        budget = self.memory_budget_bytes

        def fits(staying: list[_Entry[R]]) -> bool:
            used = sum(e.memory_bytes for e in staying)
            return len(staying) < self.max_loaded_models and used + req.memory_bytes <= budget

        if fits(entries):
            return "fits"
        staying = [e for e in entries if e.state != "stopping"]
        idle = [e for e in staying if e.state == "running" and e.refcount == 0]
        victims: list[_Entry[R]] = []
        for e in sorted(idle, key=lambda e: e.lru):
            if fits(staying):
                break
            staying.remove(e)
            victims.append(e)
        if not fits(staying):
            return "busy"
        for e in victims:
            log.info("evicting idle model %s to load %s", e.model_id, req.model_id)
            self._begin_stop(e)
        return "stopping"

    def _new_entry(self, req: LoadRequest) -> _Entry[R]:
        try:
            runner = self._factory(req)
        except Exception as exc:
            self._last_error[req.model_id] = str(exc)
            if isinstance(exc, HearthError):
                raise
            raise EngineError(f"Could not start model '{req.model_id}': {exc}") from exc
        entry = _Entry(req=req, runner=runner, keep_alive=self._keep_alive_for(req))
        self._entries[req.model_id] = entry
        entry.start_task = self._spawn(self._run_start(entry))
        self._notify()
        return entry

    async def _join_start(self, entry: _Entry[R], req: LoadRequest, count: bool) -> Lease[R]:
        """Wait for a start shared by every concurrent acquirer (single-flight). The start runs
        in its own task, so a cancelled waiter only drops its reservation."""
        entry.refcount += 1  # reservation: a starting model with waiters is never stopped
        try:
            await asyncio.shield(entry.ready)
        except BaseException:
            self._release(entry, served=False)
            raise
        entry.refcount -= 1
        if self._entries.get(entry.model_id) is not entry or entry.state != "running":
            self._notify()  # force-stopped or failed between its start and this waiter waking
            raise EngineError(
                f"Model '{entry.model_id}' stopped right after starting: "
                f"{self.last_error(entry.model_id) or 'it was unloaded'}"
            )
        return self._grant(entry, req, count)

    def _grant(self, entry: _Entry[R], req: LoadRequest, count: bool) -> Lease[R]:
        self._cancel_timer(entry)
        entry.refcount += 1
        entry.requests_served += int(count)
        entry.keep_alive = self._keep_alive_for(req)
        entry.last_used, entry.lru = time.time(), time.monotonic()
        return Lease(self, entry)

    def _release(self, entry: _Entry[R], *, served: bool = True) -> None:
        entry.refcount -= 1
        if served:
            entry.last_used, entry.lru = time.time(), time.monotonic()
        if self._entries.get(entry.model_id) is not entry or entry.refcount > 0:
            self._notify()
            return
        if entry.state == "running":
            if entry.draining or entry.keep_alive == 0:
                self._begin_stop(entry)
            else:
                self._arm_timer(entry)
        self._notify()

    def _arm_timer(self, entry: _Entry[R]) -> None:
        self._cancel_timer(entry)
        if entry.keep_alive < 0:
            return  # never unload
        entry.expires_at = time.time() + entry.keep_alive
        entry.timer = asyncio.get_running_loop().call_later(entry.keep_alive, self._expire, entry)

    def _expire(self, entry: _Entry[R]) -> None:
        entry.timer = None
        if (
            self._entries.get(entry.model_id) is entry
            and entry.state == "running"
            and entry.refcount == 0
        ):
            log.info("keep-alive expired for model %s", entry.model_id)
            self._begin_stop(entry)

    def _cancel_timer(self, entry: _Entry[R]) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.expires_at = None

    def _begin_stop(self, entry: _Entry[R]) -> None:
        """Mark stopping now (it still counts against the limits until the stop finishes)."""
        self._cancel_timer(entry)
        entry.state = "stopping"
        self._spawn(self._run_stop(entry))
        self._notify()

    async def _run_start(self, entry: _Entry[R]) -> None:
        try:
            await entry.runner.start()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                reason = entry.abort_reason or "the start was cancelled"
                err: HearthError = Unavailable(f"Model '{entry.model_id}' did not start: {reason}.")
            else:
                reason = str(exc) or type(exc).__name__
                err = (
                    exc
                    if isinstance(exc, HearthError)
                    else EngineError(f"Model '{entry.model_id}' failed to start: {reason}")
                )
            self._last_error[entry.model_id] = reason
            if self._entries.get(entry.model_id) is entry:
                entry.state = "stopping"
            entry.ready.set_exception(err)
            entry.ready.exception()  # mark retrieved: nobody may be waiting any more
            with contextlib.suppress(Exception):
                await entry.runner.stop()  # clean up a half-started process
            self._forget(entry)
            if not isinstance(exc, Exception):
                raise
            return
        entry.state = "running"
        entry.loaded_at = time.time()
        entry.ready.set_result(None)
        if entry.refcount == 0:  # every waiter gave up: keep it per keep-alive, or drain
            entry.refcount = 1
            self._release(entry, served=False)
        self._notify()

    async def _run_stop(self, entry: _Entry[R]) -> None:
        try:
            await entry.runner.stop()
        except Exception as exc:
            log.warning("stopping model %s failed: %s", entry.model_id, exc)
            self._last_error[entry.model_id] = f"stop failed: {exc}"
        finally:
            self._forget(entry)

    def _forget(self, entry: _Entry[R]) -> None:
        if self._entries.get(entry.model_id) is entry:
            del self._entries[entry.model_id]
        entry.stopped.set()
        self._notify()

    async def _wait_for_change(self, deadline: float | None, waiting_for: str) -> None:
        """Sleep until the next state transition; past `deadline` (None = none) → Unavailable."""
        changed = self._changed
        if deadline is None:
            await changed.wait()
            return
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            raise Unavailable(
                f"Cannot load the model now: {waiting_for} (max_loaded_models="
                f"{self.max_loaded_models}, memory budget {_gib(self.memory_budget_bytes)}). "
                "Try again later, or raise `max_loaded_models` / `memory_budget`."
            ) from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _keep_alive_for(self, req: LoadRequest) -> float:
        return self.default_keep_alive if req.keep_alive is None else req.keep_alive

    def _info(self, e: _Entry[R]) -> LoadedInfo[R]:
        return LoadedInfo(**{f.name: getattr(e, f.name) for f in fields(LoadedInfo)})


def _gib(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"
