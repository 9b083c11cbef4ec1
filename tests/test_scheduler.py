"""Scheduler tests: pure scheduling logic, so runners are fakes that record what happened.

The real engine is tested elsewhere. Timing: short real keep-alives, and `until()` polls for a
condition instead of sleeping a fixed time, so nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.core.errors import EngineError, Unavailable
from hearth.engines.llamacpp import COMPUTE_OVERHEAD_BYTES, estimate_model_memory
from hearth.engines.scheduler import LoadRequest, Scheduler

pytestmark = pytest.mark.anyio

GiB = 1024**3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeRunner:
    """Records start/stop in its world's event log; start can be gated, delayed or made to fail."""

    def __init__(self, req: LoadRequest, world: World) -> None:
        self.req = req
        self.world = world
        self._alive = False
        self.started = False
        self.stopped = False

    @property
    def alive(self) -> bool:
        return self._alive

    async def start(self) -> None:
        w, mid = self.world, self.req.model_id
        w.events.append(("start", mid))
        w.live.add(self)
        if len(w.live) > w.max_live:
            w.violations.append(f"started {mid}: more runners than max_loaded_models")
        if sum(r.req.memory_bytes for r in w.live) > w.budget:
            w.violations.append(f"started {mid}: memory budget exceeded")
        if mid in w.gates:
            await w.gates[mid].wait()
        if w.start_delay:
            await asyncio.sleep(w.start_delay)
        if w.failures.get(mid):
            w.failures[mid] -= 1
            raise RuntimeError(f"{mid} would not load")
        self._alive = self.started = True

    async def stop(self) -> None:
        w = self.world
        w.events.append(("stop", self.req.model_id))
        if w.holders[self] and not w.allow_busy_stop:
            w.violations.append(f"stopped {self.req.model_id} while a lease is held")
        if w.stop_delay:
            await asyncio.sleep(w.stop_delay)
        self._alive = False
        self.stopped = True
        w.live.discard(self)

    def die(self) -> None:
        self._alive = False
        self.world.live.discard(self)


class World:
    """The runner factory plus everything the fakes record."""

    def __init__(self, *, max_live: int = 3, budget: int = 100 * GiB) -> None:
        self.events: list[tuple[str, str]] = []
        self.violations: list[str] = []  # recorded, not raised: the scheduler logs stop errors
        self.runners: list[FakeRunner] = []
        self.live: set[FakeRunner] = set()
        self.holders: Counter[FakeRunner] = Counter()
        self.gates: dict[str, asyncio.Event] = {}
        self.failures: dict[str, int] = {}
        self.start_delay = 0.0
        self.stop_delay = 0.0
        self.allow_busy_stop = False
        self.max_live = max_live
        self.budget = budget

    def __call__(self, req: LoadRequest) -> FakeRunner:
        runner = FakeRunner(req, self)
        self.runners.append(runner)
        return runner

    def of(self, kind: str) -> list[str]:
        return [m for k, m in self.events if k == kind]


def make(
    *, max_loaded_models: int = 3, memory_budget_bytes: int = 100 * GiB, **kw: float
) -> tuple[Scheduler, World]:
    w = World(max_live=max_loaded_models, budget=memory_budget_bytes)
    s = Scheduler(
        w, max_loaded_models=max_loaded_models, memory_budget_bytes=memory_budget_bytes, **kw
    )
    return s, w


def req(mid: str, mem: float = 1, **kw: Any) -> LoadRequest:
    return LoadRequest(model_id=mid, memory_bytes=int(mem * GiB), **kw)


