"""The pure parts of issue 24's point 4 (the real server's runs are in test_context_fit.py): the
context a too-long request needs, the engine's refusal read as a stranger's data, the error
that names the size, and how a conversation's oldest turns are chosen and counted (each message
once, however many resends)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hearth.core.errors import InvalidRequest
from hearth.engines.context import (
    ContextExceeded,
    Overflow,
    exceeded,
    grown_sizes,
    needed,
    overflow_of,
)
from hearth.engines.events import engine_refusal
from hearth.services.context_fit import Fitter, policy_of, turns
from hearth.threads.edits import apply_thread_changes


def _refusal(**fields: Any) -> bytes:
    message = "request (1431 tokens) exceeds the available context size (512 tokens)"
    error = {"code": 400, "message": message, "type": "exceed_context_size_error", **fields}
    return json.dumps({"error": error}).encode()


def test_sizes_double_to_a_power_of_two_then_fall_back_to_a_multiple_of_1024() -> None:
    assert needed(1431, 4) == 1435 and needed(1431, None) == 1431 + 256
    assert grown_sizes(1435, 8192) == [2048]
    assert grown_sizes(20312 + 256, 131072) == [32768, 21504]  # doubled first, then the tight one
    assert grown_sizes(7000, 8192) == [8192, 7168]  # never over the trained context
    assert grown_sizes(100, 8192) == [1024]


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"error": "text"}', _refusal(type="other_error"), b'{"error": {}}'],
)
def test_only_an_exceed_refusal_is_an_overflow(content: bytes) -> None:
    assert overflow_of(content) is None


@pytest.mark.parametrize("count", ["1431", True, -5, 0, 1.5, 1 << 50, None])
def test_the_engines_counts_are_read_as_a_strangers_numbers(count: Any) -> None:
    overflow = overflow_of(_refusal(n_prompt_tokens=count, n_ctx=count))
    assert overflow is not None and overflow.prompt_tokens is None and overflow.n_ctx is None
    error = engine_refusal(400, _refusal(n_prompt_tokens=count), "m")
    assert error.code == "context_length_exceeded" and "ctx_len=<tokens>" in error.message


def test_the_refusal_names_the_size_needed_not_a_fixed_one() -> None:
    error = engine_refusal(400, _refusal(n_prompt_tokens=20312, n_ctx=8192), "agent")
    assert isinstance(error, ContextExceeded) and error.status == 400
    assert "needs 20,568 tokens" in error.message and "loaded with 8,192" in error.message
    assert "ctx_len=21504" in error.message and "16384" not in error.message
    over = exceeded("m", Overflow(9000, 512, ""), room=4, trained=8192)
    assert "trained for 8,192" in over.message and "needs 9,004" in over.message
    assert "ctx_len=" not in over.message  # no context holds it: only a shorter request helps


def test_turns_keep_the_system_prompt_and_the_latest_user_message() -> None:
    def chat(*roles: str) -> list[dict[str, Any]]:
        return [{"role": r, "content": r} for r in roles]

    assert turns(chat("system", "user", "assistant", "user", "assistant", "user")) == (
        1, [(1, 3), (3, 5)]
    )  # fmt: skip
    assert turns(chat("assistant", "user", "assistant", "user")) == (0, [(0, 3)])
    assert turns(chat("system", "user")) == (1, [])
    assert turns(chat("system")) == (1, [])


def test_the_fitter_counts_each_message_once_across_resends() -> None:
    counted: list[str] = []

    class Tokens:
        status_code = 200

        def __init__(self, text: str) -> None:
            self.text = text

        async def read(self) -> bytes:
            return json.dumps({"tokens": [0] * len(self.text.split())}).encode()

    async def opener(path: str, body: dict[str, Any], keep_alive: float | None) -> Any:
        assert path == "/tokenize"
        counted.append(body["content"])
        return Tokens(body["content"])

    messages = [{"role": "system", "content": "brief"}]
    for i in range(5):
        messages.append({"role": "user", "content": f"u{i} " * 100})
        messages.append({"role": "assistant", "content": f"a{i}"})
    messages.append({"role": "user", "content": "last"})
    chat = {"model": "m", "messages": messages, "max_tokens": 10}
    fitter = Fitter(opener, chat, None)

    async def rounds() -> None:
        assert await fitter.drop_for(ContextExceeded("", prompt_tokens=600, n_ctx=512, need=610))
        assert fitter.dropped == 2 and chat["messages"][1]["content"].startswith("u1")
        assert await fitter.drop_for(ContextExceeded("", prompt_tokens=530, n_ctx=512, need=540))
        assert fitter.dropped == 4
        while await fitter.drop_for(ContextExceeded("", prompt_tokens=600, n_ctx=512, need=0)):
            pass

    asyncio.run(rounds())
    assert chat["messages"] == [messages[0], messages[-1]]  # the system prompt and the latest
    assert len(counted) == len(set(counted)) == 10  # every droppable message, once


def test_a_conversations_policy_is_checked_where_it_is_written() -> None:
    assert policy_of({"context_overflow": "stop"}, "drop-oldest") == "stop"
    assert policy_of({"context_overflow": "nonsense"}, "drop-oldest") == "drop-oldest"
    raw: dict[str, Any] = {"metadata": {}}
    apply_thread_changes(raw, {"metadata": {"context_overflow": "stop"}})
    assert raw["metadata"] == {"context_overflow": "stop"}
    with pytest.raises(InvalidRequest) as refused:
        apply_thread_changes(raw, {"metadata": {"context_overflow": "truncate"}})
    assert "'drop-oldest', 'stop'" in refused.value.message
    apply_thread_changes(raw, {"metadata": {"context_overflow": None}})
    assert raw["metadata"] == {}
