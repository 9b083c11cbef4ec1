"""The ranges a model.json's numbers may take: one table for files, edits and start bodies.

A model.json may come from anyone (a share, a pull, a colleague), and an edit from any local
client. A number far outside what any engine can use (`ctx_len: 10**30`, `n_parallel: 10**9`,
`created: 10**40`) is refused with the field, the range and the fix, so a file holding one is
listed `invalid` and an edit holding one writes nothing. The bounds are generous: every value a
real tool (Jan, Ollama's registry, llama.cpp's documentation) writes lies inside them.
README's "model.json" and "Engine parameters" tables list them.
"""

from __future__ import annotations

import math
from typing import Any

Range = tuple[float, float]

#: engine_parameters: what one engine process is started with.
ENGINE_RANGES: dict[str, Range] = {
    "ctx_len": (1, 1 << 24),  # 16,777,216 tokens: past the largest context any model has
    "ngl": (-1, 100_000),  # -1 or a big number (Jan's 100, 999): every layer
    "n_parallel": (1, 256),
    "cpu_threads": (-1, 4096),  # -1 or 0: llama.cpp's own choice
}

#: model_parameters: the defaults a model fills into a request that leaves them out.
MODEL_RANGES: dict[str, Range] = {
    "max_tokens": (-1, 1 << 24),  # -1: no limit (llama.cpp's)
    "temperature": (0, 100),
    "top_p": (0, 1),
    "min_p": (0, 1),
    "typical_p": (0, 1),
    "top_k": (-1, 1_000_000),  # 0 or -1: off
    "frequency_penalty": (-2, 2),
    "presence_penalty": (-2, 2),
    "repeat_penalty": (0, 100),
    "repeat_last_n": (-1, 1 << 24),  # -1: the whole context
    "seed": (-1, (1 << 63) - 1),  # -1: random; OpenAI's seed is a signed 64-bit number
    "mirostat": (0, 2),
    "mirostat_tau": (0, 100),
    "mirostat_eta": (0, 100),
}

#: `created`: Unix seconds; Jan wrote milliseconds in some versions, so up to year 9999 in ms.
CREATED_RANGE: Range = (0, 253_402_300_799_999)
#: `sources[].size`: bytes, at most 2**53 (what any JSON reader holds exactly).
SIZE_RANGE: Range = (0, 1 << 53)


def shown(number: float) -> str:
    """A bound as a person reads it: 16,777,216, not 16777216.0."""
    if float(number).is_integer():
        return f"{int(number):,}"
    return f"{number:g}"


def range_problem(value: Any, bounds: Range) -> str | None:
    """Why `value` (already a number) is outside `bounds`, or None. NaN and infinities are
    outside every range (Python's json reads `NaN` and `Infinity`)."""
    low, high = bounds
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    if low <= value <= high:
        return None
    return f"outside {shown(low)} to {shown(high)}"


def range_message(field: str, value: Any, bounds: Range) -> str:
    """The error for an out-of-range number: the field, what it got, the range and the fix."""
    got = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    low, high = bounds
    return (
        f"'{field}' is {got}, {range_problem(value, bounds)}: set it to a number from "
        f"{shown(low)} to {shown(high)}, or remove it for the default."
    )
