"""model.json: the spec's fields and defaults, Jan's real-world variants, and lossless round-trips.

Two views of one file:
- the *raw* dict, exactly as on disk. Hearth edits this (merge-patch) and writes it back, so
  every field another tool wrote survives, under the name that tool used;
- the *normalized* `ModelInfo`, the spec's fields with defaults filled in, which the API, the
  importer and the engines read.

Jan's published files (2023-2025) differ from the spec; `normalize` maps them:

    settings               -> engine_parameters
    parameters             -> model_parameters
    source_url | source    -> sources   (a URL string, or a list of {filename, url})
    engine nitro/llama.cpp/llama_cpp/llamacpp/cortex.llamacpp -> llama-cpp
    version 1              -> "1"
    "ctx_len": "2048", "stream": "true"  -> 2048, True   (early files quoted everything)
    "source_url": "", {"url": "", "filename": ""}  -> no source ("no file yet")
    "engine": "openai" + its profile's own base_url  -> loads; the URL is ignored

Every known number has a range (`hearth.models.limits`), checked here for files and edits alike.

What only the engine kinds know (their Jan names, which are local, their parameters, the built-in
remote profiles) is handed in as `EngineRules` (engines/rules.py, by the service layer): models/
never imports engines/, which sits above it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from hearth.core.errors import InvalidParameter
from hearth.models.ids import is_valid_id
from hearth.models.limits import (
    CREATED_RANGE,
    ENGINE_RANGES,
    MODEL_RANGES,
    SIZE_RANGE,
    Range,
    range_message,
    range_problem,
)

DEFAULT_ENGINE = "llama-cpp"
# spec field -> the name Jan's files used for it
JAN_ALIASES = {"engine_parameters": "settings", "model_parameters": "parameters"}

Status = Literal["ready", "missing", "downloading", "starting", "running", "failed", "invalid"]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]

# Known parameters whose types old files wrote as strings. Unknown ones pass through untouched.
_ENGINE_TYPES: dict[str, type] = {
    "ctx_len": int,
    "ngl": int,
    "n_parallel": int,
    "cpu_threads": int,
    "embedding": bool,
    "cont_batching": bool,
    "mlock": bool,
}
_MODEL_TYPES: dict[str, type] = {
    "stream": bool,
    "max_tokens": int,
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "min_p": float,
    "frequency_penalty": float,
    "presence_penalty": float,
    "repeat_penalty": float,
    "seed": int,
    "typical_p": float,
    "repeat_last_n": int,
    "mirostat": int,
    "mirostat_tau": float,
    "mirostat_eta": float,
}
_JAN_KEYS = {"settings", "parameters", "source_url", "source"}


class EngineRules(Protocol):
    """What reading a model.json needs from the engine kinds. The methods that check raise
    `InvalidParameter` naming the parameter; normalize turns it into a `SchemaError`."""

    def canonical_name(self, name: str) -> str:
        """A kind's own name for one of its aliases ("nitro" -> "llama-cpp"); others as they are."""
        ...

    def is_local(self, engine: str) -> bool:
        """Is `engine` a kind Hearth runs locally (installed)? Otherwise the model is remote."""
        ...

    def profile_url(self, engine: str) -> str | None:
        """The base_url of the engine's built-in remote profile, if it has one."""
        ...

    def check_model_parameters(self, engine: str, params: Mapping[str, Any]) -> None:
        """A local model's engine_parameters as a file has them (unknown names are kept)."""
        ...

    def check_new_parameters(self, engine: str, layer: Mapping[str, Any]) -> None:
        """engine_parameters an edit adds (unknown names are refused)."""
        ...


class PlainRules:
    """The rules of a store opened without the engines (a tool that only reads files, a unit
    test): only the default engine is local, names stay as written, no built-in profiles and
    no kind's own parameter checks (the planner checks every layer again before any launch).
    A serving Hearth always hands in the engines' own rules (services/core.py)."""

    def canonical_name(self, name: str) -> str:
        return name

    def is_local(self, engine: str) -> bool:
        return engine == DEFAULT_ENGINE

    def profile_url(self, engine: str) -> str | None:
        return None

    def check_model_parameters(self, engine: str, params: Mapping[str, Any]) -> None:
        pass

    def check_new_parameters(self, engine: str, layer: Mapping[str, Any]) -> None:
        pass


class SchemaError(ValueError):
    """A model.json field that cannot be read; `field` names it, the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Source(BaseModel):
    """Where one of the model's files comes from. `url` may be file:// for linked imports."""

    model_config = ConfigDict(extra="allow")

    filename: str
    url: str | None = None
    size: int | None = None
    sha256: str | None = None


