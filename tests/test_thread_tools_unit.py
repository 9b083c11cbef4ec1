"""The pure pieces of MCP tools in thread runs (issue 26): a conversation's setting read as names
only, a run's `tools` checked, approvals signed so a stranger's thread.json approves nothing,
Hearth's own approvals file, each round's tool_choice, and a round's stream without its
`[DONE]`. The loop itself runs for real in tests/test_thread_tools.py."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hearth.core.errors import InvalidRequest
from hearth.services.thread_loop import round_choice, without_done
from hearth.services.thread_tools import Approvals, run_tools, thread_setting


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
        {"server_label": "a", "allowed_tools": ["x"], "require_approval": "always"},
        {"server_label": "b", "allowed_tools": None, "require_approval": "never"},
    ]
    assert run_tools(None) is None and run_tools([]) == []


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
    approvals.path.write_text("{torn")
    assert approvals.always() == set()
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
