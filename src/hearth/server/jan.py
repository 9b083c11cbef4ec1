"""What Hearth shows of a Jan data folder beyond models and conversations: /v1/jan/providers.

Jan's remote providers (OpenAI, Anthropic, a custom one...) are shown with the engine.json that
would enable each in Hearth, for the user to add; Hearth never enables one on its own and never
reads their keys (services/jan_providers.py). A plain `def` route: the file is read in the
thread pool, never on the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from hearth.server.respond import services_of
from hearth.services.jan_providers import jan_providers

router = APIRouter(prefix="/v1/jan", tags=["jan"])


@router.get("/providers")
def providers(request: Request) -> dict[str, Any]:
    """Jan's remote providers (its `settings.json` `model-provider` entry), each with the
    `engines/<engine>/engine.json` that would enable it (`base_url` and the *name* of the
    environment variable to hold the key, never a key), the model.json one of its models needs,
    Jan's model ids for it, and whether Hearth already has an engine of that name (`configured`:
    `engine.json`, `built-in profile` or null). `jan` is false and `data` empty outside a Jan
    data folder; a settings.json Hearth cannot read is an `error` string, with `data` empty."""
    return jan_providers(services_of(request).settings)
