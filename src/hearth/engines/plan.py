"""From a model record to what to launch: merged parameters, fingerprints, memory; and the
engine.json files every model reads (a remote's profile is made in engines/remote.py).

Engine parameters come in layers, later wins (the model's engine kind validates and merges
them: engines/registry.py, and params.py for llama.cpp):

    kind defaults < engines/<engine>/engine.json < model.json engine_parameters < start body

`keep_alive`, `replicas` and `replica_routing` ride in the same layers (so engine.json can set
them for every model) but are scheduling choices: keep_alive never changes the launch, so it
is kept out of the fingerprint; replicas multiply the memory estimate.

Two hashes per plan: the *fingerprint* (every flag the engine gets; a loaded model with another
fingerprint is restarted once idle) and the *config key* (only the files: engine.json and
model.json). A start request's overrides hold for as long as the config key stays the same,
so an inference request never undoes them, while editing model.json does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.engines import registry
from hearth.engines.registry import LaunchSpec
from hearth.engines.remote import RemoteEngine, remote_engine, remote_profile, unknown_engine
from hearth.engines.scheduler import LoadRequest
from hearth.models.ids import is_valid_id
from hearth.models.schema import DEFAULT_ENGINE
from hearth.models.store import ModelEntry, write_json_atomic

__all__ = ["LaunchSpec", "Planner"]

log = logging.getLogger(__name__)

ENGINE_JSON = "engine.json"
#: Written to engines/llama-cpp/engine.json on the first start when missing: the base every
#: local model starts from (a model's engine_parameters override it).
DEFAULT_ENGINE_JSON: dict[str, Any] = {"ctx_len": 4096, "n_parallel": 1}
_LOG_ROTATE_BYTES = 8 << 20


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class Planner:
    """Reads engine.json files (re-read only when they change) and plans loads."""

    def __init__(self, engines_dir: Path, logs_dir: Path) -> None:
        self.engines_dir = engines_dir
        self.logs_dir = logs_dir
        self._engine_json: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        # id -> (the store's entry object, engine.json's key, plan): the store hands out the
        # same entry object until the model's folder or model.json changes.
        self._plans: dict[str, tuple[ModelEntry, tuple[int, int] | None, LoadRequest]] = {}
        self._ensured: set[str] = set()
        self._remotes: dict[str, tuple[ModelEntry, tuple[int, int] | None, RemoteEngine]] = {}

    # ---- engine.json ----------------------------------------------------------------------

    def engine_json_path(self, engine_id: str = DEFAULT_ENGINE) -> Path:
        return self.engines_dir / engine_id / ENGINE_JSON

    def ensure_engine_json(self, engine_id: str = DEFAULT_ENGINE) -> None:
        """Create the default engine.json (once per process) so people can see and edit the
        base parameters."""
        if engine_id in self._ensured:
            return
        path = self.engine_json_path(engine_id)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, DEFAULT_ENGINE_JSON)
            log.info("wrote default engine parameters to %s", path)
        self._ensured.add(engine_id)

    def engine_layer_value(self, engine_id: str, key: str) -> Any:
        """One value from engine.json as written (None when absent)."""
        return self._engine_layer(engine_id)[1].get(key)

    def _engine_layer(self, engine_id: str) -> tuple[tuple[int, int] | None, dict[str, Any]]:
        path = self.engine_json_path(engine_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None, {}
        key = (st.st_mtime_ns, st.st_size)
        cached = self._engine_json.get(engine_id)
        if cached is not None and cached[0] == key:
            return cached
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidParameter(
                f"{path} is not valid JSON ({exc}). Fix it, or delete it to get the defaults back."
            ) from None
        if not isinstance(data, dict):
            raise InvalidParameter(f'{path} must hold a JSON object like {{"ctx_len": 4096}}.')
        self._engine_json[engine_id] = (key, data)
        return key, data

    def remote_configured(self, engine: str) -> bool:
        """Is there somewhere to send a remote model's requests (engine.json or a profile)?"""
        engine = engine.lower()
        if not is_valid_id(engine):
            return False
        key, data = self._engine_layer(engine)
        return remote_profile(engine, data if key is not None else None) is not None

    def profile(self, entry: ModelEntry) -> RemoteEngine:
        """The RemoteEngine for a remote model, cached until its record or engine.json change."""
        assert entry.info is not None
        engine = entry.info.engine.lower()
        if not is_valid_id(engine):
            raise unknown_engine(entry, entry.info.engine)
        key, data = self._engine_layer(engine)
        cached = self._remotes.get(entry.id)
        if cached is not None and cached[0] is entry and cached[1] == key:
            return cached[2]
        remote = remote_engine(entry, data if key is not None else None)
        self._remotes[entry.id] = (entry, key, remote)
        return remote

    # ---- local models ---------------------------------------------------------------------

    def plan(self, entry: ModelEntry, overrides: dict[str, Any] | None = None) -> LoadRequest:
        """The LoadRequest for a local model; InvalidParameter names the layer at fault.

        Memoized while neither the model's record nor engine.json changes: this runs on
        every request.
        """
        assert entry.info is not None
        engine = entry.info.engine
        base_key, base = self._engine_layer(engine)
        if not overrides:
            cached = self._plans.get(entry.id)
            if cached is not None and cached[0] is entry and cached[1] == base_key:
                return cached[2]
        req = self._plan(entry, base, overrides)
        if not overrides:
            self._plans[entry.id] = (entry, base_key, req)
        return req

    def _plan(
        self, entry: ModelEntry, base: dict[str, Any], overrides: dict[str, Any] | None
    ) -> LoadRequest:
        info = entry.info
        model_path = entry.model_path
        assert info is not None and model_path is not None
        kind = registry.local_kind(info.engine)
        if kind is None:
            raise unknown_engine(entry, info.engine)
        rel = f"models/{entry.folder.name}/model.json"
        if entry.jan_file is not None:  # Jan's model.yml (and llamacpp/settings.json), mapped
            rel = f"llamacpp/models/{entry.id}/model.yml"
        merged = kind.merge(
            [
                (base, str(self.engine_json_path(info.engine)), True),
                (info.engine_parameters, f"{rel} engine_parameters", False),
                (overrides, "the request body", False),
            ]
        )
        keep_alive = merged.pop("keep_alive", None)
        replicas = int(merged.pop("replicas", 1))
        routing = str(merged.pop("replica_routing", "prefix"))
        spec = LaunchSpec(
            model_id=entry.id,
            model_path=model_path,
            params=merged,
            config_key=_digest([str(model_path), base, info.engine_parameters]),
            log_path=self.logs_dir / f"{entry.id}.log",
            kind=kind.name,
            replicas=replicas,
            routing=routing,
            context_fixed=bool(overrides) and "ctx_len" in (overrides or {}),
        )
        return self._request(entry, spec, keep_alive)

    @staticmethod
    def _request(entry: ModelEntry, spec: LaunchSpec, keep_alive: Any) -> LoadRequest:
        """The LoadRequest for a spec: its memory estimate and fingerprint."""
        kind = registry.local_kind(spec.kind)
        if kind is None:
            raise unknown_engine(entry, spec.kind)
        merged, replicas, routing = spec.params, spec.replicas, spec.routing
        one = kind.estimate_memory(spec.model_path, entry.size, merged)
        return LoadRequest(
            model_id=entry.id,
            memory_bytes=one * replicas,  # every replica holds its own weights and cache
            keep_alive=keep_alive,
            fingerprint=_digest([str(spec.model_path), kind.name, merged, replicas, routing]),
            payload=spec,
        )

    def with_context(
        self, entry: ModelEntry, loaded: LoadRequest, ctx_len: int, keep_alive: float | None
    ) -> LoadRequest:
        """`loaded` with another ctx_len and nothing else changed (its start overrides,
        replicas and routing kept; the config key too, so later requests keep using it until
        model.json or engine.json change): the running engine's size, never written to a file.
        A file read (the GGUF shape, cached): call it in a worker thread."""
        old: LaunchSpec = loaded.payload
        spec = replace(old, params={**old.params, "ctx_len": ctx_len}, context_fixed=False)
        return self._request(entry, spec, loaded.keep_alive if keep_alive is None else keep_alive)

    @staticmethod
    def rotate_log(path: Path) -> None:
        """Move a big engine log to .log.1 before a launch, so restarts never grow it forever."""
        try:
            if path.stat().st_size > _LOG_ROTATE_BYTES:
                os.replace(path, path.with_suffix(".log.1"))
        except OSError:
            pass
