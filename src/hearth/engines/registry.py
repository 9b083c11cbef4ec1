"""Engine kinds: everything Hearth needs to know about one kind of engine, in one object.

A *kind* is one of two things, by its class, never by a flag: a `LocalKind` (Hearth starts its
processes: how to launch one and how to reach it) or a `RemoteKind` (someone else's
OpenAI-compatible server). Both say which `engine_parameters` they take (validation, defaults,
Jan's aliases) and how much memory a model needs under them, and both *open an answer*
(`EngineKind.open`): a local kind through the manager's plan, lease, replica and lean client, a
remote kind through its profile and httpx (the `Engines` the manager hands in). The rest of
Hearth (planner, manager, scheduler, and the store through `engines/rules.py`) asks the
registry instead of knowing any kind.

    llama-cpp            built in (engines/llamacpp.py): Hearth's worker or the user's llama-server
    openai-compatible    built in (engines/remote.py): remote servers, configured in engine.json
    anything else        a Python package of the user's that declares an entry point in the
                         group `hearth.engines` naming a `LocalKind` or `RemoteKind` subclass
                         (see README, "Engines"); anything else there is refused, and logged

Who may choose a kind: a model.json names one by name (`"engine": "llama-cpp"`), but only
among the kinds the user installed; it never names a module, a program or a flag. Registering
a kind is the user's act (installing a package), like editing engine.json.

Parameters every local kind shares are validated here, once: `keep_alive` (a scheduling
choice), `replicas` (how many processes serve the model) and `replica_routing`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar, Literal

from hearth.core.errors import InvalidParameter
from hearth.core.keepalive import parse_keep_alive

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hearth.engines"
BUILT_IN = ("hearth.engines.llamacpp", "hearth.engines.remote")
#: The kind a remote model uses when no `RemoteKind` is registered under its engine's name.
REMOTE_DEFAULT = "openai-compatible"
#: One model may ask for up to this many processes; each counts against the memory budget.
MAX_REPLICAS = 16
ROUTING = ("prefix", "least-busy")
Unknown = Literal["error", "keep"]


def _replicas(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"a whole number from 1 to {MAX_REPLICAS}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"a whole number from 1 to {MAX_REPLICAS}") from None
    if not 1 <= number <= MAX_REPLICAS:
        raise ValueError(f"a whole number from 1 to {MAX_REPLICAS}")
    return number


def _routing(value: Any) -> str:
    if value not in ROUTING:
        raise ValueError(" or ".join(f'"{r}"' for r in ROUTING))
    return str(value)


#: Parameters of Hearth's own, the same for every local kind: name -> coercion.
COMMON: dict[str, Callable[[Any], Any]] = {
    "keep_alive": parse_keep_alive,  # the scheduler's: never changes the launch
    "replicas": _replicas,
    "replica_routing": _routing,
}
#: Common parameters that choose how a model is scheduled, not how each process runs.
SCHEDULING = ("keep_alive", "replicas", "replica_routing")


@dataclass(frozen=True)
class LaunchSpec:
    """What starting one local model needs: the planner makes it, a kind turns it into a
    command line, and each replica is one process of it."""

    model_id: str
    model_path: Path
    params: dict[str, Any]  # the kind's merged parameters (no keep_alive/replicas/routing)
    config_key: str
    log_path: Path
    kind: str = "llama-cpp"
    replicas: int = 1
    routing: str = "prefix"
    #: ctx_len came from a start request (POST /v1/models/{id}/start, Ollama's num_ctx): the
    #: context someone asked for, which a long request never grows (engines/manager.py).
    context_fixed: bool = False


@dataclass
class Launch:
    """One process to spawn: its argv and environment (Hearth adds the parent pid)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: Run with PR_SET_PDEATHSIG (a program that does not watch its parent itself).
    die_with_parent: bool = True


