"""Assistants: what the API (`/v1/assistants`) and a new conversation may do with
`<home>/assistants` (Jan's files, `hearth.threads.assistants`).

The list is OpenAI's list object; each assistant keeps Jan's fields (avatar, instructions,
parameters, ...) beside OpenAI's (`object`, `created_at`, `model`, `tools`, `metadata`). The
order is what a Jan user sees: Jan's default assistant `jan` first, then by name
(case-insensitive), then id. A broken assistant.json is listed with an `error` naming the
problem, so the user can find and fix it; it cannot start a conversation.

Create and modify take Jan's fields (and OpenAI's `temperature`/`top_p`, kept in
`parameters` as Jan keeps them); an unknown field is refused with the list of accepted ones.
Methods are synchronous file work; the HTTP face calls them from its thread pool.
"""

from __future__ import annotations

import uuid
from typing import Any

from hearth.core.errors import Conflict, InvalidRequest
from hearth.models.ids import id_from_filename, unique_id
from hearth.services.threads import page
from hearth.threads.assistant_rules import snapshot
from hearth.threads.assistants import AssistantStore, StoredAssistant, validate_assistant_id
from hearth.threads.edits import now
from hearth.threads.views import seconds

DEFAULT_ID = "jan"
#: Jan's placeholder in a thread started without an assistant (`{id: "model-only"}`).
MODEL_ONLY = "model-only"
_TEXT_LIMITS = {
    "name": 256,
    "avatar": 64,
    "description": 4096,
    "instructions": 256 * 1024,
    "model": 256,
    "thread_location": 1024,
}
_OBJECT_FIELDS = ("parameters", "metadata")
_LIST_FIELDS = ("tools", "file_ids")
_OPENAI_SAMPLING = ("temperature", "top_p")
MAX_KEYS = 100
MAX_ITEMS = 128
FIELDS = ("id", *_TEXT_LIMITS, *_OBJECT_FIELDS, *_LIST_FIELDS, *_OPENAI_SAMPLING)


def assistant_view(stored: StoredAssistant) -> dict[str, Any]:
    """The API's assistant object: Jan's keys as stored, OpenAI's with defaults; the id is the
    folder's name (the only id a request can reach)."""
    raw = stored.raw
    view: dict[str, Any] = {**raw, "id": stored.id, "object": "assistant"}
    created = seconds(raw.get("created_at"))
    name = raw.get("name")
    view.update(
        name=name if isinstance(name, str) and name else stored.id,
        created_at=created if created is not None else stored.mtime,
    )
    for key, default in (("model", "*"), ("instructions", None), ("description", None)):
        if not isinstance(view.get(key), str):
            view[key] = default
    for key in ("tools", "file_ids"):
        if not isinstance(view.get(key), list):
            view[key] = []
    for key in _OBJECT_FIELDS:
        if not isinstance(view.get(key), dict):
            view[key] = {}
    if stored.error:
        view["error"] = stored.error
    return view


def _order(view: dict[str, Any]) -> tuple[int, str, str]:
    return (view["id"] != DEFAULT_ID, str(view["name"]).casefold(), view["id"])