class ModelInfo(BaseModel):
    """The spec's model.json, normalized, with its defaults. Unknown fields are kept as extras."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    name: str
    owned_by: str = "you"
    version: str = "1"
    created: int
    description: str | None = None
    format: str = "ggufv3"
    engine: str = DEFAULT_ENGINE
    engine_parameters: dict[str, Any] = Field(default_factory=dict)
    model_parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    assets: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    #: Decided once by `normalize`, from the engine rules it was given (not part of the file).
    _remote: bool = PrivateAttr(default=False)

    @property
    def is_remote(self) -> bool:
        """Served by someone else's server: `"format": "api"`, or an engine that is not a kind
        installed to run locally."""
        return self._remote


def _coerce(value: Any, kind: type, field: str) -> Any:
    if value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    text = value.strip().lower() if isinstance(value, str) else value
    try:
        if kind is bool:
            if isinstance(text, (int, float)) and text in (0, 1):
                return bool(text)
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(text, float) and text.is_integer():
                return int(text)
            if isinstance(text, str):
                number = float(text)
                if number.is_integer():
                    return int(number)
            raise ValueError
        if kind is float:
            if isinstance(text, bool):
                raise ValueError
            return float(text)
    except (ValueError, TypeError):
        pass
    expected = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
    raise SchemaError(
        field, f"'{field}' is {value!r}, which is not {expected}; set it to {expected}."
    )


def _in_range(value: Any, bounds: Range, field: str) -> Any:
    """`value` when it is None or inside `bounds`; else a SchemaError with the range."""
    if value is not None and range_problem(value, bounds) is not None:
        raise SchemaError(field, range_message(field, value, bounds))
    return value


def _coerce_params(
    params: Any, types: dict[str, type], ranges: dict[str, Range], prefix: str
) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise SchemaError(prefix, f"'{prefix}' must be an object like {{\"ctx_len\": 4096}}.")
    out = dict(params)
    for key, kind in types.items():
        if key in out:
            field = f"{prefix}.{key}"
            out[key] = _coerce(out[key], kind, field)
            if key in ranges:
                out[key] = _in_range(out[key], ranges[key], field)
    return out


def _stop_list(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise SchemaError(field, f"'{field}' must be a list of strings like [\"</s>\"] (or null).")


def filename_from_url(url: str) -> str:
    path = urlparse(url).path if "://" in url else url
    return posixpath.basename(unquote(path).rstrip("/"))


def _is_placeholder(item: Any) -> bool:
    """Jan shipped sources that mean "no file yet": an empty `source_url`, or an entry whose
    url and filename are both empty. They name nothing, so they are left out, not refused."""
    if isinstance(item, str):
        return not item.strip()
    if not isinstance(item, dict) or not ({"url", "filename"} & set(item)):
        return False
    return all(item.get(key) in ("", None) for key in ("url", "filename"))


def _source_url(text: str, field: str) -> str:
    """A source given as text must be a URL (`"sources": "x"` would name a file 'x' that no
    download could fetch, and the model would only turn `missing`)."""
    if "://" not in text:
        shown = repr(text) if len(text) <= 80 else repr(text[:80]) + "..."
        raise SchemaError(
            field,
            f"'{field}' is {shown}, which is not a URL: a source is a URL like "
            '"https://host/model.gguf", or a list of {"filename", "url"} objects.',
        )
    return text


def _sources(raw: dict[str, Any]) -> list[dict[str, Any]]:
    value = raw.get("sources", raw.get("source"))
    if value is None and isinstance(raw.get("source_url"), str):
        value = raw["source_url"]
    if value is None:
        return []
    field = "sources" if "sources" in raw else "source" if "source" in raw else "source_url"
    items = value if isinstance(value, list) else [value]
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if _is_placeholder(item):
            continue  # Jan's "no file yet": "source_url": "", {"url": "", "filename": ""}
        if isinstance(item, str):
            where = f"{field}[{i}]" if isinstance(value, list) else field
            item = {"filename": filename_from_url(_source_url(item, where)), "url": item}
        if not isinstance(item, dict):
            raise SchemaError(
                f"{field}[{i}]", f'\'{field}[{i}]\' must be an object like {{"filename", "url"}}.'
            )
        item = dict(item)
        if not item.get("filename"):
            if not isinstance(item.get("url"), str):
                raise SchemaError(f"{field}[{i}]", f"'{field}[{i}]' needs a 'filename' or a 'url'.")
            item["filename"] = filename_from_url(item["url"])
        if "size" in item:
            size_field = f"{field}[{i}].size"
            item["size"] = _in_range(_coerce(item["size"], int, size_field), SIZE_RANGE, size_field)
        out.append(item)
    return out


_FORMAT = re.compile(r"gguf(v[1-9])?|ggml|api")
#: What a remote model.json may not say: where requests go and which secret goes with them
#: belong together in the user's own engines/<engine>/engine.json.
_REMOTE_USER_ONLY = ("base_url", "api_key_env", "api_key", "binary", "extra_args")
_MAX_URL = 8192


def plain_file_name(value: Any, field: str) -> str:
    """A file name inside the model's folder: no folders, no NUL, at most 255 bytes."""
    ok = (
        isinstance(value, str)
        and value not in ("", ".", "..", "model.json")
        and not any(c in value for c in "/\\\x00")
        and len(value.encode("utf-8", "surrogatepass")) <= 255
    )
    if not ok:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:80] + "..."
        raise SchemaError(
            field,
            f"'{field}' is {shown}: it must be a plain file name inside the model's folder "
            '(like "model.Q4_K_M.gguf"; no folders, at most 255 bytes, not model.json).',
        )
    return str(value)  # a str: `ok` checked it


