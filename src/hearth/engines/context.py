"""A request that does not fit the loaded context: the size it needs, and the error naming it.

llama.cpp refuses such a request before it evaluates anything (`exceed_context_size_error`, a
400 carrying `n_prompt_tokens` and the slot's `n_ctx`), so catching that refusal costs nothing
on the hot path: no request is tokenized twice to learn its length. The manager reads the
refusal here and either reloads the model with a larger context once (engines/manager.py) or
raises `ContextExceeded`, which names the size needed in every dialect (the faces write
HearthErrors in their own shape) and carries the numbers a thread run needs to drop turns
(services/thread_runs.py).

Sizes. What a request needs is its prompt plus its `max_tokens` (`DEFAULT_ROOM` when it sets
none, so an answer has room to start). A reload rounds that up to the next power of two (at
least `STEP`), capped at the trained context: a conversation grows every turn, and every reload
costs a load and the engine's prompt cache, so doubling bounds the reloads to log2(trained /
loaded) per model (8,192 to 131,072 in four) for at most twice the KV memory. When that size
does not fit the memory budget, the next multiple of `STEP` (the smallest sufficient size,
llama.cpp pads to 256 anyway) is tried before giving up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from hearth.core.errors import ContextExceeded

STEP = 1024
#: Room for the answer when a request sets no max_tokens.
DEFAULT_ROOM = 256
EXCEED = "exceed_context_size_error"


@dataclass(frozen=True, slots=True)
class Overflow:
    """What llama.cpp said about a request too long for its context."""

    prompt_tokens: int | None  # None: the engine did not say
    n_ctx: int | None
    message: str


def overflow_of(content: bytes) -> Overflow | None:
    """The overflow an engine's error body reports, or None for any other error."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or error.get("type") != EXCEED:
        return None
    message = error.get("message")
    text = message.strip() if isinstance(message, str) else ""
    return Overflow(_count(error.get("n_prompt_tokens")), _count(error.get("n_ctx")), text)


def _count(value: Any) -> int | None:
    """A token count from the engine's JSON (a stranger's number: a positive int or nothing)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 40:
        return None
    return value


def answer_room(body: Mapping[str, Any]) -> int | None:
    """The request's own max_tokens (OpenAI's two names, llama.cpp's n_predict), if a count."""
    for key in ("max_tokens", "max_completion_tokens", "n_predict"):
        value = _count(body.get(key))
        if value is not None:
            return value
    return None


def needed(prompt: int, room: int | None) -> int:
    """Tokens of context a request needs: its prompt and room for its answer."""
    return prompt + (room if room is not None else DEFAULT_ROOM)


def round_up(tokens: int, step: int = STEP) -> int:
    return -(-tokens // step) * step


def grown_sizes(need: int, trained: int) -> list[int]:
    """The contexts to try for `need` tokens, preferred first (see the module docstring), none
    over `trained`."""
    doubled = max(STEP, 1 << (need - 1).bit_length())
    sizes = [min(doubled, trained), min(round_up(need), trained)]
    return sorted(set(sizes), reverse=True)


def exceeded(
    model: str,
    overflow: Overflow,
    *,
    room: int | None = None,
    trained: int | None = None,
    why: str = "",
) -> ContextExceeded:
    """The error for a request that stays too long: the size it needs, the loaded and the
    trained context where known, why no reload helped (`why`), and what to change."""
    prompt, n_ctx = overflow.prompt_tokens, overflow.n_ctx
    if prompt is None:
        text = overflow.message or "The request does not fit the context"
        return ContextExceeded(
            f"{text.rstrip('.')}. Send fewer tokens (a shorter conversation or a lower "
            f"max_tokens), or give model '{model}' a larger context (engine_parameters.ctx_len, "
            f"e.g. `hearth models edit {model} engine_parameters.ctx_len=<tokens>`).",
            prompt_tokens=None, n_ctx=n_ctx, need=None,
        )  # fmt: skip
    need = needed(prompt, room)
    parts = f"a {prompt:,}-token prompt + " + (
        f"max_tokens {room:,}" if room is not None else f"{DEFAULT_ROOM} tokens to answer in"
    )
    loaded = f"; model '{model}' is loaded with {n_ctx:,}" if n_ctx else ""
    head = f"The request needs {need:,} tokens of context ({parts}){loaded}"
    if trained is not None and prompt + (room or 1) > trained:
        return ContextExceeded(
            f"{head}, and the model was trained for {trained:,} (n_ctx_train): no context "
            "can hold it. Send fewer tokens (a shorter conversation or a lower max_tokens).",
            prompt_tokens=prompt, n_ctx=n_ctx, need=need,
        )  # fmt: skip
    suggest = grown_sizes(need, trained or need)[-1] if trained else round_up(need)
    return ContextExceeded(
        f"{head}{why}. Send fewer tokens (a shorter conversation or a lower max_tokens), or "
        f"give the model a larger context: `hearth models edit {model} "
        f"engine_parameters.ctx_len={suggest}`.",
        prompt_tokens=prompt, n_ctx=n_ctx, need=need,
    )  # fmt: skip


class Refused:
    """An engine's refusal already read (to look at it), handed on as an answer."""

    status_code: int
    content_type = "application/json"
    is_event_stream = False
    errors_in_openai_shape = False

    def __init__(self, status: int, content: bytes) -> None:
        self.status_code = status
        self._content = content

    async def read(self) -> bytes:
        return self._content

    async def stream(self) -> AsyncIterator[bytes]:
        yield self._content

    async def close(self) -> None:
        return None