async def until(pred: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


async def settle() -> None:
    """Let ready tasks run a few steps (before asserting that something did NOT happen)."""
    for _ in range(20):
        await asyncio.sleep(0)


def loaded(s: Scheduler) -> set[str]:
    return {i.model_id for i in s.snapshot()}


# ---- eviction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_models", "budget", "uses", "new", "evicted"),
    [
        (2, 100, [("a", 1), ("b", 1)], ("c", 1), ["a"]),
        (2, 100, [("a", 1), ("b", 1), ("a", 1)], ("c", 1), ["b"]),
        (3, 100, [("a", 1), ("b", 1), ("c", 1), ("a", 1), ("b", 1)], ("d", 1), ["c"]),
        (5, 10, [("a", 3), ("b", 3), ("c", 3)], ("d", 6), ["a", "b"]),
        (5, 10, [("a", 3), ("b", 3), ("c", 3), ("a", 3)], ("d", 6), ["b", "c"]),
        (5, 10, [("a", 3), ("b", 3)], ("c", 4), []),
    ],
)
async def test_lru_eviction_order(
    max_models: int,
    budget: int,
    uses: list[tuple[str, int]],
    new: tuple[str, int],
    evicted: list[str],
) -> None:
    s, w = make(max_loaded_models=max_models, memory_budget_bytes=budget * GiB)
    for mid, mem in uses:
        (await s.acquire(req(mid, mem))).release()
    lease = await s.acquire(req(*new))
    assert w.of("stop") == evicted
    assert loaded(s) == {m for m, _ in uses} - set(evicted) | {new[0]}
    lease.release()
    await s.shutdown()


async def test_busy_models_are_never_evicted() -> None:
    s, w = make(max_loaded_models=2)
    busy = await s.acquire(req("a"))  # least recently used, but held
    (await s.acquire(req("b"))).release()
    (await s.acquire(req("c"))).release()
    assert w.of("stop") == ["b"]
    assert s.runner_for("a") is busy.runner
    busy.release()
    await s.shutdown()


async def test_waits_for_a_release_then_loads() -> None:
    s, w = make(max_loaded_models=1)
    held = await s.acquire(req("a"))
    waiter = asyncio.create_task(s.acquire(req("b")))
    await settle()
    assert not waiter.done() and w.of("start") == ["a"] and w.of("stop") == []
    held.release()
    lease = await waiter
    assert w.events == [("start", "a"), ("stop", "a"), ("start", "b")]
    assert s.runner_for("b") is lease.runner
    lease.release()
    await s.shutdown()


async def test_busy_timeout_raises_unavailable_and_stops_nothing() -> None:
    s, w = make(max_loaded_models=1)
    held = await s.acquire(req("a"))
    with pytest.raises(Unavailable, match="all loaded models are busy"):
        await s.acquire(req("b"), timeout=0.05)
    assert w.of("stop") == [] and loaded(s) == {"a"}
    held.release()
    await s.shutdown()


@pytest.mark.parametrize("how", ["acquire", "load"])
async def test_never_fit_is_refused_before_anything_is_stopped(how: str) -> None:
    s, w = make(memory_budget_bytes=10 * GiB)
    (await s.acquire(req("a", 5))).release()
    with pytest.raises(Unavailable) as info:
        await getattr(s, how)(req("huge", 11))
    msg = info.value.message
    for words in ("11.0 GiB", "10.0 GiB", "quantization", "ctx_len", "memory_budget"):
        assert words in msg
    assert w.events == [("start", "a")] and loaded(s) == {"a"}
    await s.shutdown()


async def test_budget_defaults_to_memory_available() -> None:
    s = Scheduler(World(), memory_available=lambda: 4 * GiB)
    assert s.memory_budget_bytes == 4 * GiB
    with pytest.raises(Unavailable):
        await s.acquire(req("a", 5))


# ---- keep-alive ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep_alive", "unloads"),
    [(0, True), (0.05, True), (-1, False), (None, False)],  # None = default 300 s
)
async def test_keep_alive(keep_alive: float | None, unloads: bool) -> None:
    s, w = make()
    lease = await s.acquire(req("a", keep_alive=keep_alive))
    await asyncio.sleep(0.1)
    assert loaded(s) == {"a"}  # never while held
    lease.release()
    if unloads:
        await until(lambda: not loaded(s))
        assert w.runners[0].stopped
    else:
        await asyncio.sleep(0.1)
        assert loaded(s) == {"a"}
        [info] = s.snapshot()
        assert (info.expires_at is None) == (keep_alive == -1)
    await s.shutdown()


async def test_reacquire_cancels_the_timer() -> None:
    s, w = make()
    (await s.acquire(req("a", keep_alive=0.05))).release()
    assert s.snapshot()[0].expires_at is not None
    lease = await s.acquire(req("a", keep_alive=0.05))
    assert s.snapshot()[0].expires_at is None
    await asyncio.sleep(0.15)  # well past the first timer
    assert loaded(s) == {"a"} and w.of("start") == ["a"]
    lease.release()
    await until(lambda: not loaded(s))
    await s.shutdown()


