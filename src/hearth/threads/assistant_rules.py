"""What an assistant means for a conversation: its snapshot in a thread, its instructions with
`{{current_date}}` filled in, and the sampling parameters a run may take from it.

Pure functions. Jan copies the assistant into the new thread's `assistants[0]` (the whole
object, plus `model: {id, engine}`): a snapshot, so a later edit of the assistant never
changes a conversation already started (web-app/src/services/threads/default.ts).

Jan renders `{{current_date}}` (any case, spaces allowed inside the braces) when it sends a
message, as today's date in UTC with the long English month, "August 16, 2025"
(web-app/src/lib/instructionTemplate.ts with utils/formatDate.ts `includeTime: false`).
Hearth renders the same way at each run, so the date is the day of the answer.

An assistant's `parameters` are a stranger's file: only sampling parameters a chat request
could set pass to a run (Jan's `max_output_tokens` as `max_tokens`); engine settings
(`ctx_len`), `stream` and anything unknown are ignored, and a value of the wrong type is
dropped and logged, so an assistant never picks an engine flag.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("hearth.threads")

_CURRENT_DATE = re.compile(r"\{\{\s*current_date\s*\}\}", re.IGNORECASE)
_NUMBERS = ("temperature", "top_p", "min_p", "typical_p", "frequency_penalty",
            "presence_penalty", "repeat_penalty")  # fmt: skip
_INTEGERS = ("max_tokens", "top_k", "seed", "repeat_last_n")
#: Jan's names for request fields.
_ALIASES = {"max_output_tokens": "max_tokens"}
MAX_STOP = 4
#: The engine a snapshot names (Jan's provider for local GGUF models).
ENGINE = "llamacpp"


def jan_date(when: datetime | None = None) -> str:
    """Today in UTC as Jan writes it: "December 8, 2026"."""
    day = (when or datetime.now(UTC)).astimezone(UTC)
    return f"{day:%B} {day.day}, {day.year}"


def render_instructions(text: str, when: datetime | None = None) -> str:
    """`text` with every `{{current_date}}` replaced by `jan_date(when)`."""
    if "{" not in text:
        return text
    date = jan_date(when)
    return _CURRENT_DATE.sub(lambda _: date, text)


def snapshot(assistant: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The thread's `assistants[0]` for a conversation started with `assistant`: every key it
    holds, with `model` as Jan writes it in a thread ({id, engine}) when a model is named
    (the assistant's own `model` is Jan's "*", any model)."""
    copied = dict(assistant)
    copied.pop("model", None)
    if model:
        copied["model"] = {"id": model, "engine": ENGINE}
    return copied


def sampling(parameters: Any, where: str = "assistant") -> dict[str, Any]:
    """The sampling parameters among an assistant's `parameters` that a run may send."""
    if not isinstance(parameters, dict):
        return {}
    out: dict[str, Any] = {}
    for name, value in parameters.items():
        key = _ALIASES.get(name, name)
        if key not in _NUMBERS and key not in _INTEGERS and key != "stop":
            continue  # an engine setting, `stream`, or unknown: never sent
        if name != key and key in parameters:
            continue  # the request's own name wins over Jan's alias
        if _fits(key, value):
            out[key] = int(value) if key in _INTEGERS else value
        else:
            log.warning("%s: parameter %r = %r is not a valid value; ignored",
                        where, name, str(value)[:40])  # fmt: skip
    return out


def _fits(key: str, value: Any) -> bool:
    if key == "stop":
        if isinstance(value, str):
            return True
        return (
            isinstance(value, list)
            and len(value) <= MAX_STOP
            and all(isinstance(v, str) for v in value)
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if key in _INTEGERS:
        return isinstance(value, int) or (math.isfinite(value) and value == int(value))
    return math.isfinite(value)
