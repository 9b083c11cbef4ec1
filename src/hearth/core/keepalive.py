"""`keep_alive`: how long an idle model stays loaded, read the one way everywhere.

Requests (`"keep_alive": "5m"` in an inference body or a start body), settings
(`HEARTH_KEEP_ALIVE`, settings.json) and model.json's engine parameters all accept the same
values, Ollama's: seconds as a number or a string, or a duration such as "30s", "5m", "1h30m";
0 unloads right after each request, any negative value means never (read as -1).

A leaf module (it imports only `hearth.core.errors` and pydantic) so the faces, the settings and
the engines can all use it without importing each other.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from hearth.core.errors import InvalidParameter

KEEP_ALIVE_HELP = 'seconds or a duration like "30s", "5m", "1h30m" (0 unloads at once, -1 never)'
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any) -> float:
    """How long a model stays loaded once idle, Ollama-style: 300, "300", "5m", "1h30m", -1.

    Negative means never unload (returned as -1.0); 0 means unload right after each request.
    Raises ValueError(KEEP_ALIVE_HELP) for anything else (booleans, NaN, "5 minutes", ...).
    """
    if isinstance(value, bool):
        raise ValueError(KEEP_ALIVE_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            seconds = sign * float(body)
        except ValueError:
            parts = _DURATION.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(KEEP_ALIVE_HELP) from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError(KEEP_ALIVE_HELP)
    if not math.isfinite(seconds):
        raise ValueError(KEEP_ALIVE_HELP)
    return -1.0 if seconds < 0 else seconds


def keep_alive_param(value: Any, param: str = "keep_alive") -> float:
    """`parse_keep_alive` for a request field: a 400 that names the field and the value."""
    try:
        return parse_keep_alive(value)
    except ValueError:
        raise InvalidParameter(
            f"'{param}' must be {KEEP_ALIVE_HELP}; got {_shown(value)}.", param=param
        ) from None


def _validated(value: Any) -> float:
    """For pydantic: its message becomes "Value error, must be seconds or a duration ..."."""
    try:
        return parse_keep_alive(value)
    except ValueError:
        raise ValueError(f"must be {KEEP_ALIVE_HELP}") from None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


#: A pydantic field type: `keep_alive: KeepAlive = 300.0` accepts every form above.
KeepAlive = Annotated[float, BeforeValidator(_validated)]