@pytest.mark.parametrize(
    ("first", "second", "unloads"),
    [(-1, 0.05, True), (0.05, -1, False), (0.05, None, False), (None, 0, True)],
)
async def test_latest_request_keep_alive_wins(
    first: float | None, second: float | None, unloads: bool
) -> None:
    s, _ = make(default_keep_alive=300)
    a = await s.acquire(req("a", keep_alive=first))
    b = await s.acquire(req("a", keep_alive=second))
    a.release()
    b.release()
    if unloads:
        await until(lambda: not loaded(s))
    else:
        await asyncio.sleep(0.15)
        assert loaded(s) == {"a"}
        assert s.snapshot()[0].keep_alive == (300 if second is None else second)
    await s.shutdown()


# ---- starting ----------------------------------------------------------------------------------


async def test_concurrent_acquires_share_one_start() -> None:
    s, w = make()
    w.gates["a"] = asyncio.Event()
    tasks = [asyncio.create_task(s.acquire(req("a"))) for _ in range(5)]
    await until(lambda: w.of("start") == ["a"])
    [info] = s.snapshot()
    assert info.state == "starting" and s.runner_for("a") is None
    w.gates["a"].set()
    leases = await asyncio.gather(*tasks)
    assert len(w.runners) == 1 and {lease.runner for lease in leases} == {w.runners[0]}
    assert s.snapshot()[0].refcount == 5
    for lease in leases:
        lease.release()
    assert s.snapshot()[0].refcount == 0
    await s.shutdown()


async def test_failed_start_reaches_every_waiter_and_leaves_no_entry() -> None:
    s, w = make()
    w.gates["a"] = asyncio.Event()
    w.failures["a"] = 1
    tasks = [asyncio.create_task(s.acquire(req("a"))) for _ in range(3)]
    await until(lambda: w.of("start") == ["a"])
    w.gates["a"].set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, EngineError) and "would not load" in r.message for r in results)
    await until(lambda: not s.snapshot())
    assert s.last_error("a") == "a would not load"
    lease = await s.acquire(req("a"))  # the next try starts afresh
    assert lease.runner.alive and len(w.runners) == 2
    lease.release()
    await s.shutdown()


async def test_cancelled_waiter_does_not_cancel_the_shared_start() -> None:
    s, w = make()
    w.gates["a"] = asyncio.Event()
    first = asyncio.create_task(s.acquire(req("a", keep_alive=0.05)))
    await until(lambda: w.of("start") == ["a"])
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    w.gates["a"].set()
    await until(lambda: s.runner_for("a") is not None)
    [info] = s.snapshot()
    assert info.state == "running" and info.refcount == 0 and info.requests_served == 0
    await until(lambda: not loaded(s))  # nobody holds it, so its keep-alive still applies
    await s.shutdown()


@pytest.mark.parametrize(
    ("abort", "error", "reason"),
    [
        ("unload_force", Unavailable, "unloaded while it was starting"),
        ("mark_failed", Unavailable, "crashed while loading"),
    ],
)
async def test_aborting_a_start_fails_its_waiters_and_stops_the_runner(
    abort: str, error: type[Exception], reason: str
) -> None:
    s, w = make()
    w.gates["a"] = asyncio.Event()
    tasks = [asyncio.create_task(s.acquire(req("a"))) for _ in range(2)]
    await until(lambda: w.of("start") == ["a"])
    if abort == "unload_force":
        assert await s.unload("a", force=True) is True
    else:
        s.mark_failed("a", "crashed while loading")
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, error) and reason in str(r) for r in results)
    await until(lambda: not s.snapshot())
    assert w.runners[0].stopped and reason in (s.last_error("a") or "")
    await s.shutdown()


async def test_factory_error_becomes_engine_error() -> None:
    def factory(r: LoadRequest) -> FakeRunner:
        raise OSError("no such binary")

    s = Scheduler(factory, memory_budget_bytes=GiB)
    with pytest.raises(EngineError, match="no such binary"):
        await s.acquire(req("a", 0.5))
    assert not s.snapshot() and s.last_error("a") == "no such binary"