def _check_sources(sources: list[dict[str, Any]], field: str, *, remote: bool) -> None:
    for i, item in enumerate(sources):
        if not (remote and item.get("filename") == ""):  # Jan's remote files: {"url": ...}
            plain_file_name(item.get("filename"), f"{field}[{i}].filename")
        url = item.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > _MAX_URL or "\x00" in url):
            raise SchemaError(
                f"{field}[{i}].url",
                f"'{field}[{i}].url' must be a URL of at most {_MAX_URL} characters.",
            )


def _is_profile_url(engines: EngineRules, engine: str, value: Any) -> bool:
    """Is `value` exactly the URL of the engine's built-in profile (`"openai"` with
    `"https://api.openai.com/v1"`, as Jan's remote files wrote it)? Such a base_url is harmless
    and ignored: requests go where the profile (or your engine.json) says, as without it. Any
    other URL, however near (another path, port, scheme, case or user info), is refused."""
    url = engines.profile_url(engine)
    if url is None or not isinstance(value, str):
        return False
    return value == url or value == url + "/"


def _parameter_error(exc: InvalidParameter) -> SchemaError:
    field = f"engine_parameters.{exc.param}" if exc.param else "engine_parameters"
    return SchemaError(field, exc.message)


def _check_engine(info: ModelInfo, engines: EngineRules) -> None:
    """What could never load is refused here, so a PATCH is refused before it is written and a
    file on disk is listed invalid, with the same message."""
    if not is_valid_id(info.engine):
        raise SchemaError(
            "engine",
            f"'engine' is {info.engine[:80]!r}: an engine name uses letters, digits, '.', '_', "
            "'-' (like \"llama-cpp\", or a folder name under engines/ for a remote server).",
        )
    if not _FORMAT.fullmatch(info.format):
        raise SchemaError(
            "format",
            f'\'format\' is {info.format[:80]!r}; Hearth runs "gguf" models ("ggufv3", '
            '"ggufv2") and remote ones ("api"). Fix it or remove it.',
        )
    params = info.engine_parameters
    if info.is_remote:
        for key in _REMOTE_USER_ONLY:
            if key == "base_url" and _is_profile_url(engines, info.engine, params.get(key)):
                continue  # Jan wrote its profile's own URL: nothing goes anywhere new
            if key in params:
                raise SchemaError(
                    f"engine_parameters.{key}",
                    f"'engine_parameters.{key}' is not allowed in a model.json: where a remote "
                    "model's requests go and which key they carry belong together in your own "
                    f"engines/{info.engine}/engine.json. Move it there and keep only "
                    '"model" (the upstream model name) here.',
                )
        if "model" in params and (not isinstance(params["model"], str) or not params["model"]):
            raise SchemaError(
                "engine_parameters.model",
                "'engine_parameters.model' must be the upstream model name (a string).",
            )
        return
    try:
        engines.check_model_parameters(info.engine, params)
    except InvalidParameter as exc:
        raise _parameter_error(exc) from None


