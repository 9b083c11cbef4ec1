"""Jan's remote providers, shown with the Hearth engine.json that would enable each; never used.

Jan keeps the remote providers it talks to (OpenAI, Anthropic, OpenRouter, a custom one...) in
the `model-provider` entry of its own `<data>/settings.json`: a flat JSON object of strings whose
value is a serialised Zustand blob, `{"state": {"providers": [{provider, active, base_url,
api_key?, custom_header, settings, models: [{id, ...}]}]}, "version": N}`
(../shared/spec/jan-data-folder.md section 8). Their keys live in Jan's keyring, or, in older
builds, in that blob in plain text.

Hearth never enables one of them on its own and never touches a key: each provider is reduced
to a whitelist of fields (name, active, base URL, model ids, custom header *names*) before
anything else looks at it, so `api_key`, `api_key_fallbacks` and header values are dropped on
read and cannot reach an answer, a log line or the CLI. What is shown is the
`engines/<name>/engine.json` the user may add (URL and the *name* of an environment variable for
the key) and the model.json a model of it needs.

The file is a stranger's: bounded in size, parsed with every shape tolerated (a broken blob is
an `error` in the answer, never an exception), names sanitised before they become folder names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hearth.core.config import Settings
from hearth.core.strangefile import read_regular
from hearth.engines import registry
from hearth.engines.remote import PROVIDERS
from hearth.models.ids import is_valid_id

#: Jan's settings.json holds a few serialised stores; a provider list with hundreds of
#: OpenRouter models is about a megabyte. Anything larger is not Jan's file.
MAX_SETTINGS_BYTES = 8 << 20
MAX_PROVIDERS = 200
MAX_MODELS = 1000
MAX_NAME = 64
MAX_URL = 2048
MAX_MODEL_ID = 256
#: Jan's own engines (on this machine): not remote providers.
LOCAL_ENGINES = frozenset({"llamacpp", "mlx", "cortex", "llama.cpp"})
#: Key variables for the providers Jan ships that Hearth has no built-in profile for.
KEY_VARIABLES = {
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "google": "GEMINI_API_KEY",
    "cohere": "COHERE_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
    "huggingface": "HUGGINGFACE_API_KEY",
}
_BAD_RUN = re.compile(r"[^a-z0-9._\-]+")
_ENV_BAD = re.compile(r"[^A-Z0-9]+")
#: Runs of separators ("--", "..", "-.-") become one "-": no ".." even inside a name.
_RUNS = re.compile(r"[-.]{2,}")


def engine_folder(name: str, index: int) -> str:
    """A provider's name as a folder under engines/: lower-case letters, digits, `.`, `_`,
    `-`, never starting with `.` or `-` (so never `..`, a path, or hidden), at most 64 chars."""
    candidate = _BAD_RUN.sub("-", name.lower()).strip("-.")
    candidate = _RUNS.sub("-", candidate)[:MAX_NAME].rstrip("-.")
    return candidate if is_valid_id(candidate) else f"jan-provider-{index + 1}"


def key_variable(engine: str) -> str:
    """The environment variable the engine.json names for the key (never the key itself)."""
    if engine in PROVIDERS:
        return PROVIDERS[engine][1]
    if engine in KEY_VARIABLES:
        return KEY_VARIABLES[engine]
    stem = _ENV_BAD.sub("_", engine.upper()).strip("_") or "JAN_PROVIDER"
    return f"{'P_' if stem[0].isdigit() else ''}{stem}_API_KEY"


def _clean_url(value: Any) -> tuple[str | None, list[str]]:
    """An http(s) URL with no user info, query or fragment (they may carry a key), or None
    with the reason."""
    if not isinstance(value, str) or not value.strip():
        return None, ["Jan names no base URL for it, so there is nothing to point an engine at."]
    if len(value) > MAX_URL:
        return None, [f"Its base URL is longer than {MAX_URL} characters; not used."]
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None, ["Its base URL is not a URL; not used."]
    if parts.scheme not in ("http", "https") or not host:
        shown = parts.scheme or "no scheme"
        return None, [f"Its base URL is not http(s) ({shown}): Hearth only sends to http(s)."]
    notes = []
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        notes.append(
            "The base URL's user info, query or fragment were left out (they may hold a key): "
            "put the key in the environment variable instead."
        )
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), notes


def _model_ids(value: Any) -> tuple[list[str], int]:
    """Jan's model ids for the provider (strings only, bounded), and how many there were."""
    if not isinstance(value, list):
        return [], 0
    ids = []
    for item in value[:MAX_MODELS]:
        model_id = item.get("id") if isinstance(item, dict) else None
        if isinstance(model_id, str) and 0 < len(model_id) <= MAX_MODEL_ID:
            ids.append(model_id)
    return ids, len(value)


def _header_names(value: Any) -> list[str]:
    """The names of Jan's custom headers for the provider (their values may be keys)."""
    if not isinstance(value, list):
        return []
    names = [h.get("header") for h in value[:50] if isinstance(h, dict)]
    return [n[:100] for n in names if isinstance(n, str) and n]


def _hearth_model_id(engine: str, upstream: str) -> str:
    """A Hearth id for one of the provider's models: `<engine>-<model>`, sanitised."""
    candidate = _BAD_RUN.sub("-", f"{engine}-{upstream}".lower()).strip("-.")
    candidate = _RUNS.sub("-", candidate)[:128].rstrip("-.")
    return candidate if is_valid_id(candidate) else f"{engine}-model"


