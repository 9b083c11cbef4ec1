"""Nothing stays `pending` after a crash: a thread run whose server was killed with kill -9 is
marked `error` (code `interrupted`) at the next start, keeping the text it had saved; and a
reader never sees a pending answer whose writer is gone. Real servers, the real model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from support.engines import add_smol
from support.server import HearthProcess, ThreadedServer
from support.waiting import wait_for

from hearth.core.config import load_settings
from hearth.services import Services
from hearth.threads.interrupted import WRITER, WRITER_KEY

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

STORY = "Write a long story about a dragon and a knight."
#: Pinned sampling and a long bound: the model writes for seconds, the same words every time.
LONG = {"max_tokens": 400, "temperature": 0, "seed": 7, "ignore_eos": True}


def lines(home: Path, tid: str) -> list[dict[str, Any]]:
    text = (home / "threads" / tid / "messages.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def answer_on_disk(home: Path, tid: str, mid: str) -> dict[str, Any]:
    return next(m for m in lines(home, tid) if m["id"] == mid)


def text_of(message: dict[str, Any]) -> str:
    return str(message["content"][0]["text"]["value"])


def kill_hard(server: HearthProcess) -> None:
    """kill -9 the server and every engine it started (each in a process group of its own), as
    a power cut or the OOM killer would: nobody gets to write a last word."""
    assert server.proc is not None
    if server.proc.poll() is not None:
        return  # killed already
    children = psutil.Process(server.proc.pid).children(recursive=True)
    groups = set()
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(child.pid))
    server.stop(signal.SIGKILL)
    for group in groups - {os.getpgid(0)}:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def start_long_run(server: HearthProcess, home: Path) -> tuple[str, str, str]:
    """A streamed run of a long answer, left running until part of it is saved on disk: the
    thread's id, the answer's id, and the text saved so far."""
    with httpx.Client(base_url=server.url, timeout=120) as http:
        body = {"model": "smol", "messages": [{"role": "user", "content": STORY}]}
        tid = http.post("/v1/threads", json=body).json()["id"]
        with http.stream("POST", f"/v1/threads/{tid}/runs", json={"parameters": LONG}) as r:
            assert r.status_code == 200
            mid = r.headers["x-hearth-message-id"]
            chunks = r.iter_lines()
            saved = ""

            def partial_saved() -> bool:
                nonlocal saved
                next(chunks)  # keep reading, so the server keeps writing
                message = answer_on_disk(home, tid, mid)
                saved = text_of(message) if message["status"] == "pending" else ""
                return len(saved) > 20

            wait_for(partial_saved, timeout=120, what="a partial answer saved on disk")
            kill_hard(server)
    return tid, mid, saved


def test_an_answer_killed_mid_way_is_an_error_keeping_its_text_after_restart(
    home: Path,
) -> None:
    add_smol(home, "smol")
    # An answer an older Hearth (or another tool) left pending, with no writer mark: only the
    # start-up sweep may judge it (one server per home, and this one has started no run).
    old = home / "threads" / "older"
    old.mkdir(parents=True)
    (old / "thread.json").write_text(json.dumps({"id": "older", "title": "Before"}))
    once = [{"type": "text", "text": {"value": "Once", "annotations": []}}]
    unmarked = {"id": "a1", "role": "assistant", "status": "pending", "content": once}
    (old / "messages.jsonl").write_text(json.dumps(unmarked) + "\n")

    first = HearthProcess(home).start()
    try:
        tid, mid, saved = start_long_run(first, home)
    finally:
        kill_hard(first)
    left = answer_on_disk(home, tid, mid)
    assert left["status"] == "pending" and text_of(left) == saved  # what the crash left

    with HearthProcess(home) as second, httpx.Client(base_url=second.url, timeout=60) as http:
        message = http.get(f"/v1/threads/{tid}/messages/{mid}").json()
        assert message["status"] == "error", message
        assert message["error_code"] == "interrupted" and "killed or crashed" in message["error"]
        assert text_of(message) == saved  # every saved word kept
        listed = http.get(f"/v1/threads/{tid}/messages").json()["data"]
        assert [m["status"] for m in listed] == ["ready", "error"]
        wait_for(lambda: answer_on_disk(home, "older", "a1")["status"] != "pending",
                 what="the start-up sweep")  # fmt: skip
        older = http.get("/v1/threads/older/messages/a1").json()
        assert older["status"] == "error" and text_of(older) == "Once"
        # the conversation goes on: a new run answers after the interrupted one
        again = http.post(f"/v1/threads/{tid}/runs",
                          json={"stream": False, "parameters": {"max_tokens": 8,
                                                                "temperature": 0}})  # fmt: skip
        assert again.status_code == 200 and again.json()["status"] == "ready"
    on_disk = answer_on_disk(home, tid, mid)
    assert on_disk["status"] == "error" and text_of(on_disk) == saved
    assert WRITER_KEY not in on_disk["metadata"]


@pytest.fixture
def live(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        recovery = server.services.threads.recovery
        assert recovery is not None
        recovery.join()  # the start-up sweep is over: what follows is the read path alone
        yield server


def test_a_reader_never_sees_an_answer_whose_writer_is_gone(
    live: ThreadedServer, home: Path
) -> None:
    """A pending answer marked by another Hearth process (one that died) is an error when the
    thread is read; one marked by this process but not being written (its run ended without
    its last save) too; an unmarked one (another tool may be writing it now) is left alone."""
    folder = home / "threads" / "t"
    folder.mkdir(parents=True)
    (folder / "thread.json").write_text(json.dumps({"id": "t", "title": "Read"}))

    def pending(mid: str, writer: str | None, text: str) -> str:
        meta = {WRITER_KEY: writer} if writer else {"x": 1}
        return json.dumps({"id": mid, "role": "assistant", "status": "pending", "metadata": meta,
                           "content": [{"type": "text", "text": {"value": text,
                                                                 "annotations": []}}]})  # fmt: skip

    rows = [json.dumps({"id": "u", "role": "user", "content": "hi"}),
            pending("dead", "0" * 32, "Half an"), pending("mine", WRITER, "Also half"),
            pending("jan", None, "Jan writes")]  # fmt: skip
    (folder / "messages.jsonl").write_text("\n".join(rows) + "\n")
    with live.http() as http:
        listed = {m["id"]: m for m in http.get("/v1/threads/t/messages").json()["data"]}
        one = http.get("/v1/threads/t/messages/dead").json()
        export = http.get("/v1/threads/t/export").json()
    assert listed["dead"]["status"] == "error" and text_of(listed["dead"]) == "Half an"
    assert listed["mine"]["status"] == "error" and text_of(listed["mine"]) == "Also half"
    assert listed["jan"]["status"] == "pending"
    assert one["status"] == "error" and one["error_code"] == "interrupted"
    assert [m.get("status") for m in export["messages"]] == [None, "error", "error", "pending"]
    stored = {m["id"]: m for m in lines(home, "t")}
    assert stored["dead"]["status"] == "error" and stored["dead"]["metadata"] == {}
    assert stored["jan"] == json.loads(rows[3])