class EngineKind:
    """What every kind shares: its name, its parameters and the memory a model needs. Not a
    kind on its own: subclass `LocalKind` or `RemoteKind` (the registry refuses anything else)."""

    name: ClassVar[str] = ""
    #: The kind's own parameters: name -> coercion (raises ValueError saying what it expects).
    params: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Other names model.json files use for this kind (Jan's "nitro", "cortex.llamacpp", ...).
    aliases: ClassVar[tuple[str, ...]] = ()

    # ---- parameters -------------------------------------------------------------------------

    def validate_layer(
        self,
        layer: Mapping[str, Any] | None,
        source: str,
        *,
        trusted: bool = False,
        unknown: Unknown = "error",
    ) -> dict[str, Any]:
        """One layer (engine.json, model.json, a start body) checked and coerced; `source`
        names it in messages. Common parameters first, then the kind's own."""
        if layer is None:
            return {}
        if not isinstance(layer, Mapping):
            raise InvalidParameter(f"{source} must be a JSON object, got {type(layer).__name__}.")
        common = {k: v for k, v in layer.items() if k in COMMON and v is not None}
        out = {k: _coerce(COMMON[k], k, v, source) for k, v in common.items()}
        rest = {k: v for k, v in layer.items() if k not in COMMON}
        out.update(self.validate_params(rest, source, trusted=trusted, unknown=unknown))
        return out

    def validate_params(
        self, params: Mapping[str, Any], source: str, *, trusted: bool, unknown: Unknown
    ) -> dict[str, Any]:
        """The kind's own parameters (the default: the `params` table)."""
        out: dict[str, Any] = {}
        for key, value in params.items():
            if value is None:
                continue
            coerce = self.params.get(key)
            if coerce is None:
                if unknown == "keep":
                    out[key] = value
                    continue
                raise unknown_parameter(key, [*self.params, *COMMON], source, self.name)
            out[key] = _coerce(coerce, key, value, source)
        return out

    def merge(
        self,
        layers: list[tuple[Mapping[str, Any] | None, str, bool]],
    ) -> dict[str, Any]:
        """defaults < each (layer, source, trusted) in order; later wins."""
        merged: dict[str, Any] = dict(self.defaults)
        for layer, source, trusted in layers:
            merged.update(self.validate_layer(layer, source, trusted=trusted))
        return merged

    # ---- memory -----------------------------------------------------------------------------

    def estimate_memory(self, model_path: Path | None, size: int, params: Mapping[str, Any]) -> int:
        """Bytes one process of this model needs: by default the files plus 256 MiB."""
        return size + (256 << 20)


class LocalKind(EngineKind, ABC):
    """A kind whose processes Hearth starts and supervises (llama.cpp, a plugin's server).
    Its answers come through the manager's plan, lease, replica and lean HTTP client."""

    #: Where its OpenAI-style routes live, and the route that answers 200 once it serves.
    api_prefix: ClassVar[str] = "/v1"
    health_path: ClassVar[str] = "/health"

    def check_request(self, spec: LaunchSpec, path: str) -> None:
        """Refuse (a HearthError naming the fix) a request this launch cannot serve, such as
        embeddings from a model that was not started for them. `path`: "chat/completions"..."""

    def slots(self, params: Mapping[str, Any]) -> int:
        """Requests one process serves at once (replica routing counts free slots)."""
        return 1

    def check_files(self, spec: LaunchSpec) -> None:
        """Refuse (EngineError) before spawning if the files are not what the engine reads."""

    @abstractmethod
    def launch(self, spec: LaunchSpec, *, host: str, port: int, key: str, workdir: str) -> Launch:
        """The command that serves `spec` on host:port and requires `key` on every route but
        the health route. `workdir` is a private temporary folder for this spawn, and the
        process's working directory: relative paths in argv resolve there, not where Hearth
        was started. A Python program is best started as `hearth.core.pychild.python_command`."""

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """Hearth's environment as this kind's process gets it (secrets were already dropped);
        a kind removes what could move its listener or change its auth."""
        return dict(env)


class RemoteKind(EngineKind):
    """A kind served by someone else's OpenAI-compatible server: no process, no local memory.
    Where a model's requests go (its profile: base_url and the variable holding the key) is
    the user's engines/<engine>/engine.json or a built-in profile; its answers come through
    httpx (TLS, proxies, compression)."""

    def estimate_memory(self, model_path: Path | None, size: int, params: Mapping[str, Any]) -> int:
        return 0


def _coerce(coerce: Callable[[Any], Any], key: str, value: Any, source: str) -> Any:
    try:
        return coerce(value)
    except ValueError as exc:
        shown = repr(value)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise InvalidParameter(
            f"Engine parameter '{key}' in {source} must be {exc}; got {shown}.", param=key
        ) from None


def unknown_parameter(key: Any, known: list[str], source: str, kind: str) -> InvalidParameter:
    name = str(key)[:100]
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    fix = f" Did you mean '{hint[0]}'?" if hint else " Remove it."
    return InvalidParameter(
        f"Unknown engine parameter '{name}' in {source}. Known for {kind}: "
        f"{', '.join(sorted(known))}.{fix}",
        param=name,
    )


# ---- the registry ---------------------------------------------------------------------------

_KINDS: dict[str, EngineKind] = {}
_loaded = False


def register(kind: EngineKind) -> EngineKind:
    """Make a kind known by its name (a later registration of the same name wins). A kind is
    a `LocalKind` or a `RemoteKind`; anything else is refused (TypeError saying so)."""
    if not isinstance(kind, LocalKind | RemoteKind):
        raise TypeError(not_a_kind(kind))
    if not kind.name:
        raise ValueError("an engine kind needs a name")
    _KINDS[kind.name] = kind
    return kind


def not_a_kind(value: object) -> str:
    """Why `value` cannot be registered, and what would do."""
    what = value if isinstance(value, type) else type(value)
    return (
        f"{what.__module__}.{what.__qualname__} is not an engine kind Hearth can use: subclass "
        "hearth.engines.registry.LocalKind (an engine Hearth starts as a process) or RemoteKind "
        "(someone else's OpenAI-compatible server)."
    )


def load_plugin(point: EntryPoint) -> EngineKind | None:
    """Register the kind one `hearth.engines` entry point names; None if it failed to import
    or is not a kind (logged as an error: one broken plugin must not stop Hearth)."""
    try:
        found = point.load()
        if isinstance(found, type) and not issubclass(found, LocalKind | RemoteKind):
            raise TypeError(not_a_kind(found))
        return register(found() if isinstance(found, type) else found)
    except Exception as exc:
        log.error("engine plugin %r (%s) failed to load: %s", point.name, point.value, exc)
        return None


def _load() -> None:
    """The built-in kinds, then the user's installed plugins, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILT_IN:  # each registers its kind on import
        importlib.import_module(module)

    if os.environ.get("HEARTH_NO_PLUGINS"):
        return
    for point in entry_points(group=ENTRY_POINT_GROUP):
        load_plugin(point)


def canonical_name(name: str) -> str:
    """The kind's own name for one of its aliases (any case); other names as they are."""
    _load()
    lowered = name.lower()
    for kind in _KINDS.values():
        if lowered == kind.name or lowered in kind.aliases:
            return kind.name
    return name


def get(name: str) -> EngineKind | None:
    """The kind registered under `name`, or None."""
    _load()
    return _KINDS.get(name)


def local_kind(name: str) -> LocalKind | None:
    """The local kind a model's `engine` names, or None (then the model is remote)."""
    kind = get(name)
    return kind if isinstance(kind, LocalKind) else None


def is_local(name: str) -> bool:
    return local_kind(name) is not None


def remote_kind(name: str) -> RemoteKind:
    """The kind a remote model's `engine` names: a `RemoteKind` registered under that name,
    else the OpenAI-compatible one (the engine is then a folder under engines/ or a profile)."""
    kind = get(name)
    if isinstance(kind, RemoteKind):
        return kind
    default = _KINDS[REMOTE_DEFAULT]
    assert isinstance(default, RemoteKind)  # registered by engines/remote.py, built in
    return default


def names() -> list[str]:
    _load()
    return sorted(_KINDS)
