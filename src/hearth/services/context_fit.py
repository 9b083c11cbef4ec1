"""A conversation longer than its model's context: drop its oldest turns, or stop saying so.

A thread run goes through the path of /v1/chat/completions, so a conversation that outgrows the
loaded context first grows it (engines/manager.py: once, up to the trained context and the
memory budget). What outgrows even that meets the conversation's policy (`POLICIES`: the
thread's `metadata.context_overflow`, else the `context_overflow` setting):

- "drop-oldest" (the default: a long chat keeps working, as a person expects of a chat window;
  LM Studio's "rolling window"): whole turns (a user message and the answers after it) leave
  what the model sees, oldest first. The system prompt and the latest user message always
  stay; the stored conversation is never changed, only what is sent, and the answer records
  how many messages were left out (`metadata.context_dropped`), which the page shows.
- "stop": the run ends with a 400 that says the conversation no longer fits and what to do.

Counting costs nothing while a conversation fits: the engine's own refusal says how long the
prompt is (`ContextExceeded.prompt_tokens`) and how large the context (`n_ctx`). Only then are
the oldest messages counted, one engine `/tokenize` each, until the tokens left out cover the
excess; a message's template tokens leave with it, so one resend normally fits (a few rounds at
most, each counting only messages not counted before: linear in the conversation, never
quadratic).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from hearth.core.errors import ContextExceeded
from hearth.engines.context import DEFAULT_ROOM, answer_room
from hearth.engines.proxy import Answer
from hearth.threads.views import CONTEXT_POLICIES

POLICIES = CONTEXT_POLICIES
#: Resends after dropping, at most (the first normally fits; images count only on resend).
ROUNDS = 3

Opener = Callable[[str, dict[str, Any], float | None], Awaitable[Answer]]


def policy_of(metadata: Any, default: str) -> str:
    """The conversation's own policy (thread metadata), else the setting's."""
    value = metadata.get("context_overflow") if isinstance(metadata, dict) else None
    return value if value in POLICIES else default


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def turns(messages: list[dict[str, Any]]) -> tuple[int, list[tuple[int, int]]]:
    """(where the conversation starts after the leading system prompt, the droppable turns
    as [start, end) ranges, oldest first). The turn holding the latest user message and
    everything after it is never droppable."""
    first = 1 if messages and messages[0].get("role") == "system" else 0
    starts = [i for i in range(first, len(messages)) if messages[i].get("role") == "user"]
    if not starts:
        return first, []
    bounds = [first, *starts[1:]] if starts[0] != first else starts
    return first, list(itertools.pairwise(bounds))


async def count(open_inference: Opener, model: str, text: str, keep_alive: float | None) -> int:
    """Tokens of `text` by the model's own tokenizer (the engine's /tokenize)."""
    answer = await open_inference("/tokenize", {"model": model, "content": text}, keep_alive)
    content = await answer.read()
    if answer.status_code != 200:
        return len(text) // 4 + 1  # an engine without /tokenize: a rough count, the resend checks
    try:
        tokens = json.loads(content).get("tokens")
    except (ValueError, AttributeError):
        tokens = None
    return len(tokens) if isinstance(tokens, list) else len(text) // 4 + 1


class Fitter:
    """Drops a chat body's oldest turns across resends, counting each message once."""

    def __init__(self, open_inference: Opener, chat: dict[str, Any], keep_alive: float | None):
        self.open_inference = open_inference
        self.chat = chat
        self.keep_alive = keep_alive
        self.original: list[dict[str, Any]] = list(chat["messages"])
        self.first, self.ranges = turns(self.original)
        self.dropped_turns = 0
        self.rounds = 0
        self.counts: dict[int, int] = {}

    @property
    def dropped(self) -> int:
        """Messages left out of what the model sees."""
        return len(self.original) - len(self.chat["messages"])

    async def drop_for(self, exc: ContextExceeded) -> bool:
        """Leave out enough of the oldest turns for what `exc` says; False when nothing is left
        to drop (only the system prompt and the latest turn remain)."""
        assert exc.prompt_tokens is not None and exc.n_ctx is not None
        self.rounds += 1
        room = answer_room(self.chat) or min(DEFAULT_ROOM, exc.n_ctx // 4)
        excess = exc.prompt_tokens + room - exc.n_ctx
        left = self.ranges[self.dropped_turns :]
        if not left:
            return False
        removed = 0
        model = str(self.chat["model"])
        for start, end in left:
            for i in range(start, end):
                if i not in self.counts:
                    text = _text(self.original[i])
                    self.counts[i] = await count(self.open_inference, model, text, self.keep_alive)
                removed += self.counts[i]
            self.dropped_turns += 1
            if removed >= excess:
                break
        cut = self.ranges[self.dropped_turns - 1][1]
        self.chat["messages"] = self.original[: self.first] + self.original[cut:]
        return True
