"""Per-item write locks that are not kept after the write (issue 22, point 10: memory that
keeps growing): the stores of threads and models serialize writes per item without holding a
lock for every item ever written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hearth.core.keyedlocks import KeyedLocks
from hearth.models.store import ModelStore


def test_one_key_is_held_by_one_holder_at_a_time() -> None:
    locks = KeyedLocks()
    inside: list[int] = []
    most = [0]
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        for _ in range(200):
            with locks.hold("t"):
                inside.append(1)
                most[0] = max(most[0], len(inside))
                inside.pop()

    workers = [threading.Thread(target=worker) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert most[0] == 1
    assert len(locks) == 0


def test_nothing_is_kept_after_many_keys_even_when_a_holder_raises() -> None:
    locks = KeyedLocks()
    for n in range(10_000):
        with locks.hold(f"thread-{n}"):
            assert len(locks) == 1
    with pytest.raises(RuntimeError), locks.hold("broken"):
        raise RuntimeError("a failed write")
    assert len(locks) == 0


def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    with locks.hold("a"):
        got = threading.Event()

        def other() -> None:
            with locks.hold("b"):
                got.set()

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()  # would never end if "b" waited for "a"
        assert got.is_set() and len(locks) == 1


@pytest.mark.slow
def test_model_store_keeps_no_lock_per_model_written(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    for n in range(200):
        store.create(f"m{n}", {"description": "x"})
        store.update(f"m{n}", {"description": "y"})
    for n in range(0, 200, 2):
        store.delete(f"m{n}")
    assert len(store.list()) == 100
    assert len(store._locks) == 0
