"""The faces' side of an engine's event stream: the reader lives in `engines/events.py`; this
adds the `event:`-named SSE framing Anthropic and the Responses API write."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hearth.engines.events import engine_chunks, engine_error

__all__ = ["engine_chunks", "engine_error", "sse"]


def sse(event: Mapping[str, Any]) -> bytes:
    """One event as Anthropic and the Responses API write it: `event:` naming its type, then
    its data."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()
