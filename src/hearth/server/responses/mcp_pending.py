"""Responses that wait on an MCP approval, kept in memory so a client can continue one with
`previous_response_id` and an `mcp_approval_response`, as OpenAI's guide writes it (issue 26).

Hearth stores no responses; this is the one exception, and it is bounded: only responses that
ended with `mcp_approval_request` items, at most `MAX_KEPT` of them and `MAX_CHARS` characters
in all (the oldest go first), each for `KEEP_SECONDS`. What is kept is the conversation needed
to continue: the response's input items and its output items. A continuation is that, then the
new input, read as any input is (`mcp_input.py`): the stateless and the stored form are one
path. Nothing is written to disk; a restart forgets them (the stateless form still works).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State

MAX_KEPT = 256
MAX_CHARS = 64 * 1024 * 1024
KEEP_SECONDS = 3600.0


@dataclass(frozen=True)
class Kept:
    items: list[dict[str, Any]]  # input then output items, as the next request reads them
    chars: int
    until: float


class Pending:
    """The responses waiting on approval, by id (oldest first)."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._kept:
            oldest_id, oldest = next(iter(self._kept.items()))
            full = len(self._kept) > MAX_KEPT or self._chars > MAX_CHARS
            if oldest.until > now and not full:
                return
            del self._kept[oldest_id]
            self._chars -= oldest.chars

    def keep(self, response_id: str, items: list[dict[str, Any]]) -> None:
        """Keep a response that ended with approval requests (its input and output items)."""
        chars = len(json.dumps(items, ensure_ascii=False))
        if chars > MAX_CHARS:
            return  # too large to keep: the client still has the stateless form
        with self._lock:
            self._kept[response_id] = Kept(items, chars, time.monotonic() + KEEP_SECONDS)
            self._chars += chars
            self._expire(time.monotonic())

    def items(self, response_id: str) -> list[dict[str, Any]] | None:
        """The conversation a continuation starts from, or None when nothing waits."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            kept = self._kept.get(response_id)
            return None if kept is None or kept.until <= now else list(kept.items)


def pending_of(state: State) -> Pending:
    """The app's store, made on first use (an app without MCP requests never makes one)."""
    store = getattr(state, "mcp_pending", None)
    if not isinstance(store, Pending):
        store = Pending()
        state.mcp_pending = store
    return store


def continued(body: dict[str, Any], kept: list[dict[str, Any]]) -> dict[str, Any]:
    """The request body with the kept conversation before its own input."""
    given = body.get("input")
    rest = {k: v for k, v in body.items() if k != "previous_response_id"}
    if given is not None and not isinstance(given, str | list):
        return rest  # the input's own 400 says what is wrong with it
    new = [{"role": "user", "content": given}] if isinstance(given, str) else given or []
    return {**rest, "input": [*kept, *new]}
