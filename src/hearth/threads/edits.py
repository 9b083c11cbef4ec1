"""Requests that change a thread or a message, checked and applied to the stored objects.

Pure functions: a request body (already JSON) becomes a change of thread.json's or a message's
dict, or an InvalidRequest naming the field and the fix. The per-thread model, system prompt and
parameters live where Jan keeps them, in `assistants[0]` (`instructions`, `model.id`,
`model.parameters`, `model.settings`), so a thread edited here still opens in Jan.
"""

from __future__ import annotations

import time
from typing import Any

from hearth.core.errors import InvalidRequest
from hearth.models.ids import validate_any_id
from hearth.threads.ids import new_message_id
from hearth.threads.views import CONTEXT_POLICIES, text_part

ROLES = ("user", "assistant", "system")
STATUSES = ("ready", "pending", "error", "stopped")
MAX_TITLE = 1_000
MAX_PARAMETERS = 100
_THREAD_FIELDS = ("title", "model", "instructions", "parameters", "settings", "metadata")


def now() -> float:
    """Unix time in seconds with milliseconds: a thread's `created`/`updated`, as today's Jan
    writes them (`Date.now() / 1000`)."""
    return round(time.time(), 3)


def now_ms() -> int:
    """Unix time in milliseconds: a message's `created_at`/`completed_at`, as today's Jan
    writes them (`Date.now()`)."""
    return int(time.time() * 1000)


def need_object(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest(f"The body must be a JSON object of {what}.")
    return body


def new_thread(
    body: dict[str, Any], assistant: dict[str, Any] | None = None, provider: str | None = None
) -> dict[str, Any]:
    """thread.json for POST /v1/threads (the store sets `id`); `assistant`: the snapshot of the
    assistant it starts with (`assistants[0]`, as Jan copies it), whose fields the body's
    model and instructions then override; `provider`: the model's, in Jan's words
    (`llamacpp` for a local model, the engine's name for a remote one)."""
    stamp = now()
    raw: dict[str, Any] = {
        "object": "thread",
        "title": "",
        "assistants": [assistant] if assistant else [],
        "created": stamp,
        "updated": stamp,
        "metadata": {"is_favorite": False},
    }
    apply_thread_changes(raw, {k: v for k, v in body.items() if k in _THREAD_FIELDS}, provider)
    return raw


def apply_thread_changes(
    raw: dict[str, Any], body: dict[str, Any], provider: str | None = None
) -> None:
    """Apply the fields of a modify request present in `body`: `null` clears one, `metadata`
    merges (a key set to null is removed), the others replace. Checks every field first, so a
    bad one changes nothing. A new `model` gets `provider` as its Jan engine (default
    `llamacpp`)."""
    checked = {k: _check_field(k, body[k]) for k in _THREAD_FIELDS if k in body}
    for key, value in checked.items():
        if key == "title":
            raw["title"] = value or ""
        elif key == "metadata":
            merged = dict(raw["metadata"]) if isinstance(raw.get("metadata"), dict) else {}
            for name, item in (value or {}).items():
                if item is None:
                    merged.pop(name, None)
                else:
                    merged[name] = item
            raw["metadata"] = merged if value is not None else {}
        elif key == "instructions":
            _set(_assistant(raw), "instructions", value)
        elif key == "model":
            _set(_model(raw), "id", value)
            _set_top_model(raw, value, provider)
        else:
            _set(_model(raw), key, value)
    if checked:
        raw["updated"] = now()


def _check_field(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in ("title", "instructions", "model") and not isinstance(value, str):
        raise InvalidRequest(f"'{key}' must be a string or null.", param=key)
    if key == "title" and len(value) > MAX_TITLE:
        raise InvalidRequest(f"'title' is longer than {MAX_TITLE} characters.", param="title")
    if key == "model":
        validate_any_id(value)
    if key in ("parameters", "settings", "metadata"):
        if not isinstance(value, dict):
            raise InvalidRequest(f"'{key}' must be a JSON object or null.", param=key)
        if len(value) > MAX_PARAMETERS:
            raise InvalidRequest(f"'{key}' has more than {MAX_PARAMETERS} keys.", param=key)
    if key == "metadata" and value.get("context_overflow") not in (None, *CONTEXT_POLICIES):
        raise InvalidRequest(
            "'metadata.context_overflow' must be one of "
            f"{', '.join(map(repr, CONTEXT_POLICIES))} (or null for the server's setting).",
            param="metadata.context_overflow",
        )
    return value


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


#: Today's Jan's assistants[0] for a thread started with a model and no assistant
#: (services/threads/default.ts `createThread`).
MODEL_ONLY = {"id": "model-only", "name": "Model"}
#: The provider of a local model in Jan's `model.engine` / `model.provider`.
LOCAL_ENGINE = "llamacpp"


def _set_top_model(raw: dict[str, Any], model_id: str | None, provider: str | None) -> None:
    """The model's provider in assistants[0].model.engine, and today's Jan's top-level
    `model: {id, provider}` kept in step (Jan's reader takes assistants[0].model)."""
    if model_id is None:
        if isinstance(raw.get("model"), dict):
            del raw["model"]
        return
    engine = provider or LOCAL_ENGINE
    _model(raw)["engine"] = engine
    top = raw.get("model")
    raw["model"] = {**(top if isinstance(top, dict) else {}), "id": model_id, "provider": engine}


def _assistant(raw: dict[str, Any]) -> dict[str, Any]:
    """assistants[0], made (Jan's placeholder `model-only`) when the thread has none. An
    early draft's top-level fields move into it, so the views show what was just set."""
    assistants = raw.get("assistants")
    if not isinstance(assistants, list):
        assistants = []
    if not assistants or not isinstance(assistants[0], dict):
        assistants.insert(0, dict(MODEL_ONLY))
    raw["assistants"] = assistants
    first: dict[str, Any] = assistants[0]
    return first


def _model(raw: dict[str, Any]) -> dict[str, Any]:
    assistant = _assistant(raw)
    model = assistant.get("model")
    if not isinstance(model, dict):
        model = {}
        assistant["model"] = model
    for draft, key in (("model_id", "id"), ("parameters", "parameters"), ("settings", "settings")):
        if draft in raw and key not in model:
            model[key] = raw[draft]
        raw.pop(draft, None)
    return model


def content(value: Any, param: str = "content") -> list[dict[str, Any]]:
    """A message's content as Jan's parts: a string is one text part; parts may be text or
    images (`data:` URLs only: Hearth fetches no URL a request names)."""
    if isinstance(value, str):
        return [text_part(value)]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            f"'{param}' must be a string or a non-empty list of parts like "
            '{"type": "text", "text": "..."}.',
            param=param,
        )
    return [_part(part, f"{param}[{i}]") for i, part in enumerate(value)]


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        text = part.get("text")
        if isinstance(text, dict):
            text = text.get("value")
        if isinstance(text, str):
            return {**part, "text": {"value": text, "annotations": []}}
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str) and url.startswith("data:image/"):
            return {**part, "image_url": image if isinstance(image, dict) else {"url": url}}
        raise InvalidRequest(
            f"'{param}' must be an image as a data: URL (data:image/png;base64,...); Hearth "
            "fetches no URL a request names.",
            param=param,
        )
    raise InvalidRequest(
        f'\'{param}\' must be a text part {{"type": "text", "text": "..."}} or an image '
        '{"type": "image_url", "image_url": {"url": "data:image/..."}}.',
        param=param,
    )