def _configured(settings: Settings, engine: str) -> str | None:
    """Whether Hearth already has an engine of that name: its own engine.json, a built-in
    profile, or None (a stat call; engine.json's contents are not read)."""
    if (settings.engines_dir / engine / "engine.json").is_file():
        return "engine.json"
    return "built-in profile" if engine in PROVIDERS else None


def _engine_name(name: str, index: int, taken: set[str]) -> str:
    """The engine folder for a provider: sanitised, never the name (or an alias) of an engine
    kind Hearth has (`llama-cpp`, `openai-compatible`...: its engine.json is another engine's),
    never one already suggested (two names that sanitise alike stay apart)."""
    engine = engine_folder(name, index)
    if registry.get(engine) is not None or registry.canonical_name(engine) != engine:
        engine = f"jan-{engine}"[:MAX_NAME]
    if engine in taken:
        engine = f"{engine[:50]}-{index + 1}"
    taken.add(engine)
    return engine


def _notes(
    engine: str, base_url: str | None, configured: str | None, raw: dict[str, Any]
) -> list[str]:
    """What the user should know beside the suggestion (headers Hearth would not send, the
    built-in profile of the same name)."""
    notes = []
    headers = _header_names(raw.get("custom_header"))
    if headers:
        notes.append(
            f"Jan sends custom headers ({', '.join(headers)}); Hearth's openai-compatible "
            "engine sends only the key."
        )
    if configured == "built-in profile" and base_url:
        builtin = PROVIDERS[engine][0]
        notes.append(
            f"Hearth's built-in '{engine}' profile already sends to {builtin}: a model.json "
            "and the key variable are enough."
            if base_url == builtin
            else f"Hearth's built-in '{engine}' profile sends to {builtin}; add the engine.json "
            "to use Jan's URL instead."
        )
    return notes


def describe(
    settings: Settings, raw: dict[str, Any], index: int, taken: set[str]
) -> dict[str, Any] | None:
    """One provider as shown, built from whitelisted fields only; None for Jan's local engines."""
    name = raw.get("provider")
    if not isinstance(name, str) or not name.strip():
        name = f"provider {index + 1}"
    if name.strip().lower() in LOCAL_ENGINES:
        return None
    engine = _engine_name(name, index, taken)
    base_url, url_notes = _clean_url(raw.get("base_url"))
    models, total = _model_ids(raw.get("models"))
    key_env = key_variable(engine)
    configured = _configured(settings, engine)
    upstream = models[0] if models else "MODEL-NAME"
    model_id = _hearth_model_id(engine, upstream)
    return {
        "name": name[:200],
        "engine": engine,
        "active": raw.get("active") is True,
        "base_url": base_url,
        "api_key_env": key_env,
        "configured": configured,
        "engine_json_path": str(settings.engines_dir / engine / "engine.json"),
        "engine_json": (
            {"type": "openai-compatible", "base_url": base_url, "api_key_env": key_env}
            if base_url
            else None
        ),
        "model_json_path": str(settings.models_dir / model_id / "model.json"),
        "model_json": {"engine": engine, "format": "api", "engine_parameters": {"model": upstream}},
        "models": models,
        "models_total": total,
        "notes": url_notes + _notes(engine, base_url, configured, raw),
    }


def _scrub(value: Any) -> Any:
    """Strings made valid UTF-8 (a lone surrogate from the file would fail the answer's
    encoding: a 500), in lists and dicts too."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    return value


def _read_blob(path: Path) -> tuple[list[Any], str | None]:
    """The `providers` list in Jan's settings.json, or [] and why not (never raises)."""
    try:
        data = read_regular(path, MAX_SETTINGS_BYTES)  # a FIFO here would block the server
    except FileNotFoundError:
        return [], None  # Jan has not saved settings yet (or an older Jan keeps them elsewhere)
    except OSError as exc:
        return [], f"Jan's {path} could not be read ({exc.strerror or type(exc).__name__})."
    if len(data) > MAX_SETTINGS_BYTES:
        return [], f"Jan's {path} is larger than {MAX_SETTINGS_BYTES >> 20} MiB; not read."
    try:
        outer = json.loads(data)
        blob = outer.get("model-provider") if isinstance(outer, dict) else None
        if isinstance(blob, str):
            blob = json.loads(blob)
    except (ValueError, RecursionError):
        return [], f"Jan's {path} is not valid JSON (or its model-provider entry is not)."
    if not isinstance(outer, dict):
        return [], f"Jan's {path} is not a JSON object (Jan writes one of strings)."
    if blob is None:
        return [], None
    state = blob.get("state") if isinstance(blob, dict) else None
    providers = state.get("providers") if isinstance(state, dict) else None
    if not isinstance(providers, list):
        return [], f"The model-provider entry of Jan's {path} has no providers list."
    return providers, None


def jan_providers(settings: Settings) -> dict[str, Any]:
    """Jan's remote providers with the engine.json each would need (file work: call it off
    the event loop). Outside a Jan folder the list is empty."""
    answer: dict[str, Any] = {"object": "list", "jan": settings.jan, "data": [], "error": None}
    if not settings.jan:
        return answer
    path = settings.home / "settings.json"
    providers, error = _read_blob(path)
    answer["source"] = str(path)
    answer["error"] = error
    if len(providers) > MAX_PROVIDERS:
        answer["error"] = f"Jan lists {len(providers)} providers; the first {MAX_PROVIDERS} shown."
    taken: set[str] = set()
    for index, raw in enumerate(providers[:MAX_PROVIDERS]):
        shown = describe(settings, raw, index, taken) if isinstance(raw, dict) else None
        if shown is not None:
            answer["data"].append(_scrub(shown))
    return answer
