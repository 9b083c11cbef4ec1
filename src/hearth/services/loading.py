"""Loading a model for a request the way Ollama's API asks for it, and what is loaded now.

Ollama's clients load implicitly and name a context per request (`num_ctx`): Hearth does the
same through the engines (`Services.start_model`), bounded by the model's trained context, and
refuses up front what a model cannot do (images without a vision projector, thinking without a
thinking template) so nothing loads for a request that must fail. The model's facts may come
from its GGUF header: read in a worker thread, never on the event loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hearth.core.errors import InvalidParameter
from hearth.models.facts import facts_off_loop, model_capabilities
from hearth.models.store import ModelEntry

if TYPE_CHECKING:
    from hearth.services.core import Services

MIN_CTX = 256  # smaller contexts cannot hold a chat template's own tokens
MAX_CTX = 1 << 20  # when the GGUF does not say its trained context


def system_prompt(entry: ModelEntry) -> str | None:
    """The model's recorded system prompt (SYSTEM of a created or pulled model), if any."""
    meta = entry.info.metadata if entry.info is not None else {}
    value = meta.get("system_prompt") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


async def check_capabilities(
    entry: ModelEntry, name: str, *, images: bool, think: bool | str | None
) -> bool:
    """Refuse (400, naming the field) what the model cannot do, before anything loads; True
    when the model can think (else a request's thinking switch must not reach its template).
    `name` is the model as the client named it."""
    caps = model_capabilities(entry, await facts_off_loop(entry))
    if images and "vision" not in caps:
        raise InvalidParameter(
            f'"{name}" does not support images (no vision projector: add one with '
            "engine_parameters.mmproj)",
            param="images",
        )
    if think not in (None, False) and "thinking" not in caps:
        raise InvalidParameter(f'"{name}" does not support thinking', param="think")
    return "thinking" in caps


async def ensure_context(services: Services, entry: ModelEntry, num_ctx: int) -> None:
    """Have the model loaded with `num_ctx` tokens of context (clamped to what it was trained
    for, as Ollama does). A model loaded with another context is restarted once idle; the new
    one stays until another request asks otherwise or model.json changes."""
    trained = (await facts_off_loop(entry)).context_length or MAX_CTX
    wanted = max(MIN_CTX, min(num_ctx, trained, MAX_CTX))
    for model in services.running():
        if model["id"] == entry.id and model["engine_parameters"].get("ctx_len") == wanted:
            return
    await services.start_model(entry.id, {"ctx_len": wanted})


async def load(services: Services, entry: ModelEntry, num_ctx: int | None) -> int:
    """Make sure the model is loaded (with `num_ctx` when given); the nanoseconds that took
    (Ollama's load_duration; 1 for a remote model, which loads nothing here)."""
    started = time.monotonic_ns()
    assert entry.info is not None
    if entry.info.is_remote:
        return 1
    if num_ctx is not None:
        await ensure_context(services, entry, num_ctx)
    elif services.status_of(entry)[0] != "running":
        await services.start_model(entry.id)
    return time.monotonic_ns() - started


async def load_or_unload(
    services: Services, entry: ModelEntry, keep_alive: float | None, num_ctx: int | None
) -> str:
    """Ollama's empty request: load the model (keep_alive 0: unload it). "load" or "unload"."""
    if keep_alive == 0:
        await services.stop_model(entry.id)
        return "unload"
    body: dict[str, Any] = {} if keep_alive is None else {"keep_alive": keep_alive}
    if num_ctx is not None:
        await ensure_context(services, entry, num_ctx)
    await services.start_model(entry.id, body)
    return "load"