def new_message(body: dict[str, Any], param: str = "") -> dict[str, Any]:
    """A message to append, from {role, content, metadata?} (and `status`, for imports of a
    page's own messages)."""
    role = body.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"'{param}role' must be one of {', '.join(ROLES)}.", param=f"{param}role"
        )
    message: dict[str, Any] = {
        "id": new_message_id(),
        "object": "thread.message",
        "role": role,
        "content": content(body.get("content"), f"{param}content"),
        "status": "ready",
        "created_at": now_ms(),
        "completed_at": now_ms(),
        "metadata": {},
    }
    apply_message_changes(message, {k: body[k] for k in ("metadata", "status") if k in body})
    return message


def apply_message_changes(message: dict[str, Any], body: dict[str, Any]) -> None:
    """PATCH of a message: `content` replaces, `status` is one of Jan's, `metadata` merges."""
    changes: dict[str, Any] = {}
    if "content" in body:
        changes["content"] = content(body["content"])
    if "status" in body:
        if body["status"] not in STATUSES:
            raise InvalidRequest(f"'status' must be one of {', '.join(STATUSES)}.", param="status")
        changes["status"] = body["status"]
    if "metadata" in body:
        metadata = body["metadata"]
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("'metadata' must be a JSON object or null.", param="metadata")
        merged = dict(message["metadata"]) if isinstance(message.get("metadata"), dict) else {}
        for name, item in (metadata or {}).items():
            if item is None:
                merged.pop(name, None)
            else:
                merged[name] = item
        changes["metadata"] = merged if metadata is not None else {}
    message.update(changes)