def check_new_engine_parameters(
    patch: dict[str, Any], info: ModelInfo, engines: EngineRules
) -> None:
    """An edit may not add an engine parameter the engine does not know (a typo like
    `ctx_lenn` would otherwise say "updated" and fail at the next start). Names already in
    the file, perhaps written by another tool, are kept as they are."""
    if info.is_remote:
        return
    for key in ("engine_parameters", "settings"):
        layer = patch.get(key)
        if not isinstance(layer, dict):
            continue
        try:
            engines.check_new_parameters(info.engine, layer)
        except InvalidParameter as exc:
            raise _parameter_error(exc) from None


def normalize(raw: Any, *, folder: Path, default_created: int, engines: EngineRules) -> ModelInfo:
    """Map a raw model.json dict (spec or any Jan variant) onto the spec's fields, checked
    against the engine kinds' `engines` rules."""
    if not isinstance(raw, dict):
        raise SchemaError("(root)", "model.json must hold a JSON object, e.g. {} for all defaults.")
    data: dict[str, Any] = {k: v for k, v in raw.items() if k not in _JAN_KEYS}
    for spec_key, jan_key in JAN_ALIASES.items():
        if spec_key not in raw and jan_key in raw:
            data[spec_key] = raw[jan_key]
    data.setdefault("id", folder.name)
    if not isinstance(data["id"], str) or not is_valid_id(data["id"]):
        raise SchemaError(
            "id",
            f"'id' is {data['id']!r}: ids use letters, digits, '.', '_', '-', at most 128 "
            "characters, not starting with '.'. Fix it or remove 'id' to use the folder name.",
        )
    if data.get("name") is None:
        data["name"] = folder.name
    if data.get("created") is None:
        data["created"] = default_created
    else:
        data["created"] = _in_range(
            _coerce(data["created"], int, "created"), CREATED_RANGE, "created"
        )
    if isinstance(data.get("version"), (int, float)) and not isinstance(data["version"], bool):
        version = data["version"]
        data["version"] = str(int(version)) if float(version).is_integer() else str(version)
    for key in ("description", "format", "owned_by"):
        if key in data and data[key] is None and key != "description":
            del data[key]
    if data.get("engine") is None:
        data.pop("engine", None)
    elif isinstance(data["engine"], str):
        data["engine"] = engines.canonical_name(data["engine"])  # kinds know their Jan names
    data["engine_parameters"] = _coerce_params(
        data.get("engine_parameters"), _ENGINE_TYPES, ENGINE_RANGES, "engine_parameters"
    )
    model_params = _coerce_params(
        data.get("model_parameters"), _MODEL_TYPES, MODEL_RANGES, "model_parameters"
    )
    if "stop" in model_params:
        stop = _stop_list(model_params["stop"], "model_parameters.stop")
        if stop is None:
            del model_params["stop"]
        else:
            model_params["stop"] = stop
    data["model_parameters"] = model_params
    if data.get("metadata") is None:
        data["metadata"] = {}
    data["sources"] = _sources(raw)
    if not data.get("assets"):
        data["assets"] = [str(folder)]
    elif isinstance(data["assets"], str):
        data["assets"] = [data["assets"]]
    from pydantic import ValidationError  # local: keeps the import surface of this module small

    try:
        info = ModelInfo.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        got = repr(first.get("input"))
        got = got if len(got) <= 200 else got[:200] + "..."
        raise SchemaError(field, f"'{field}': {first['msg']}; got {got}.") from exc
    info._remote = info.format == "api" or not engines.is_local(info.engine)
    _check_sources(data["sources"], _sources_field(raw), remote=info.is_remote)
    _check_engine(info, engines)
    return info


def _sources_field(raw: dict[str, Any]) -> str:
    return "sources" if "sources" in raw else "source" if "source" in raw else "source_url"


def raw_key_for(raw: dict[str, Any], spec_key: str) -> str:
    """Where an edit of `spec_key` belongs in this file: Jan's name if the file uses it."""
    jan_key = JAN_ALIASES.get(spec_key)
    if jan_key and spec_key not in raw and jan_key in raw:
        return jan_key
    if spec_key == "sources" and "sources" not in raw and "source" in raw:
        return "source"
    return spec_key


def _rfc7396(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _rfc7396(out.get(key), value)
    return out


def merge_patch(raw: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 merge-patch onto the raw file, writing spec fields under the file's own names."""
    out = dict(raw)
    for key, value in patch.items():
        target = raw_key_for(raw, key)
        if target == "sources":
            out.pop("source_url", None)
        if value is None:
            out.pop(target, None)
        else:
            out[target] = _rfc7396(out.get(target), value)
    return out