# ---- failures and restarts ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["died", "mark_failed"])
async def test_dead_runner_is_restarted_on_next_acquire(how: str) -> None:
    s, w = make()
    (await s.acquire(req("a"))).release()
    old = w.runners[0]
    if how == "died":
        old.die()
    else:
        s.mark_failed("a", "segfault")
        assert not s.snapshot()
    lease = await s.acquire(req("a"))
    assert lease.runner is not old and lease.runner.alive
    assert old.stopped  # the remains were reaped
    expected = "segfault" if how == "mark_failed" else "the engine process exited unexpectedly"
    assert s.last_error("a") == expected
    lease.release()
    await s.shutdown()


async def test_fingerprint_change_restarts_when_idle() -> None:
    s, w = make()
    (await s.acquire(req("a", fingerprint="ctx=4096"))).release()
    lease = await s.acquire(req("a", fingerprint="ctx=8192"))
    assert w.events == [("start", "a"), ("stop", "a"), ("start", "a")]
    assert s.snapshot()[0].fingerprint == "ctx=8192" and lease.runner is w.runners[1]
    lease.release()
    await s.shutdown()


async def test_fingerprint_change_waits_while_busy() -> None:
    s, w = make()
    old = await s.acquire(req("a", fingerprint="v1"))
    same = await s.acquire(req("a", fingerprint="v1"))  # same params: shares the runner
    assert same.runner is old.runner
    new = asyncio.create_task(s.acquire(req("a", fingerprint="v2")))
    await settle()
    assert not new.done() and w.of("stop") == []
    old.release()
    await settle()
    assert not new.done()
    same.release()
    lease = await new
    assert lease.runner is w.runners[1] and w.runners[0].stopped
    lease.release()
    await s.shutdown()


# ---- explicit load / unload / shutdown ----------------------------------------------------------


async def test_load_arms_keep_alive_without_holding() -> None:
    s, _ = make()
    info = await s.load(req("a", keep_alive=0.05))
    assert info.state == "running" and info.requests_served == 0
    await until(lambda: not loaded(s))
    await s.shutdown()


async def test_unload_idle_and_unknown() -> None:
    s, w = make()
    (await s.acquire(req("a"))).release()
    assert await s.unload("a") is True
    assert not s.snapshot() and w.of("stop") == ["a"]
    assert await s.unload("a") is False


async def test_unload_busy_drains() -> None:
    s, w = make()
    held = await s.acquire(req("a"))
    unloading = asyncio.create_task(s.unload("a"))
    await settle()
    assert s.snapshot()[0].draining and w.of("stop") == []
    newcomer = asyncio.create_task(s.acquire(req("a")))
    await settle()
    assert not newcomer.done() and not unloading.done()
    held.release()
    assert await unloading is True
    lease = await newcomer  # loaded again after the drain
    assert lease.runner is w.runners[1]
    assert w.events == [("start", "a"), ("stop", "a"), ("start", "a")]
    lease.release()
    await s.shutdown()


async def test_unload_force_stops_a_busy_model() -> None:
    s, w = make()
    w.allow_busy_stop = True
    held = await s.acquire(req("a"))
    assert await s.unload("a", force=True) is True
    assert not s.snapshot() and held.runner.stopped
    held.release()  # a no-op now
    assert not s.snapshot()


async def test_shutdown_stops_everything() -> None:
    s, w = make()
    w.allow_busy_stop = True
    busy = await s.acquire(req("busy"))
    (await s.acquire(req("idle"))).release()
    w.gates["starting"] = asyncio.Event()
    starting = asyncio.create_task(s.acquire(req("starting")))
    await until(lambda: "starting" in w.of("start"))
    await s.shutdown()
    assert not s.snapshot()
    assert all(r.stopped for r in w.runners) and len(w.runners) == 3
    with pytest.raises(Unavailable, match="shutting down"):
        await starting
    with pytest.raises(Unavailable, match="shutting down"):
        await s.acquire(req("busy"))
    busy.release()


