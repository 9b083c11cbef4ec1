"""Hearth's model list in Anthropic's Models API shape (GET /v1/models with `anthropic-version`).

Anthropic's `{"data": [{type, id, display_name, created_at}], has_more, first_id, last_id}`,
newest first, paged by `limit` (1 to 1000, default 20), `after_id` and `before_id` as its
API pages. Pure functions over the model objects `/v1/models` already lists, so the scan
behind the list stays the one OpenAI's shape uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hearth.core.errors import InvalidParameter

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def is_anthropic(headers: Mapping[str, str]) -> bool:
    """Anthropic's clients send `anthropic-version` on every request; OpenAI's never do."""
    return "anthropic-version" in headers


def _created(model: Mapping[str, Any]) -> int:
    """The model's `created` (Unix seconds), 0 when it is not a sane one."""
    created = model.get("created")
    ok = isinstance(created, int) and not isinstance(created, bool) and 0 <= created < 1 << 35
    return created if ok and isinstance(created, int) else 0


def anthropic_model(model: Mapping[str, Any]) -> dict[str, Any]:
    """One of Hearth's model objects as Anthropic's ModelInfo (`created_at` in RFC 3339)."""
    when = datetime.fromtimestamp(_created(model), UTC).isoformat().replace("+00:00", "Z")
    name = model.get("name")
    return {
        "type": "model",
        "id": model["id"],
        "display_name": name if isinstance(name, str) and name.strip() else model["id"],
        "created_at": when,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidParameter(f"limit: must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return value


def _position(ids: list[str], raw: str, param: str) -> int:
    try:
        return ids.index(raw)
    except ValueError:
        raise InvalidParameter(
            f"{param}: no model with id {raw[:100]!r} (take ids from this list's first_id or "
            "last_id).",
            param=param,
        ) from None


def anthropic_page(models: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of Anthropic's model list: the `limit` models after `after_id`, or the
    `limit` models right before `before_id`, newest first (ties by id, so pages are stable)."""
    ordered = sorted(models, key=lambda m: (-_created(m), str(m["id"])))
    ids = [str(m["id"]) for m in ordered]
    limit = _limit(query.get("limit"))
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidParameter("after_id and before_id: give one or the other.", param="after_id")
    if before is not None:
        end = _position(ids, before, "before_id")
        start = max(end - limit, 0)
        has_more = start > 0
    else:
        start = _position(ids, after, "after_id") + 1 if after is not None else 0
        end = min(start + limit, len(ids))
        has_more = end < len(ids)
    data = [anthropic_model(m) for m in ordered[start:end]]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
