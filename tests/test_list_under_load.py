"""GET /v1/models under concurrent load: lists stay complete and fresh, and the server keeps
answering other requests while it scans (issue 8, item 11). Behaviour only: no timings."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FAKE_GGUF, make_model
from support.server import ThreadedServer

from hearth.core.coalesce import FreshRun
from hearth.models.store import ModelEntry
from hearth.server.sliced import SLICE_BYTES
from hearth.services import LIST_PAUSE_EVERY, Services

pytestmark = pytest.mark.slow  # takes seconds (thousands of model folders): see pyproject

WATCHED = "model-0007"


def _populate(home: Path, count: int) -> list[str]:
    """Model folders with a long description: 300 of them make a list body of several slices."""
    ids = [f"model-{i:04d}" for i in range(count)]
    raw = {"name": "v0", "description": "A model. " * 100}
    for model_id in ids:
        make_model(home, model_id, raw, {"model.gguf": FAKE_GGUF})
    return ids


def _edit(home: Path, version: int) -> None:
    """Replace model.json atomically (as editors and Hearth do) with name 'v<version>'.

    The name grows with the version so that no two versions have one size: the store detects a
    change by mtime, ctime, size and inode, and file times tick only every few milliseconds."""
    path = home / "models" / WATCHED / "model.json"
    tmp = path.with_name(".model.json.edit")
    tmp.write_text(json.dumps({"name": f"v{version}{' ' * version}"}), encoding="utf-8")
    os.replace(tmp, path)


def _version(body: dict[str, Any]) -> int:
    (watched,) = (m for m in body["data"] if m["id"] == WATCHED)
    return int(watched["name"][1:])


def test_concurrent_lists_are_complete_and_never_older_than_their_request(
    server: ThreadedServer, home: Path
) -> None:
    """12 clients list while a model.json is edited 10 times: every list is whole and sorted,
    and a list sent after an edit finished shows that edit (or a later one)."""
    ids = _populate(home, 300)
    with server.http() as http:
        assert len(http.get("/v1/models").content) > SLICE_BYTES  # sent in slices
    edits: list[tuple[float, int]] = [(0.0, 0)]  # (finished at, version)
    seen: list[tuple[float, int]] = []  # (sent at, version shown); -1: a wrong list
    stop = threading.Event()

    def lister() -> None:
        with server.http() as http:
            while not stop.is_set():
                sent = time.monotonic()
                response = http.get("/v1/models")
                data = response.json()["data"] if response.status_code == 200 else []
                whole = [m["id"] for m in data] == ids and all(m["status"] == "ready" for m in data)
                seen.append((sent, _version({"data": data}) if whole else -1))

    def wait_for_lists_after(moment: float) -> None:
        while sum(1 for sent, _ in seen if sent > moment) < 12:
            assert not any(f.done() for f in futures), "a lister stopped"
            time.sleep(0.005)

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(lister) for _ in range(12)]
        for version in range(1, 11):
            wait_for_lists_after(edits[-1][0])  # lists overlap every edit
            _edit(home, version)
            edits.append((time.monotonic(), version))
        wait_for_lists_after(edits[-1][0])
        stop.set()
        for future in futures:
            future.result()
    assert all(shown >= 0 for _, shown in seen), "a list was incomplete or unsorted"
    for sent, shown in seen:
        newest_done = max(version for finished, version in edits if finished < sent)
        assert shown >= newest_done, (sent, shown, newest_done)


def test_health_and_single_models_answer_while_lists_run(
    server: ThreadedServer, home: Path
) -> None:
    """Lists in flight do not stop the server from answering anything else."""
    _populate(home, 300)
    stop = threading.Event()
    lists: list[int] = []

    def lister() -> None:
        with server.http() as http:
            while not stop.is_set():
                lists.append(len(http.get("/v1/models").json()["data"]))

    with ThreadPoolExecutor(8) as pool, server.http() as http:
        futures = [pool.submit(lister) for _ in range(8)]
        while len(lists) < 20:
            assert not any(f.done() for f in futures), "a lister stopped"
            time.sleep(0.005)
        for _ in range(20):
            assert http.get("/health").json()["status"] == "ok"
            assert http.get(f"/v1/models/{WATCHED}").json()["status"] == "ready"
        stop.set()
        for future in futures:
            future.result()
    assert set(lists) == {300}


def test_a_list_lets_other_coroutines_run_while_it_scans(services: Services, home: Path) -> None:
    """The scan pauses every LIST_PAUSE_EVERY folders, so the event loop answers other requests
    (such as /health) in between instead of waiting for the whole scan: a coroutine running
    beside it sees the scan half done."""
    total = LIST_PAUSE_EVERY * 3
    _populate(home, total)

    async def main() -> set[int]:
        progress: set[int] = set()  # folders read so far, as seen between the scan's steps
        listing = asyncio.create_task(services.models_list_body())
        while not listing.done():
            progress.add(len(services.store._cache))
            await asyncio.sleep(0)
        assert (await listing).count(b'"object":"model"') == total
        return progress

    assert len({n for n in asyncio.run(main()) if 0 < n < total}) >= 2


def test_concurrent_requests_share_a_scan_that_started_after_they_came(
    services: Services, home: Path
) -> None:
    """Requests that arrive together share one scan; one that arrives while a scan is under way
    waits for the next scan, and sees the edit made just before it arrived."""
    _populate(home, 40)
    scans: list[int] = []
    late: list[asyncio.Task[bytes]] = []

    def count_scans(entry: ModelEntry) -> None:
        """A status source: asked once per model per list, so it sees every scan."""
        if entry.id == WATCHED:
            scans.append(1)
            if not late:  # mid-scan: edit the folder, then a request arrives
                _edit(home, 1)
                late.append(asyncio.get_running_loop().create_task(services.models_list_body()))

    services.status_sources.insert(0, count_scans)

    async def main() -> tuple[list[bytes], bytes]:
        together = await asyncio.gather(*(services.models_list_body() for _ in range(20)))
        return together, await late[0]

    together, after = asyncio.run(main())
    assert len(scans) == 2  # one for the 20 requests, one for the late one
    assert len(set(together)) == 1 and b'"name":"v0"' in together[0]
    assert _version(httpx.Response(200, content=after).json()) == 1


def test_renamed_models_sort_by_id_and_a_warm_list_rereads_no_folder_with_a_model_json(
    services: Services, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's fast path matches an unchanged folder to its cached record itself; only
    folders it cannot match (no model.json here) take the slow path through `_load`."""
    make_model(home, "zz", {"id": "aa"}, {"m.gguf": FAKE_GGUF})
    make_model(home, "mm", {}, {"m.gguf": FAKE_GGUF})
    make_model(home, "bare", None, {"bare.gguf": FAKE_GGUF})
    store = services.store
    first = store.list()
    assert [e.id for e in first] == ["aa", "bare", "mm"]
    slow: list[str] = []
    load = store._load

    def counted(path: str, name: str) -> ModelEntry | None:
        slow.append(name)
        return load(path, name)

    monkeypatch.setattr(store, "_load", counted)
    again = store.list()
    assert all(a is b for a, b in zip(first, again, strict=True)) and slow == ["bare"]
    (home / "models" / "mm" / "model.json").write_text('{"name": "edited"}', encoding="utf-8")
    names = {e.id: e.info.name for e in store.list() if e.info is not None}
    assert names["mm"] == "edited" and slow == ["bare", "bare", "mm"]


def test_a_failed_run_reaches_every_waiter_and_the_next_call_runs_again() -> None:
    runs: list[int] = []

    async def produce() -> int:
        runs.append(1)
        await asyncio.sleep(0)
        if len(runs) == 1:
            raise OSError("disk went away")
        return len(runs)

    async def main() -> tuple[list[BaseException | int], int]:
        fresh: FreshRun[int] = FreshRun(produce)
        first = await asyncio.gather(*(fresh.get() for _ in range(5)), return_exceptions=True)
        return first, await fresh.get()

    first, second = asyncio.run(main())
    assert all(isinstance(r, OSError) for r in first) and second == 2 and len(runs) == 2


def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    async def produce() -> str:
        await asyncio.sleep(0.01)
        return "listed"

    async def main() -> str:
        fresh: FreshRun[str] = FreshRun(produce)
        leaver = asyncio.create_task(fresh.get())
        stayer = asyncio.create_task(fresh.get())
        await asyncio.sleep(0)
        leaver.cancel()
        return await stayer

    assert asyncio.run(main()) == "listed"