class AssistantService:
    """Assistants of one home."""

    def __init__(self, store: AssistantStore) -> None:
        self.store = store

    def list_assistants(
        self, limit: int = 100, after: str | None = None, order: str = "asc"
    ) -> dict[str, Any]:
        views = sorted(map(assistant_view, self.store.each()), key=_order)
        if order == "desc":
            views.reverse()
        return page(views, limit, after)

    def get_assistant(self, assistant_id: str) -> dict[str, Any]:
        return assistant_view(self.store.read(assistant_id))

    def create_assistant(self, body: Any) -> dict[str, Any]:
        """A new assistant.json in Jan's shape; the id is the body's, else made from the
        name (a free one), else a UUID."""
        fields = _checked(body, creating=True)
        wanted = fields.pop("id", None)
        if wanted is None:
            base = id_from_filename(fields["name"]) if fields.get("name") else ""
            wanted = unique_id(base, self.store.exists) if base else str(uuid.uuid4())
        raw: dict[str, Any] = {
            "id": wanted,
            "object": "assistant",
            "avatar": "",
            "name": wanted,
            "description": "",
            "created_at": now(),
            "model": "*",
            "instructions": "",
            "parameters": {},
            "tools": [],
            "file_ids": [],
            "metadata": {},
        }
        _apply(raw, fields)
        return assistant_view(self.store.create(wanted, raw))

    def modify_assistant(self, assistant_id: str, body: Any) -> dict[str, Any]:
        """Change the fields named (metadata merges, a key set to null is removed; null
        empties another field); every other key of the file is kept."""
        fields = _checked(body, creating=False)
        return assistant_view(self.store.update(assistant_id, lambda raw: _apply(raw, fields)))

    def delete_assistant(self, assistant_id: str) -> dict[str, Any]:
        self.store.delete(assistant_id)
        return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}

    def for_thread(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The snapshot a new thread starts with, from `assistant_id` or Jan's
        `assistants: [{"id": ...}]` (only the id is read; the rest comes from the file), or
        None when the body names none (or Jan's "model-only" placeholder)."""
        wanted = _named(body)
        if wanted is None or wanted == MODEL_ONLY:
            return None
        stored = self.store.read(wanted)
        if stored.error:
            raise Conflict(
                f"The assistant '{wanted}' cannot be used: assistants/{wanted}/assistant.json: "
                f"{stored.error}. Fix the file, or start the conversation with another one.",
                param="assistant_id",
            )
        model = body.get("model")
        copied = snapshot({**stored.raw, "id": wanted}, model if isinstance(model, str) else None)
        return copied


def _named(body: dict[str, Any]) -> str | None:
    by_id = body.get("assistant_id")
    if by_id is not None and not isinstance(by_id, str):
        raise InvalidRequest("'assistant_id' must be a string.", param="assistant_id")
    listed = body.get("assistants")
    from_list = None
    if listed is not None:
        first = listed[0] if isinstance(listed, list) and listed else None
        from_list = first.get("id") if isinstance(first, dict) else None
        if not isinstance(from_list, str):
            raise InvalidRequest(
                '\'assistants\' must be a list whose first item is {"id": "<assistant id>"} '
                "(or send 'assistant_id').",
                param="assistants",
            )
    if by_id is not None and from_list is not None and by_id != from_list:
        raise InvalidRequest(
            f"'assistant_id' ({by_id[:60]!r}) and 'assistants[0].id' ({from_list[:60]!r}) "
            "name different assistants; send one of them.",
            param="assistant_id",
        )
    wanted = by_id if by_id is not None else from_list
    return None if wanted is None else validate_assistant_id(wanted)


def _checked(body: Any, *, creating: bool) -> dict[str, Any]:
    """The body's fields, each checked (a 400 naming the field); nothing is applied yet."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object of assistant fields.")
    unknown = sorted(k for k in body if k not in FIELDS)
    if unknown or (not creating and "id" in body):
        shown = ", ".join(repr(k[:40]) for k in (unknown or ["id"])[:5])
        accepted = ", ".join(f for f in FIELDS if creating or f != "id")
        raise InvalidRequest(
            f"Unknown or unchangeable assistant field(s): {shown}. Accepted: {accepted}.",
            param=(unknown or ["id"])[0][:40],
        )
    for key, value in body.items():
        _check(key, value)
    return dict(body)


def _check(key: str, value: Any) -> None:
    if key == "id":
        validate_assistant_id(value if isinstance(value, str) else "")
    elif value is None:
        if key == "name":
            raise InvalidRequest("'name' must be a string.", param="name")
    elif key in _TEXT_LIMITS:
        if not isinstance(value, str) or len(value) > _TEXT_LIMITS[key]:
            raise InvalidRequest(
                f"'{key}' must be a string of at most {_TEXT_LIMITS[key]} characters.", param=key
            )
    elif key in _OBJECT_FIELDS:
        if not isinstance(value, dict) or len(value) > MAX_KEYS:
            raise InvalidRequest(
                f"'{key}' must be a JSON object of at most {MAX_KEYS} keys.", param=key
            )
    elif key in _LIST_FIELDS:
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise InvalidRequest(f"'{key}' must be a list of at most {MAX_ITEMS}.", param=key)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{key}' must be a number.", param=key)


def _apply(raw: dict[str, Any], fields: dict[str, Any]) -> None:
    """Write checked fields into the stored object (Jan's shape)."""
    for key, value in fields.items():
        if key in _OPENAI_SAMPLING:  # Jan keeps sampling in `parameters`
            params = raw["parameters"] if isinstance(raw.get("parameters"), dict) else {}
            raw["parameters"] = _merged(params, {key: value})
        elif key == "metadata" and value is not None:
            current = raw["metadata"] if isinstance(raw.get("metadata"), dict) else {}
            raw["metadata"] = _merged(current, value)
        elif value is None:
            empty: Any = {} if key in _OBJECT_FIELDS else [] if key in _LIST_FIELDS else ""
            raw[key] = None if key == "thread_location" else empty
        else:
            raw[key] = value


def _merged(current: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for name, item in change.items():
        if item is None:
            merged.pop(name, None)
        else:
            merged[name] = item
    return merged
