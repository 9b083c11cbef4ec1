"""The pure pieces of MCP tools in thread runs (issue 26): a conversation's setting read as names
only, a run's `tools` checked, approvals signed so a stranger's thread.json approves nothing,
Hearth's own approvals file (a broken one kept, approving nothing), each round's tool_choice, a
round's stream without its `[DONE]`, Hearth's own call ids (an approval "once" runs one call),
two decisions on one call, and no tool loop without tools. The loop itself runs for real in
tests/test_thread_tools.py."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hearth.core.errors import Conflict, InvalidRequest
from hearth.engines.events import Gathered, GatheredCall
from hearth.mcp import DENIED
from hearth.mcp.hosts import CallOutcome
from hearth.services.mcp import McpFunction, Toolset
from hearth.services.thread_approval import _reopen
from hearth.services.thread_loop import (
    entry_view,
    round_choice,
    run_pending,
    take_calls,
    without_done,
)
from hearth.services.thread_tools import (
    Approvals,
    ThreadTools,
    ToolPlan,
    run_tools,
    saved_tools,
    thread_setting,
)
from hearth.threads.store import ThreadStore


def test_a_conversation_names_servers_and_nothing_else() -> None:
    metadata = {
        "mcp": {
            "servers": [
                "time",
                {"name": "test", "tools_off": ["crash"], "command": "rm", "url": "x"},
            ],
            "tool_choice": "required",
        },
        "mcpServers": {"evil": {"command": "rm"}},  # not Hearth's key: never read
    }
    assert thread_setting(metadata) == ([("time", []), ("test", ["crash"])], "required")
    assert thread_setting({}) == ([], "auto")


@pytest.mark.parametrize(
    "setting",
    [
        "time",
        {"servers": "time"},
        {"servers": [{"command": "rm"}]},
        {"servers": [{"name": "t", "tools_off": "crash"}]},
        {"servers": ["t"], "tool_choice": "always"},
    ],
)
def test_a_bad_conversation_setting_is_a_400_naming_it(setting: Any) -> None:
    with pytest.raises(InvalidRequest) as refused:
        thread_setting({"mcp": setting})
    assert str(refused.value.param).startswith("metadata.mcp")


def test_a_run_names_configured_servers_in_openai_s_shape() -> None:
    named = run_tools(
        [
            {"type": "mcp", "server_label": "a", "allowed_tools": {"tool_names": ["x"]}},
            {"type": "mcp", "server_label": "b", "require_approval": "never"},
        ]
    )
    assert named == [
        {"type": "mcp", "server_label": "a", "allowed_tools": ["x"], "require_approval": "always"},
        {"type": "mcp", "server_label": "b", "allowed_tools": None, "require_approval": "never"},
    ]
    assert run_tools(named) == named  # what a waiting answer keeps reads back
    assert run_tools(None) is None and run_tools([]) == []


def test_a_waiting_answer_s_tools_always_ask_whatever_its_file_says() -> None:
    kept = [{"type": "mcp", "server_label": "b", "require_approval": "never"}]
    assert saved_tools(kept) == [
        {"type": "mcp", "server_label": "b", "allowed_tools": None, "require_approval": "always"}
    ]
    assert saved_tools(None) is None
    with pytest.raises(InvalidRequest):
        saved_tools([{"server_label": "b", "server_url": "http://127.0.0.1:1"}])


@pytest.mark.parametrize(
    "tools",
    [
        {"type": "mcp"},
        [{"type": "function", "function": {"name": "f"}}],
        [{"type": "mcp", "server_label": "a", "server_url": "http://127.0.0.1:1"}],
        [{"type": "mcp"}],
        [{"type": "mcp", "server_label": "a", "require_approval": "sometimes"}],
        [{"type": "mcp", "server_label": "a", "allowed_tools": "x"}],
    ],
)
def test_a_run_that_defines_or_misnames_a_server_is_a_400(tools: Any) -> None:
    with pytest.raises(InvalidRequest):
        run_tools(tools)


def test_conversation_approvals_count_only_when_this_hearth_signed_them(tmp_path: Path) -> None:
    approvals = Approvals(tmp_path)
    sig = approvals.sign("t1", "test", "add")
    signed = {"mcp_approved": [{"server": "test", "tool": "add", "sig": sig}]}
    assert approvals.thread_approved("t1", signed) == {("test", "add")}
    assert approvals.thread_approved("t2", signed) == set()  # another conversation
    forged = {
        "mcp_approved": [{"server": "test", "tool": "add", "sig": "0" * 64}, "x", {"server": 1}]
    }
    assert approvals.thread_approved("t1", forged) == set()
    assert Approvals(tmp_path).sign("t1", "test", "add") == sig  # the key is kept
    other = Approvals(tmp_path / "elsewhere")  # another Hearth's key
    assert other.thread_approved("t1", signed) == set()


def test_always_is_hearth_s_own_file_written_whole(tmp_path: Path) -> None:
    approvals = Approvals(tmp_path)
    approvals.allow_always("test", "add")
    approvals.allow_always("test", "add")
    approvals.allow_always("time", "get_current_time")
    data = json.loads(approvals.path.read_text())
    assert data["always"] == [
        {"server": "test", "tool": "add"},
        {"server": "time", "tool": "get_current_time"},
    ]
    assert approvals.always() == {("test", "add"), ("time", "get_current_time")}
    assert stat.S_IMODE(approvals.path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["mcp-approvals.json"]  # no temp left


def test_each_round_s_tool_choice() -> None:
    plan = SimpleNamespace(max_rounds=3, first_choice="required")
    fresh = SimpleNamespace(plan=plan, resuming=False)
    assert [round_choice(fresh, n, None) for n in (1, 2, 3)] == ["required", "auto", "none"]  # type: ignore[arg-type]
    assert round_choice(fresh, 2, "required") == "required"  # type: ignore[arg-type]
    resumed = SimpleNamespace(plan=plan, resuming=True)
    assert round_choice(resumed, 1, None) == "auto"  # type: ignore[arg-type]
    single = SimpleNamespace(
        plan=SimpleNamespace(max_rounds=1, first_choice="required"), resuming=False
    )
    assert round_choice(single, 1, None) == "none"  # type: ignore[arg-type]


def test_a_round_s_stream_keeps_whole_events_and_drops_its_done() -> None:
    progress = b'data: {"choices": [], "prompt_progress": {"processed": 3, "total": 9}}\n\n'
    body = b'data: {"a": 1}\n\n: keep-alive\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'

    async def pieces(size: int) -> list[bytes]:
        async def source() -> AsyncIterator[bytes]:
            whole = progress + body
            for i in range(0, len(whole), size):
                yield whole[i : i + size]

        return [chunk async for chunk in without_done(source())]

    for size in (1, 3, 7, len(body)):
        got = asyncio.run(pieces(size))
        kept = b'data: {"a": 1}\n\n: keep-alive\n\ndata: {"b": 2}\n\n'
        assert b"".join(got) == b": prompt 3/9\n\n" + kept
        assert all(chunk.endswith(b"\n\n") for chunk in got)


@pytest.mark.parametrize(
    "broken",
    ['{"always": [{"server": "test", "tool": "add"}],, "key": "', "[]", '{"always": {}}',
     '{"key": "not hex"}'],
)  # fmt: skip
def test_a_broken_approvals_file_is_kept_and_approves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    """A typo in Hearth's approvals file must not wipe it: it is left as it is, every call
    asks meanwhile, a decision that would write it is refused naming it, and a fix brings the
    approvals back."""
    approvals = Approvals(tmp_path)
    approvals.allow_always("test", "add")
    signed = {"mcp_approved": [{"server": "t", "tool": "x", "sig": approvals.sign("1", "t", "x")}]}
    good = approvals.path.read_text()
    approvals.path.write_text(broken)
    with caplog.at_level(logging.WARNING, logger="hearth.mcp"):
        assert approvals.always() == set()
        assert approvals.thread_approved("1", signed) == set()
        assert approvals.path.read_text() == broken  # reading it never rewrites it
        for write in (lambda: approvals.allow_always("time", "now"), approvals.ready):
            with pytest.raises(Conflict) as refused:
                write()
            assert str(approvals.path) in refused.value.message
            assert "delete it" in refused.value.message
        assert approvals.always() == set()
    assert approvals.path.read_text() == broken  # never rewritten
    [warning] = [r.getMessage() for r in caplog.records if str(approvals.path) in r.getMessage()]
    assert "every call asks" in warning and "delete it" in warning
    approvals.path.write_text(good)  # fixed by hand: the approvals are back
    assert approvals.always() == {("test", "add")}
    assert approvals.thread_approved("1", signed) == {("t", "x")}


def test_a_file_without_a_key_gets_one_and_keeps_its_approvals(tmp_path: Path) -> None:
    approvals = Approvals(tmp_path)
    approvals.path.write_text('{"always": [{"server": "test", "tool": "add"}, "odd"]}')
    approvals.sign("1", "t", "x")
    data = json.loads(approvals.path.read_text())
    assert data["always"] == [{"server": "test", "tool": "add"}, "odd"] and len(data["key"]) == 64


ADD = McpFunction("add", "test", "add", "Add.", {"type": "object", "properties": {}})


def _tool_run(calls: list[dict[str, Any]], allowed_once: set[str]) -> SimpleNamespace:
    """What run_pending needs of a run: the plan (nothing trusted), its calls, an MCP call."""

    async def call(function: McpFunction, arguments: str, label: str) -> CallOutcome:
        return CallOutcome(function.server, function.tool, "5", False, False, 1)

    async def save_now() -> None:
        return None

    plan = ToolPlan(Toolset({"add": ADD}), "auto", 3)
    tools = SimpleNamespace(mcp=SimpleNamespace(call=call))
    return SimpleNamespace(
        plan=plan, calls=calls, allowed_once=allowed_once, awaiting=None, tools=tools,
        thread_id="t", message_id="m", save_now=save_now,
    )  # fmt: skip


def _pending(call_id: str, **extra: Any) -> dict[str, Any]:
    tool = {"id": call_id, "type": "function", "function": {"name": "add", "arguments": "{}"}}
    return {"tool": tool, "response": None, "state": "pending", **extra}


def _pending_events(run: SimpleNamespace) -> list[bytes]:
    async def gather() -> list[bytes]:
        return [event async for event in run_pending(run)]  # type: ignore[arg-type]

    return asyncio.run(gather())


def test_an_approval_once_runs_one_call_even_when_an_id_comes_again() -> None:
    run = _tool_run([_pending("call_0")], {"call_0"})
    _pending_events(run)
    assert run.calls[0]["state"] == "completed" and run.allowed_once == set()
    run.calls.append(_pending("call_0"))  # an engine numbering its calls afresh
    events = _pending_events(run)
    assert run.calls[1]["state"] == "pending" and run.awaiting["call_id"] == "call_0"
    assert b'"state": "awaiting_approval"' in events[-1]


def test_each_call_gets_hearth_s_own_unique_id() -> None:
    run = _tool_run([], set())
    ids = []
    for _ in range(2):  # two rounds, the engine numbering from call_0 in each
        calls = {i: GatheredCall("call_0", "add", "{}") for i in range(2)}
        run.reply = SimpleNamespace(gathered=Gathered(calls=calls))
        ids += [entry["tool"]["id"] for entry in take_calls(run)]  # type: ignore[arg-type]
    assert len(set(ids)) == 4 and "call_0" not in ids


def test_a_call_s_odd_labels_from_a_file_show_as_unknown() -> None:
    view = entry_view(_pending("c1", mcp="test/add"))
    assert (view["id"], view["server"], view["tool"]) == ("c1", None, None)


def _awaiting_thread(tmp_path: Path) -> tuple[ThreadStore, str]:
    store = ThreadStore(tmp_path / "threads")
    answered = _pending("c1", response={"error": "", "content": [{"type": "text", "text": "3"}]})
    answered["state"] = "completed"
    meta = {"tool_calls": [answered, _pending("c1")], "awaiting_approval": {"call_id": "c1"}}
    waiting = {
        "id": "01JZ0000000000000000000002",
        "role": "assistant",
        "status": "ready",
        "content": [{"type": "text", "text": {"value": "", "annotations": []}}],
        "metadata": meta,
    }
    user = {"id": "01JZ0000000000000000000001", "role": "user", "content": "Add."}
    return store, store.create({"title": "t"}, [user, waiting])


def test_a_losing_decision_leaves_the_winner_s_answer_live(tmp_path: Path) -> None:
    """Two decisions on one call: the second finds it decided and is refused, and must not
    take the answer off the live list (the next read would mark the running answer failed)."""
    store, tid = _awaiting_thread(tmp_path)
    live: set[str] = set()
    mid = "01JZ0000000000000000000002"

    def a_run() -> SimpleNamespace:
        service = SimpleNamespace(store=store, live=live)
        return SimpleNamespace(service=service, thread_id=tid, message_id=mid)

    _reopen(a_run(), "c1", "deny")  # type: ignore[arg-type]
    assert live == {mid}
    with pytest.raises(Conflict):
        _reopen(a_run(), "c1", "once")  # type: ignore[arg-type]
    assert live == {mid}
    [(_, saved)] = [(n, raw) for n, raw in store.messages(tid) if raw.get("id") == mid]
    first, second = saved["metadata"]["tool_calls"]
    assert first["response"]["content"][0]["text"] == "3"  # the answered call is untouched
    assert second["response"]["content"][0]["text"] == DENIED


def test_a_toolset_with_every_tool_off_is_no_plan(tmp_path: Path) -> None:
    async def toolset(picks: list[Any], param: str) -> Toolset:
        assert [(p.server, p.allowed) for p in picks] == [("test", None)]
        return Toolset()  # (every tool of the server filtered out)

    mcp = SimpleNamespace(toolset=toolset)
    tools = ThreadTools(lambda: mcp, tmp_path, 3)  # type: ignore[arg-type,return-value]
    metadata = {"mcp": {"servers": ["test"], "tool_choice": "required"}}
    assert asyncio.run(tools.plan("t", metadata, None)) is None
