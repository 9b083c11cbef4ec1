"""Replicas: one model served by N engine processes, and which one gets each request.

`engine_parameters.replicas` (default 1) asks for N processes of the same launch (e.g. two
llama.cpp servers sharing one GPU: one server's main loop, not the GPU, limits it at high
concurrency). The scheduler sees one runner per model, a `ReplicaSet`; it counts N times
against the memory budget (the planner multiplies the estimate).

Routing (`replica_routing`):
- "least-busy": the running replica with the fewest requests in flight (ties rotate).
- "prefix" (default): the same, except that a conversation's follow-up turn goes to the
  replica that served its earlier turn while that replica is not busier than the others: its
  prompt cache holds the shared prefix, so the engine skips most of the prefill. Busy means
  a request would wait there for a free slot (a llama.cpp server runs `n_parallel` requests
  at once), so a follow-up keeps its cache while its replica has a free slot, and goes to
  the least busy replica only when it would queue behind others there.
  A follow-up is recognised by hashes of the request's message list at each message
  boundary (or of a completion prompt at each 256-character boundary), remembered for the
  most recent requests only. A request Hearth composes from a chat (a forced tool call's
  `/v1/completions`) is routed by the chat's messages (`EngineManager.open(route_by=)`): its
  rendered prompt was never sent before, and the chat's earlier turns are cached where the
  messages went.

Failures: a replica that dies fails only its own in-flight requests (their connections drop
at once) and is restarted in the background (three tries, with a short backoff); the others
keep serving, and requests go only to running replicas. When no replica is left running or
restarting, the set reports its death and the model reads failed, as with one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hearth.core.errors import EngineError
from hearth.engines.process import EngineProcess
from hearth.engines.registry import LaunchSpec, LocalKind

log = logging.getLogger(__name__)

ReplicaStatus = Literal["starting", "running", "restarting", "failed", "stopped"]
#: Seconds to wait before each restart attempt of a dead replica.
RESTART_BACKOFF = (0.5, 2.0, 5.0)
#: Prefix hashes remembered per model (one per routed request, oldest forgotten first).
AFFINITY_CAPACITY = 16384
_PROMPT_BLOCK = 256

ProcessFactory = Callable[[LaunchSpec, int, Callable[[EngineProcess], None]], EngineProcess]


@dataclass(eq=False)
class Replica:
    """One process slot of a model; its process is replaced when it is restarted."""

    index: int
    process: EngineProcess | None = None
    status: ReplicaStatus = "starting"
    active: int = 0
    served: int = 0
    restarts: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        proc = self.process
        return {
            "index": self.index,
            "pid": proc.pid if proc is not None and proc.alive else None,
            "port": proc.port if proc is not None and proc.alive else None,
            "status": self.status,
            "active_requests": self.active,
            "requests_served": self.served,
            "restarts": self.restarts,
            "error": self.error,
        }


# ---- routing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prefix:
    """Hashes of a request's growing prefix, shortest first."""

    hashes: list[bytes]
    #: Remember every boundary (prompt blocks), or only the whole request (a chat's messages).
    remember_all: bool = False


NO_PREFIX = Prefix([])


def prefix_of(body: dict[str, Any]) -> Prefix:
    """One hash per message of a chat (the last covers the whole list), or one per
    256-byte block of a completion prompt."""
    h = hashlib.blake2b(digest_size=16)
    hashes: list[bytes] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            h.update(json.dumps(message, sort_keys=True, separators=(",", ":")).encode())
            h.update(b"\x1e")
            hashes.append(h.copy().digest())
        return Prefix(hashes)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        data = prompt.encode()
        for start in range(0, len(data), _PROMPT_BLOCK):
            h.update(data[start : start + _PROMPT_BLOCK])
            hashes.append(h.copy().digest())
    return Prefix(hashes, remember_all=True)


class Router:
    """Chooses a replica for each request (see the module docstring)."""

    def __init__(
        self, mode: str = "prefix", capacity: int = AFFINITY_CAPACITY, slots: int = 1
    ) -> None:
        self.mode = mode
        self.capacity = capacity
        self.slots = max(slots, 1)  # requests one replica runs at once (llama.cpp: n_parallel)
        self._owner: OrderedDict[bytes, int] = OrderedDict()
        self._turn = itertools.count()

    def choose(self, replicas: Sequence[Replica], prefix: Prefix = NO_PREFIX) -> Replica:
        """A running replica (the caller made sure there is one)."""
        running = [r for r in replicas if r.status == "running"]
        least = min(r.active for r in running)
        chosen: Replica | None = None
        if self.mode == "prefix":
            owner = self._affine(prefix)
            fewest_waiting = min(self._waiting(r) for r in running)
            chosen = next(
                (r for r in running if r.index == owner and self._waiting(r) <= fewest_waiting),
                None,
            )
        if chosen is None:
            idle = [r for r in running if r.active == least]
            chosen = idle[next(self._turn) % len(idle)]
        self._remember(prefix, chosen.index)
        return chosen

    def _waiting(self, replica: Replica) -> int:
        """How busy a replica is for a new request: how many would wait for a free slot."""
        return max(0, replica.active + 1 - self.slots)

    def _affine(self, prefix: Prefix) -> int | None:
        """The replica that served the longest earlier prefix of this request, if any."""
        for key in reversed(prefix.hashes):
            owner = self._owner.get(key)
            if owner is not None:
                return owner
        return None

    def _remember(self, prefix: Prefix, index: int) -> None:
        if self.mode != "prefix" or not prefix.hashes:
            return
        for key in prefix.hashes if prefix.remember_all else prefix.hashes[-1:]:
            self._owner[key] = index
            self._owner.move_to_end(key)
        while len(self._owner) > self.capacity:
            self._owner.popitem(last=False)


