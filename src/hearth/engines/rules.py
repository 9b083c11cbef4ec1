"""The engine kinds' rules for model.json files, as the store applies them.

The store (models/) sits below the engines and never imports them; the service layer hands it
these rules when it opens the store (services/core.py). They say what only the kinds know:
Jan's names for them, which are local, their parameters (checked in a file and in an edit with
the same messages as at launch) and the built-in remote profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.engines import registry
from hearth.engines.flags import ENGINE_JSON_HINT
from hearth.engines.remote import PROVIDERS


class KindRules:
    """`hearth.models.schema.EngineRules`, answered by the registry of installed kinds."""

    def canonical_name(self, name: str) -> str:
        return registry.canonical_name(name)

    def is_local(self, engine: str) -> bool:
        return registry.is_local(engine)

    def profile_url(self, engine: str) -> str | None:
        profile = PROVIDERS.get(engine)
        return profile[0] if profile is not None else None

    def check_model_parameters(self, engine: str, params: Mapping[str, Any]) -> None:
        """A file's engine_parameters; a message that points at llama-cpp's engine.json names
        this engine's instead."""
        kind = registry.local_kind(engine)
        assert kind is not None  # only asked about local models
        try:
            kind.validate_layer(params, "engine_parameters", unknown="keep")
        except InvalidParameter as exc:
            hint = ENGINE_JSON_HINT.replace("llama-cpp", engine)
            message = exc.message.replace(ENGINE_JSON_HINT, hint)
            raise InvalidParameter(message, param=exc.param) from None

    def check_new_parameters(self, engine: str, layer: Mapping[str, Any]) -> None:
        kind = registry.local_kind(engine)
        if kind is not None:
            kind.validate_layer(layer, "the edit's engine_parameters")


RULES = KindRules()
