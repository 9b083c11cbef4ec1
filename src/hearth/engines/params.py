"""Engine parameters for llama.cpp: the known names, their types, merging, and `llama-server` flags.

Three layers merge, later wins: the engine's `engine.json` < the model's `engine_parameters`
< the body of a start request. A `None` value means "not set here" (so a request can send
`null` without clearing anything). Every layer is validated on its own so an error names the
file it came from. Old Jan files quote everything ("2048", "true"); values are coerced and an
impossible one is an `InvalidParameter` that says what was expected.

`ctx_len` is what *each* request may use. llama.cpp splits `-c` across its `-np` slots, so the
flags ask for ctx_len × n_parallel cells (the most common surprise with llama-server).
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from hearth.core import atomic
from hearth.core.errors import InvalidParameter
from hearth.core.keepalive import KEEP_ALIVE_HELP, parse_keep_alive
from hearth.engines.flags import (
    ENGINE_JSON_HINT,
    USER_ONLY_WHY,
    check_extra_args,
    plain_relative_path,
)
from hearth.engines.registry import COMMON
from hearth.models.limits import ENGINE_RANGES, shown

__all__ = ["KEEP_ALIVE_HELP", "parse_keep_alive"]  # their home is hearth.core.keepalive

CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
FLASH_ATTN = ("on", "off", "auto")
POOLING = ("none", "mean", "cls", "last", "rank")
DEFAULTS: dict[str, Any] = {"ctx_len": 4096, "n_parallel": 1}

# Jan/Cortex settings Hearth accepts and keeps but does not pass to the engine.
INFORMATIONAL = frozenset(
    {
        "vision_model",
        "text_model",
        "pre_prompt",
        "engine",
        "model_type",
        "caching_enabled",
        "cache_enabled",
        "use_mmap",
        "grp_attn_n",
        "grp_attn_w",
        "n_probs",
        "clean_cache_threshold",
    }
)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError("true or false")


def _int(name: str) -> Callable[[Any], int]:
    """A whole number inside `ENGINE_RANGES[name]` (hearth.models.limits: one table for
    model.json, edits and start bodies), so `ctx_len: 10**30` never reaches a command line."""
    low, high = (int(b) for b in ENGINE_RANGES[name])
    expected = f"an integer from {shown(low)} to {shown(high)}"

    def coerce(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(expected)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ValueError(expected) from None
        if not isinstance(value, int) or not low <= value <= high:
            raise ValueError(expected)
        return value

    return coerce


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a file path")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def coerce(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ValueError("one of " + ", ".join(choices))

    return coerce


def _flash_attn(value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in FLASH_ATTN:
        return value.strip().lower()
    try:
        return "on" if _bool(value) else "off"
    except ValueError:
        raise ValueError("on, off, auto, true or false") from None


def _args(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError:
            raise ValueError("a list of strings (the text has an unclosed quote)") from None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("a list of strings")


# name -> coercion. Informational keys pass through unchanged.
COERCE: dict[str, Callable[[Any], Any]] = {
    "ctx_len": _int("ctx_len"),
    "ngl": _int("ngl"),
    "embedding": _bool,
    "pooling": _choice(POOLING),  # embeddings from a chat model need mean/last (GGUF default: none)
    "n_parallel": _int("n_parallel"),
    "cpu_threads": _int("cpu_threads"),
    "cont_batching": _bool,
    "flash_attn": _flash_attn,
    "mmproj": _path,
    "llama_model_path": _path,  # Jan's; the store resolves it and checks where it points
    "cache_type": _choice(CACHE_TYPES),
    "cache_type_k": _choice(CACHE_TYPES),
    "cache_type_v": _choice(CACHE_TYPES),
    "mlock": _bool,
    "chat_template": _str,
    "prompt_template": _str,
    "system_prompt": _str,
    "user_prompt": _str,
    "ai_prompt": _str,
    "binary": _path,
    "extra_args": _args,
    **COMMON,  # keep_alive, replicas, replica_routing: Hearth's scheduling, never a flag
}
KNOWN = frozenset(COERCE) | INFORMATIONAL


def validate_engine_params(
    params: Mapping[str, Any] | None,
    source: str,
    *,
    trusted: bool = False,
    unknown: Literal["error", "keep"] = "error",
) -> dict[str, Any]:
    """One layer, checked and coerced; `source` names where it came from for the messages.

    Only a `trusted` layer (the user's own engine.json) may name a program (`binary`), pass
    arbitrary flags, or point `mmproj` outside the model's folder: a model.json may come from a
    shared folder or a pull, and a start body from any local process.
    """
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise InvalidParameter(f"{source} must be a JSON object, got {type(params).__name__}.")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue  # "not set here" (and removes a field in an edit), whatever its name
        if key not in KNOWN:
            if unknown == "keep":
                out[key] = value
                continue
            hint = difflib.get_close_matches(str(key), sorted(KNOWN), n=1)
            fix = f" Did you mean '{hint[0]}'?" if hint else " Remove it."
            raise InvalidParameter(
                f"Unknown engine parameter '{str(key)[:100]}' in {source}. "
                f"Known: {', '.join(sorted(COERCE))}.{fix}",
                param=str(key)[:100],
            )
        if key == "binary" and not trusted:
            raise InvalidParameter(
                f"Engine parameter 'binary' in {source} "
                + USER_ONLY_WHY.format(where=ENGINE_JSON_HINT),
                param=key,
                code="parameter_not_allowed",
            )
        out[key] = _coerce_one(key, value, source, trusted=trusted)
    return out


def _coerce_one(key: str, value: Any, source: str, *, trusted: bool) -> Any:
    coerce = COERCE.get(key)
    if coerce is None:
        return value
    try:
        coerced = coerce(value)
        if key == "mmproj" and not trusted:
            plain_relative_path(coerced, f"'{key}'")
    except ValueError as exc:
        raise InvalidParameter(
            f"Engine parameter '{key}' in {source} must be {exc}; got {_short(value)}.",
            param=key,
        ) from None
    if key == "extra_args":
        check_extra_args(coerced, trusted=trusted, source=source)
    return coerced


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def merge_engine_params(
    base: Mapping[str, Any] | None,
    model: Mapping[str, Any] | None,
    request: Mapping[str, Any] | None,
    *,
    engine_source: str = "engine.json",
    model_source: str = "model.json engine_parameters",
    request_source: str = "the request body",
) -> dict[str, Any]:
    """DEFAULTS < engine.json < model.json < request, each layer validated; returns a new dict.

    Pass e.g. `model_source="models/foo/model.json engine_parameters"` so errors point at the
    file. Jan's `cache_type` sets both `cache_type_k` and `cache_type_v` unless those are set.
    """
    merged: dict[str, Any] = dict(DEFAULTS)
    layers = ((base, engine_source, True), (model, model_source, False))
    for layer, source, trusted in (*layers, (request, request_source, False)):
        merged.update(validate_engine_params(layer, source, trusted=trusted))
    return fold_cache_type(merged)


def fold_cache_type(merged: dict[str, Any]) -> dict[str, Any]:
    """Jan's `cache_type` sets both `cache_type_k` and `cache_type_v` unless those are set."""
    cache_type = merged.pop("cache_type", None)
    if cache_type is not None:
        merged.setdefault("cache_type_k", cache_type)
        merged.setdefault("cache_type_v", cache_type)
    return merged


def needs_chat_template(params: Mapping[str, Any]) -> bool:
    """True when Hearth must hand the engine a template instead of the GGUF's own."""
    keys = ("chat_template", "prompt_template", "system_prompt", "user_prompt", "ai_prompt")
    return any(params.get(k) for k in keys)


def chat_template_for(params: Mapping[str, Any]) -> str | None:
    """The Jinja chat template to supply: `chat_template` as is, else one converted from Jan's
    `prompt_template` or its system/user/ai prompt trio, else None (use the GGUF's own)."""
    from hearth.engines.templates import jan_to_jinja, trio_to_jinja

    if params.get("chat_template"):
        return str(params["chat_template"])
    if params.get("prompt_template"):
        return jan_to_jinja(str(params["prompt_template"]))
    if needs_chat_template(params):
        return trio_to_jinja(
            params.get("system_prompt"), params.get("user_prompt"), params.get("ai_prompt")
        )
    return None


def build_server_args(
    params: Mapping[str, Any],
    *,
    model_path: str | Path,
    port: int,
    alias: str,
    host: str = "127.0.0.1",
    template_dir: str | Path | None = None,
) -> list[str]:
    """`llama-server` flags (no program name) for merged params.

    When a chat template must be supplied it is written to `<template_dir>/chat_template.jinja`
    and passed with `--chat-template-file` (a file, so no quoting issues on any command line);
    `template_dir` is then required. A relative `mmproj` is resolved next to the model file.
    """
    p = {**DEFAULTS, **params}
    model_path = Path(model_path)
    # extra_args first: for repeated flags the last one wins, so Hearth's own always do.
    args = list(p.get("extra_args", []))
    args += ["-m", str(model_path), "--host", host, "--port", str(int(port)), "--alias", alias]
    args += ["-c", str(p["ctx_len"] * p["n_parallel"]), "-np", str(p["n_parallel"])]
    if "ngl" in p:
        args += ["-ngl", str(p["ngl"])]
    if p.get("embedding"):
        args.append("--embedding")
    if "pooling" in p:
        args += ["--pooling", p["pooling"]]
    if p.get("cpu_threads", 0) > 0:
        args += ["-t", str(p["cpu_threads"])]
    if "cont_batching" in p:
        args.append("--cont-batching" if p["cont_batching"] else "--no-cont-batching")
    if "flash_attn" in p:
        args += ["-fa", p["flash_attn"]]
    if p.get("mmproj"):
        mmproj = Path(p["mmproj"])
        args += ["--mmproj", str(mmproj if mmproj.is_absolute() else model_path.parent / mmproj)]
    if "cache_type_k" in p:
        args += ["-ctk", p["cache_type_k"]]
    if "cache_type_v" in p:
        args += ["-ctv", p["cache_type_v"]]
    if p.get("mlock"):
        args.append("--mlock")
    args.append("--jinja")
    template = chat_template_for(p)
    if template is not None:
        if template_dir is None:
            raise ValueError("build_server_args needs template_dir to write a chat template")
        path = Path(template_dir) / "chat_template.jinja"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, template, durable=False)  # the launch's own folder
        args += ["--chat-template-file", str(path)]
    return args