# ---- the set -----------------------------------------------------------------------------------


class ReplicaSet:
    """The scheduler's runner for one model: N processes of one launch, routed per request."""

    def __init__(
        self,
        kind: LocalKind,
        spec: LaunchSpec,
        *,
        make_process: ProcessFactory,
        on_death: Callable[[ReplicaSet], None],
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.alias = spec.model_id
        self.replicas = [Replica(i) for i in range(max(spec.replicas, 1))]
        self.router = Router(spec.routing, slots=kind.slots(spec.params))
        self.crashed = False
        self._make_process = make_process
        self._on_death = on_death
        self._stopping = False
        self._death: str | None = None
        self._restarts: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ---- what the scheduler and status endpoints read -----------------------------------------
    @property
    def alive(self) -> bool:
        return not self.crashed and any(
            r.status in ("starting", "running", "restarting") for r in self.replicas
        )

    @property
    def first(self) -> EngineProcess | None:
        live = [r.process for r in self.replicas if r.process is not None and r.process.alive]
        return live[0] if live else self.replicas[0].process

    @property
    def pid(self) -> int | None:
        return self.first.pid if self.first is not None else None

    @property
    def port(self) -> int | None:
        return self.first.port if self.first is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.first.log_path if self.first is not None else self.spec.log_path

    @property
    def load_seconds(self) -> float | None:
        loads = [r.process.load_seconds for r in self.replicas if r.process is not None]
        known = [s for s in loads if s is not None]
        return max(known) if known else None

    def rss_bytes(self) -> int:
        return sum(r.process.rss_bytes() for r in self.replicas if r.process is not None)

    def death_reason(self) -> str:
        return self._death or f"The engine for '{self.alias}' stopped."

    def replicas_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.replicas]

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every replica at once; if one fails, stop them all and raise its error."""
        results = await asyncio.gather(
            *(self._start_one(r) for r in self.replicas), return_exceptions=True
        )
        errors = [e for e in results if isinstance(e, BaseException)]
        if errors:
            await self.stop()
            raise errors[0]

    async def _start_one(self, replica: Replica) -> None:
        proc = self._make_process(self.spec, replica.index, self._exited)
        replica.process = proc
        await proc.start()
        replica.status = "running"
        self._notify()

    async def stop(self) -> None:
        """Stop every replica (and any restart under way); leaves no process."""
        self._stopping = True
        for task in list(self._restarts):
            task.cancel()
        procs = [r.process for r in self.replicas if r.process is not None]
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        for r in self.replicas:
            r.status = "stopped"
        self._notify()

    # ---- requests -----------------------------------------------------------------------------
    async def route(self, body: dict[str, Any], timeout: float = 300.0) -> tuple[Replica, Any]:
        """A running replica for this request, counted as busy until `release`; waits while
        every replica is restarting. Returns the replica and its process of this moment."""
        prefix = prefix_of(body) if len(self.replicas) > 1 else NO_PREFIX
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if any(r.status == "running" for r in self.replicas):
                replica = self.router.choose(self.replicas, prefix)
                replica.active += 1
                replica.served += 1
                return replica, replica.process
            if not self.alive:
                raise EngineError(self.death_reason())
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(deadline - loop.time(), 0))
            if loop.time() >= deadline:
                raise EngineError(
                    f"No engine replica of '{self.alias}' came back within {timeout:g} s. "
                    f"Last error: {self.replicas[0].error or 'none'}"
                )

    @staticmethod
    def release(replica: Replica) -> None:
        replica.active -= 1

    def failure(self, proc: EngineProcess) -> EngineError:
        """The error for a request whose replica died under it (after handling the death)."""
        self._exited(proc)
        if len(self.replicas) == 1:
            return EngineError(proc.death_reason())
        return EngineError(
            f"The engine replica that served this request for '{self.alias}' exited "
            f"unexpectedly with code {proc.returncode}; it is being restarted while the other "
            f"replicas keep serving. Send the request again. Full log: {proc.log_path}.\n"
            f"Last engine output:\n{proc.log_tail(2000).rstrip()}"
        )

    # ---- deaths and restarts ------------------------------------------------------------------
    def _exited(self, proc: EngineProcess) -> None:
        """A process died unexpectedly (called once per death, from its watcher or a request)."""
        replica = next((r for r in self.replicas if r.process is proc), None)
        if replica is None or self._stopping or replica.status in ("failed", "restarting"):
            return
        replica.status = "failed"
        replica.error = proc.death_reason()
        log.warning("engine replica %d of %s died: %s", replica.index, self.alias, replica.error)
        if self._give_up_if_none_left(replica.error):
            return
        task = asyncio.get_running_loop().create_task(self._restart(replica))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    def _give_up_if_none_left(self, reason: str) -> bool:
        """With no replica running or restarting, the whole set is dead (the model fails)."""
        if any(r.status in ("running", "restarting", "starting") for r in self.replicas):
            self._notify()
            return False
        self.crashed = True
        self._death = reason
        self._notify()
        self._on_death(self)
        return True

    async def _restart(self, replica: Replica) -> None:
        replica.status = "restarting"
        for delay in RESTART_BACKOFF:
            await asyncio.sleep(delay)
            if self._stopping:
                return
            old = replica.process
            if old is not None:
                await old.stop(grace=0)  # reap what is left and close its log
            proc = self._make_process(self.spec, replica.index, self._exited)
            replica.process = proc
            try:
                await proc.start()
            except EngineError as exc:
                replica.error = exc.message
                continue
            replica.status = "running"
            replica.restarts += 1
            log.info("engine replica %d of %s restarted", replica.index, self.alias)
            self._notify()
            return
        replica.status = "failed"
        self._give_up_if_none_left(replica.error or "the replica could not be restarted")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