async def test_snapshot_contents() -> None:
    s, w = make(default_keep_alive=60)
    before = time.time()
    (await s.acquire(req("a", 2, fingerprint="fa"))).release()
    a2 = await s.acquire(req("a", 2, fingerprint="fa"))
    b = await s.acquire(req("b", 3, keep_alive=-1))
    b.release()
    info_b, info_a = s.snapshot()  # most recently used first
    assert (info_a.model_id, info_a.state, info_a.refcount, info_a.requests_served) == (
        "a",
        "running",
        1,
        2,
    )
    assert info_a.memory_bytes == 2 * GiB and info_a.fingerprint == "fa"
    assert info_a.runner is w.runners[0] and info_a.expires_at is None  # held: no timer
    assert before <= (info_a.loaded_at or 0) <= info_a.last_used <= time.time()
    assert (info_b.refcount, info_b.requests_served, info_b.keep_alive) == (0, 1, -1)
    assert info_b.expires_at is None and not info_b.draining
    a2.release()
    info_a = next(i for i in s.snapshot() if i.model_id == "a")
    assert info_a.expires_at == pytest.approx(time.time() + 60, abs=5)
    assert s.memory_in_use() == 5 * GiB
    await s.shutdown()


# ---- estimate -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "kv"),
    [
        # llama-2-7b: 32 layers, 4096 embd, no GQA → 2*32*4096*4096*2 = 2 GiB at 4096 ctx
        (dict(ctx_len=4096, n_layer=32, n_embd=4096, n_head=32), 2 * GiB),
        # GQA 32/8 heads shrinks KV 4x; two slots double it
        (dict(ctx_len=4096, n_parallel=2, n_layer=32, n_embd=4096, n_head=32, n_head_kv=8), GiB),
        # q8_0-ish cache halves it
        (dict(ctx_len=4096, n_layer=32, n_embd=4096, n_head=32, cache_type_bytes=1), GiB),
        # shape unknown: half the file per 4096 cells
        (dict(ctx_len=8192), 4 * GiB),
    ],
)
def test_estimate_model_memory(kwargs: dict[str, int], kv: int) -> None:
    file_size = 4 * GiB
    assert estimate_model_memory(file_size, **kwargs) == file_size + kv + COMPUTE_OVERHEAD_BYTES


# ---- randomized ---------------------------------------------------------------------------------

MODELS = {"a": 3, "b": 4, "c": 5, "d": 2, "e": 1}  # GiB
op = st.tuples(
    st.sampled_from(["use", "use", "use", "unload", "load"]),
    st.sampled_from(sorted(MODELS)),
    st.sampled_from([None, 0, 0.002, -1]),
    st.sampled_from(["v1", "v1", "v2"]),
)


@pytest.mark.parametrize(("max_models", "budget_gib"), [(2, 100), (3, 8)])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=25), seed=st.integers(0, 1000))
@pytest.mark.slow
def test_random_workload_respects_limits(
    max_models: int, budget_gib: int, ops: list[tuple[str, str, float | None, str]], seed: int
) -> None:
    """Concurrent random acquire/release/load/unload: the fakes assert, at every start, that no
    more than max_loaded_models runners live and the budget holds, and, at every stop, that
    no lease is held on that runner."""

    async def main() -> None:
        rng = random.Random(seed)
        budget = budget_gib * GiB
        s, w = make(max_loaded_models=max_models, memory_budget_bytes=budget)
        w.start_delay = w.stop_delay = 0.001

        async def one(kind: str, mid: str, ka: float | None, fp: str) -> None:
            r = req(mid, MODELS[mid], keep_alive=ka, fingerprint=fp)
            await asyncio.sleep(rng.random() * 0.005)
            try:
                if kind == "unload":
                    await s.unload(mid)
                elif kind == "load":
                    await s.load(r, timeout=0.05)
                else:
                    lease = await s.acquire(r, timeout=0.05)
                    w.holders[lease.runner] += 1
                    assert lease.runner.alive and s.snapshot()
                    await asyncio.sleep(rng.random() * 0.005)
                    w.holders[lease.runner] -= 1
                    lease.release()
            except Unavailable as exc:
                assert "busy" in exc.message or "unloaded" in exc.message
            assert len(s.snapshot()) <= max_models and s.memory_in_use() <= budget

        await asyncio.gather(*(one(*o) for o in ops))
        await s.shutdown()
        assert not s.snapshot() and not w.live
        assert not w.violations

    asyncio.run(main())
