"""Settings, loaded in one place.

Precedence (later wins), implemented only in `load_settings`:

    built-in defaults  <  <home>/settings.json  <  HEARTH_* environment  <  CLI flags

The home itself comes from `--home`, else `HEARTH_HOME`, else `~/hearth` (it cannot come from
settings.json, which lives inside it).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hearth.core.errors import InvalidRequest
from hearth.core.home import (
    DEFAULT_PORT,
    SETTINGS_FILE,
    Home,
    base_url,
    locate_home,
    resolve_home,
    settings_file_layer,
)

__all__ = ["Settings", "ensure_home", "load_settings", "resolve_home"]
from hearth.core.keepalive import KEEP_ALIVE_HELP, KeepAlive
from hearth.core.keyfile import KEY_FIELDS, merge_key_layers

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Settings(BaseModel):
    """Everything a user can configure. Field descriptions double as documentation."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    home: Path = Field(description="Hearth's home folder: models/, engines/, logs/.")
    jan: bool = Field(
        False,
        description="The home is a Jan data folder (`--jan`, or a folder shaped like Jan's): "
        "models, conversations and assistants are read where Jan keeps them, and Hearth's own "
        "files go in its `hearth/` folder.",
    )
    host: str = Field("127.0.0.1", description="Address the API server binds to.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="Port the API server listens on.")
    api_key: str | None = Field(
        None,
        description="If set, every route but /health and /docs needs 'Authorization: Bearer "
        "<key>' (or 'x-api-key: <key>'). At least 16 characters when serving beyond loopback.",
    )
    api_key_file: Path | None = Field(
        None,
        description="A file holding the API key (instead of api_key): a regular file only you "
        "can access (chmod 600), one line. Relative in settings.json: to the home.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (exact)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header names accepted besides loopback (DNS-rebinding defence).",
    )
    import_dirs: list[Path] = Field(
        default_factory=list, description="Folders besides the home that API imports may read."
    )
    download_reserve_bytes: int = Field(
        1 << 30,
        ge=0,
        description="Free space downloads always leave on the disk of the home (bytes); a "
        "download that would go below it stops with a clear error. Default 1 GiB.",
    )
    max_download_bytes: int = Field(
        512 << 30,
        ge=1,
        description="Largest file a download may write when the server does not state a size "
        "(bytes). Default 512 GiB.",
    )
    allow_private_redirects: bool = Field(
        False,
        description="Follow a download's redirect from a public address to a loopback, "
        "link-local or private one (refused by default: a public server must not steer Hearth "
        "into your network).",
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        ge=1024,
        description="Largest request body, in bytes, that inference routes (chat, completions, "
        "embeddings, ...) accept; a larger one gets 413 before it is read. Env "
        "HEARTH_MAX_BODY_BYTES; default 32 MiB. Management routes accept 1 MiB.",
    )
    ollama_registry: str = Field(
        "https://registry.ollama.ai",
        description="Registry that `hearth pull NAME[:TAG]` fetches Ollama library models from "
        "(an OCI-style /v2 API). Env HEARTH_OLLAMA_REGISTRY; point it at a mirror if you have one.",
    )
    max_loaded_models: int = Field(3, ge=1, description="Models kept loaded at once.")
    memory_budget: int | None = Field(
        None, ge=0, description="Bytes of memory loaded models may use (default: available RAM)."
    )
    keep_alive: KeepAlive = Field(
        300.0, description=f"How long an idle model stays loaded: {KEEP_ALIVE_HELP}."
    )
    grow_context: bool = Field(
        True,
        description="Reload a local model once with a larger context when a request does not "
        "fit the loaded one but fits the model's trained context and the memory budget (the "
        "running engine's size only, never written to model.json). false: such a request is a "
        "400 naming the size it needs.",
    )
    context_overflow: Literal["drop-oldest", "stop"] = Field(
        "drop-oldest",
        description="What a conversation (thread run) that outgrows its model's context does "
        "by default: 'drop-oldest' leaves its oldest turns out of what the model sees (the "
        "system prompt and the latest message stay), 'stop' ends the run with a message saying "
        "so. Each conversation may choose its own (metadata.context_overflow).",
    )
    mcp_max_rounds: int = Field(
        8,
        ge=1,
        le=64,
        description="The most model turns one Responses request or conversation run with MCP tools "
        "may take (each "
        "turn may call tools; the last one answers in text, with tools turned off). A request's "
        "`max_tool_calls` bounds its tool calls as well. Env HEARTH_MCP_MAX_ROUNDS; default 8.",
    )
    starter: bool = Field(
        True,
        description="On `hearth serve` with no models, install SmolLM2-135M-Instruct (98 MB).",
    )
    insecure: bool = Field(False, description="Allow a non-loopback bind without an API key.")
    watch: bool = Field(True, description="Import model files dropped into models/ while serving.")
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")

    @field_validator("cors_origins", "allowed_hosts", "import_dirs", mode="before")
    @classmethod
    def _split_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def state_dir(self) -> Path:
        """Hearth's own files: the home, or `<jan data>/hearth` (never beside Jan's files)."""
        return Home(self.home, self.jan).state

    @property
    def models_dir(self) -> Path:
        """Hearth's model folders (`models/<id>/model.json`); in a Jan folder, Jan's older tree."""
        return self.home / "models"

    @property
    def jan_models_dir(self) -> Path | None:
        """Jan's llama.cpp models (`llamacpp/models/**/model.yml`), in a Jan folder only."""
        return self.home / "llamacpp" / "models" if self.jan else None

    @property
    def threads_dir(self) -> Path:
        return self.home / "threads"

    @property
    def assistants_dir(self) -> Path:
        return self.home / "assistants"

    @property
    def engines_dir(self) -> Path:
        return self.state_dir / "engines"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def base_url(self) -> str:
        return base_url(self.host, self.port)

    def is_loopback(self) -> bool:
        if self.host in LOOPBACK_HOSTS:
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name in ("home", "jan"):
            continue
        value = env.get(f"HEARTH_{name.upper()}")
        if value is not None and value != "":
            layer[name] = value
    return layer


def load_settings(
    home: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    jan: bool = False,
) -> Settings:
    """Build the effective settings: defaults < settings.json < HEARTH_* env < flags.

    `jan`: the home is Jan's data folder (found as Jan finds it when `home` is None)."""
    env = os.environ if env is None else env
    where = locate_home(home, env, jan)
    resolved_home = where.path
    settings_file = where.state / SETTINGS_FILE
    layers = [
        (str(settings_file), settings_file_layer(where.state)),
        ("the HEARTH_* environment", _env_layer(env)),
        ("the command line", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged.update({k: v for k, v in layer.items() if k not in KEY_FIELDS})
    merged.update(merge_key_layers(layers))  # the key: from one source, a key file read here
    try:
        return Settings(home=resolved_home, jan=where.jan, **merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(
            f"Setting '{field}' is invalid: {first['msg']} (from flags, HEARTH_{field.upper()} "
            f"or {settings_file}).",
            param=field,
        ) from exc


def ensure_home(settings: Settings) -> None:
    """Create the home layout if any part is missing."""
    for folder in (settings.models_dir, settings.engines_dir, settings.logs_dir):
        # in a Jan folder: models/ is Jan's own (older) tree; engines/ and logs/ are Hearth's
        folder.mkdir(parents=True, exist_ok=True)
