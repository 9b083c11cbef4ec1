"""The short section `hearth models list` prints after the table in a Jan data folder: Jan's
remote providers, each with the engine.json that would enable it (for the user to add).

The answer comes from the running server (`GET /v1/jan/providers`) or, with no server, from the
folder through the same service function; either way it holds no key (see
services/jan_providers.py). Every text in it came from Jan's file, so it goes through `clean`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hearth.core.errors import HearthError

if TYPE_CHECKING:
    from hearth.cli.backend import LocalBackend
    from hearth.cli.remote import RemoteBackend

SHOWN_MODELS = 5


def providers_of(backend: RemoteBackend | LocalBackend) -> dict[str, Any]:
    """The providers answer from the server or the folder; a server that cannot answer (an
    older Hearth) gives an answer with its `error`, never a failed listing."""
    from hearth.cli.backend import LocalBackend

    if isinstance(backend, LocalBackend):
        from hearth.services.jan_providers import jan_providers

        return jan_providers(backend.services.settings)
    try:
        return backend.request_object("GET", "/v1/jan/providers")
    except HearthError as exc:
        return {"object": "list", "jan": True, "data": [], "error": exc.message}


def print_providers(answer: dict[str, Any]) -> None:
    """Jan's providers after the table: nothing when there are none and nothing went wrong."""
    from hearth.cli.output import clean, echo, paint

    data = answer.get("data") or []
    if answer.get("error"):
        echo(f"{paint('Jan providers', 'yellow')}: {clean(answer['error'], 1000)}")
    if not data:
        return
    echo("")
    echo(
        paint("Jan's remote providers", "bold")
        + " (Hearth uses none on its own; to serve one, add its engine.json and a model.json, "
        "and set the key variable):"
    )
    for provider in data:
        _print_one(provider)


def _print_one(p: dict[str, Any]) -> None:
    from hearth.cli.output import clean, echo, paint

    state = "active in Jan" if p.get("active") else "inactive in Jan"
    configured = p.get("configured")
    hearth = f"Hearth has it ({configured})" if configured else "not in Hearth yet"
    engine, name = clean(p.get("engine"), 80), clean(p.get("name"), 80)
    named = f"  ({name})" if name != engine else ""
    echo(f"  {paint(engine, 'cyan')}{named} · {state} · {hearth}")
    models = [clean(m, 80) for m in p.get("models") or []]
    total = p.get("models_total") or len(models)
    if models:
        more = f" (+{total - SHOWN_MODELS} more)" if total > SHOWN_MODELS else ""
        echo(f"    Jan's models: {', '.join(models[:SHOWN_MODELS])}{more}")
    if p.get("engine_json"):
        echo(f"    {clean(p.get('engine_json_path'), 500)}:")
        echo(f"      {clean(json.dumps(p['engine_json']), 3000)}")
        echo(f"    {clean(p.get('model_json_path'), 500)}:")
        echo(f"      {clean(json.dumps(p.get('model_json')), 1000)}")
        echo(
            f"    the key: export {clean(p.get('api_key_env'), 100)}=... (Jan keeps it in its "
            "keyring; Hearth never reads it)"
        )
    for note in p.get("notes") or []:
        echo(f"    {paint('note', 'yellow')}: {clean(note, 500)}")
