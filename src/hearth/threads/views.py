"""What the API shows of a stored thread or message: Jan's variants read as one shape.

Pure functions over the dicts read from disk. Nothing here writes: a message stored with string
content or millisecond timestamps is shown normalised (content as a list of parts, times in
seconds) but stays as it is on disk until that message is edited.

Jan wrote `created`/`updated` in seconds in some versions and milliseconds in others (and
fractional seconds in 0.6); a value above 1e12 is milliseconds. Early drafts of thread.json put
`model_id`, `settings`, `parameters` and `instructions` at the top level instead of in
`assistants[0]`: the views read either.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any

from hearth.threads.jan import legacy_model_id

#: Above this a unix time is in milliseconds (1e12 s is the year 33658).
_MILLIS = 1e12
_THREAD_TIMES = ("created", "updated")
_MESSAGE_TIMES = ("created", "created_at", "updated", "completed_at")
#: Shown as views of assistants[0]; never passed through from the top level as they are.
#: What a conversation too long for its model does (its `metadata.context_overflow`; the
#: server's `context_overflow` setting when unset): services/context_fit.py.
CONTEXT_POLICIES = ("drop-oldest", "stop")
_THREAD_VIEWS = ("model", "instructions", "parameters", "settings", "messages")


def seconds(value: Any) -> float | int | None:
    """A unix time in seconds from seconds, milliseconds or an ISO 8601 string; None if none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            return None
        if not math.isfinite(number) or number < 0:  # Python's json reads NaN and Infinity
            return None
        return number / 1000 if number > _MILLIS else value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def first_assistant(raw: dict[str, Any]) -> dict[str, Any]:
    assistants = raw.get("assistants")
    if isinstance(assistants, list) and assistants and isinstance(assistants[0], dict):
        return assistants[0]
    return {}


def assistant_model(raw: dict[str, Any]) -> dict[str, Any]:
    model = first_assistant(raw).get("model")
    return model if isinstance(model, dict) else {}


def thread_model(raw: dict[str, Any]) -> str | None:
    """assistants[0].model.id (as Jan reads it), else today's top-level `model.id`, else an
    early draft's `model_id`; Jan's legacy `author:repo:file` ids read as `author/repo`.
    Jan's `"*"` (no model chosen) is no model."""
    top = raw.get("model")
    top_id = top.get("id") if isinstance(top, dict) else None
    for value in (assistant_model(raw).get("id"), top_id, raw.get("model_id")):
        if isinstance(value, str) and value and value != "*":
            return legacy_model_id(value)
    return None


def thread_instructions(raw: dict[str, Any]) -> str | None:
    for value in (first_assistant(raw).get("instructions"), raw.get("instructions")):
        if isinstance(value, str):
            return value
    return None


def thread_parameters(raw: dict[str, Any], key: str = "parameters") -> dict[str, Any]:
    """assistants[0].model.<key> (Jan's per-thread overrides), else the top-level draft field.
    `key` is "parameters" (sampling) or "settings" (engine)."""
    for value in (assistant_model(raw).get(key), raw.get(key)):
        if isinstance(value, dict):
            return dict(value)
    return {}


def thread_view(raw: dict[str, Any], thread_id: str, fallback_time: float) -> dict[str, Any]:
    """The API's thread object: Jan's fields with defaults, unknown ones passed through."""
    view: dict[str, Any] = {"id": thread_id, "object": "thread"}
    view.update((k, v) for k, v in raw.items() if k not in _THREAD_VIEWS)
    created = seconds(raw.get("created"))
    updated = seconds(raw.get("updated"))
    created = created if created is not None else (updated or fallback_time)
    assistants = raw.get("assistants")
    metadata = raw.get("metadata")
    title = raw.get("title")
    view.update(
        id=thread_id,
        object="thread",
        title=title if isinstance(title, str) else "",
        created=created,
        updated=updated if updated is not None else created,
        assistants=assistants if isinstance(assistants, list) else [],
        metadata=metadata if isinstance(metadata, dict) else {},
        model=thread_model(raw),
        instructions=thread_instructions(raw),
        parameters=thread_parameters(raw),
        settings=thread_parameters(raw, "settings"),
    )
    return view


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": {"value": text, "annotations": []}}


def content_parts(content: Any) -> list[Any]:
    """Jan's list of parts from any stored content: a string is one text part, and a text part
    whose `text` is a plain string (OpenAI's input shape) gets Jan's `{value, annotations}`."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    if not isinstance(content, list):
        return [text_part(str(content))]
    parts: list[Any] = []
    for part in content:
        if isinstance(part, str):
            parts.append(text_part(part))
        elif (
            isinstance(part, dict)
            and part.get("type") in ("text", "reasoning")
            and isinstance(part.get("text"), str)
        ):
            parts.append({**part, "text": {"value": part["text"], "annotations": []}})
        else:
            parts.append(part)
    return parts


def part_text(part: Any) -> str:
    """The text of one part ("" for images, tool calls and reasoning)."""
    if not isinstance(part, dict) or part.get("type") != "text":
        return ""
    text = part.get("text")
    if isinstance(text, dict):
        value = text.get("value")
        return value if isinstance(value, str) else ""
    return text if isinstance(text, str) else ""


def message_text(raw: dict[str, Any]) -> str:
    """All the text of a message's parts, joined (what search and the engine read)."""
    return "\n".join(t for t in map(part_text, content_parts(raw.get("content"))) if t)


def stored_id(raw: dict[str, Any]) -> str | None:
    """The message's own id as a string (Jan's drafts stored numbers), None if it has none."""
    value = raw.get("id")
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def message_id(raw: dict[str, Any], line: bytes) -> str:
    """The stored id; a message stored without one gets an id derived from its line, stable as
    long as the line is unchanged (so it can still be read and edited; an edit, which changes
    the line, stores this id in it: `ThreadStore.edit_message`)."""
    value = stored_id(raw)
    return value if value is not None else "line-" + hashlib.sha256(line).hexdigest()[:20]


def message_view(raw: dict[str, Any], msg_id: str, thread_id: str) -> dict[str, Any]:
    """The API's message object: Jan's/OpenAI's fields with defaults, unknown ones kept."""
    view: dict[str, Any] = {"id": msg_id, "object": "thread.message", **raw}
    for key in _MESSAGE_TIMES:
        if key in raw:
            view[key] = seconds(raw[key])
    created = seconds(raw.get("created_at"))
    if created is None:
        created = seconds(raw.get("created"))
    completed = seconds(raw.get("completed_at"))
    if completed is None and raw.get("updated") is not None:
        completed = seconds(raw.get("updated"))
    status = raw.get("status")
    metadata = raw.get("metadata")
    role = raw.get("role")
    view.update(
        id=msg_id,
        object="thread.message",
        thread_id=thread_id,
        role=role if isinstance(role, str) else "user",
        content=content_parts(raw.get("content")),
        status=status if isinstance(status, str) else "ready",
        created_at=created,
        metadata=metadata if isinstance(metadata, dict) else {},
    )
    if completed is not None:
        view["completed_at"] = completed
    return view
