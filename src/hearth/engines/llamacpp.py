"""The llama-cpp engine kind: Hearth's bundled worker, or the user's own `llama-server`.

Both take the same flags (`params.build_server_args`), so one kind serves both: `binary` in the
user's engines/llama-cpp/engine.json picks a llama-server, otherwise Hearth runs
`python -s -P -m hearth.engines.worker` (llama.cpp's server from the xllamacpp wheel; isolated
from the folder Hearth was started in, see `hearth.core.pychild`). The generic
supervision (ports, readiness, death, process groups) is `engines/process.py`; this module says
what to run, which parameters it takes, and how much memory a model needs.

Only Hearth can use an engine: the worker reads its per-launch key from `HEARTH_ENGINE_KEY`; a
user's llama-server reads `LLAMA_API_KEY` (llama.cpp's variable for `--api-key`) plus
`LLAMA_ARG_UI=0` (and the older `LLAMA_ARG_WEBUI=0`, `LLAMA_ARG_NO_WEBUI=1`) and
`LLAMA_ARG_CORS_ORIGINS` set to its own origin; variables from Hearth's environment that would
move its listener or change its auth are dropped. Engine parameters cannot name a flag that
sets where the engine listens or who may call it (`check_launch_args`).

Only model files reach the engine: the model (and `mmproj`) must be a regular file starting
with the bytes `GGUF`, checked before spawning, so llama.cpp never reads a file that is not a
model and its errors (e.g. "invalid magic characters: 'xxxx'") never quote one.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hearth.core.errors import EngineError, InvalidParameter
from hearth.core.pychild import python_command
from hearth.engines import params as P
from hearth.engines.registry import Launch, LaunchSpec, LocalKind, Unknown, register
from hearth.engines.worker import KEY_ENV

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
#: Flags Hearth sets once itself: a second copy (from extra_args) would win in llama-server.
_HEARTH_ONCE = frozenset({"--host", "--port", "-m", "--model", "--mmproj", "--chat-template-file"})
#: Flags that open listeners, change who may call the engine, or serve its web page or tools.
_NEVER = frozenset(
    {
        "--api-key", "--api-key-file", "--path", "--api-prefix", "--reuse-port",
        "--ssl-key-file", "--ssl-cert-file", "--ui", "--webui", "--ui-mcp-proxy",
        "--webui-mcp-proxy", "--ui-config", "--ui-config-file", "--webui-config",
        "--webui-config-file", "--tools", "--agent", "--media-path", "--cors-origins",
        "--cors-methods", "--cors-headers", "--cors-credentials", "--no-cors-credentials",
    }
)  # fmt: skip
#: Inherited variables that would move a user's llama-server's listener or change its auth
#: (`AIP_MODE=PREDICTION` makes llama.cpp listen on AIP_HTTP_PORT instead of --port).
_DROPPED_ENV = frozenset(
    {
        "LLAMA_API_KEY", "LLAMA_ARG_API_KEY_FILE", "LLAMA_ARG_HOST", "LLAMA_ARG_PORT",
        "LLAMA_ARG_API_PREFIX", "LLAMA_ARG_STATIC_PATH", "LLAMA_ARG_SSL_KEY_FILE",
        "LLAMA_ARG_SSL_CERT_FILE", "LLAMA_ARG_REUSE_PORT", "LLAMA_ARG_TOOLS", "LLAMA_ARG_AGENT",
        "LLAMA_ARG_MEDIA_PATH", "AIP_MODE", "AIP_HTTP_PORT", KEY_ENV, "HEARTH_API_KEY",
    }
)  # fmt: skip
_DROPPED_ENV_PREFIXES = ("LLAMA_ARG_UI", "LLAMA_ARG_WEBUI", "LLAMA_ARG_NO_WEBUI", "LLAMA_ARG_CORS")


def check_launch_args(args: Sequence[str]) -> None:
    """Refuse engine flags that would change where the engine listens or who may call it.

    Hearth alone decides those (loopback, a free port, its per-launch key), whatever
    `extra_args` says; checked on the final command line, so no layer can slip one in.
    """
    seen: set[str] = set()
    for arg in args:
        flag = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if flag in _NEVER or (flag in _HEARTH_ONCE and flag in seen):
            raise InvalidParameter(
                f"Engine flag {flag} is not allowed: Hearth alone sets where an engine listens, "
                "who may call it, and which files it opens (the engine is reachable only "
                "through Hearth). Remove it from 'extra_args' in engine.json.",
                param="extra_args",
            )
        seen.add(flag)


def require_gguf(path: Path, what: str = "model file") -> None:
    """EngineError unless `path` is a regular file that starts with the GGUF signature.

    Checked before spawning so llama.cpp never opens anything else: a FIFO would hang it, and
    its error for a bad file quotes the file's first bytes ("invalid magic characters"),
    which must never reach a client when the file is not a model. The message names the
    file, never its content.
    """
    fix = "Replace it with a .gguf model file (download or import it again)."
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise EngineError(
                f"The {what} {path} is not a regular file (a directory, FIFO or device), "
                f"so no engine was started. {fix}",
                code="invalid_model_file",
            )
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            magic = os.read(fd, len(GGUF_MAGIC)) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise EngineError(f"The {what} {path} does not exist. {fix}") from None
    except OSError as exc:
        raise EngineError(f"The {what} {path} cannot be read ({exc.strerror}). {fix}") from None
    if magic != GGUF_MAGIC:
        raise EngineError(
            f"The {what} {path} is not a GGUF model (it does not start with the GGUF "
            f"signature), so no engine was started. {fix}",
            code="invalid_model_file",
        )


# ---- memory --------------------------------------------------------------------------------

#: Compute buffers, scratch and runtime overhead on top of weights and KV cache.
COMPUTE_OVERHEAD_BYTES = 256 * 1024 * 1024
#: KV-cache guess when the model's shape is unknown: this fraction of the file size per 4096
#: tokens of f16 cache. Dense 7B models without GQA need ~0.5x; GQA models much less.
KV_FALLBACK_FRACTION_PER_4K = 0.5
#: Bytes per KV-cache element for llama.cpp cache types (block formats include their scales).
_CACHE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 1.0625, "q5_1": 0.75}
_CACHE_BYTES |= {"q5_0": 0.6875, "q4_1": 0.625, "q4_0": 0.5625, "iq4_nl": 0.5625}


def estimate_model_memory(
    file_size_bytes: int,
    *,
    ctx_len: int,
    n_parallel: int = 1,
    n_layer: int | None = None,
    n_embd: int | None = None,
    n_head: int | None = None,
    n_head_kv: int | None = None,
    cache_type_bytes: float = 2,
) -> int:
    """Estimate the bytes a model needs once loaded, so the scheduler can refuse or evict early.

    weights (the GGUF file size, since it is mmapped/copied whole)
    + KV cache = 2 (K and V) × n_layer × ctx_len × n_parallel × n_embd_kv × cache_type_bytes,
      where n_embd_kv = n_embd × n_head_kv / n_head (grouped-query attention shrinks it);
      `ctx_len` is the per-slot context, the engine allocates ctx_len × n_parallel cells.
      When the shape is unknown: KV_FALLBACK_FRACTION_PER_4K × file size per 4096 cells,
      scaled by cache_type_bytes / 2 (deliberately on the high side).
    + COMPUTE_OVERHEAD_BYTES for compute buffers.
    """
    cells = max(ctx_len, 0) * max(n_parallel, 1)
    if n_layer and n_embd and n_head:
        n_embd_kv = n_embd * (n_head_kv or n_head) / n_head
        kv = 2 * n_layer * cells * n_embd_kv * cache_type_bytes
    else:
        kv = file_size_bytes * KV_FALLBACK_FRACTION_PER_4K * (cells / 4096) * (cache_type_bytes / 2)
    return int(file_size_bytes + kv + COMPUTE_OVERHEAD_BYTES)


_shapes: dict[tuple[str, int, int], dict[str, int | None]] = {}


def model_shape(path: Path) -> dict[str, int | None]:
    """n_layer/n_embd/n_head/n_head_kv from the GGUF header, cached per file version."""
    try:
        st = path.stat()
    except OSError:
        return {}
    key = (str(path), st.st_mtime_ns, st.st_size)
    shape = _shapes.get(key)
    if shape is None:
        shape = _read_shape(path)
        _shapes[key] = shape
    return shape


def _read_shape(path: Path) -> dict[str, int | None]:
    from hearth.models.gguf import read_gguf_header  # local: only needed once per file

    try:
        head = read_gguf_header(path)
    except Exception as exc:  # the engine will report a bad file better; estimate without it
        log.debug("no GGUF shape for %s: %s", path, exc)
        return {}
    meta, arch = head.metadata, head.architecture

    def num(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return {
        "n_layer": head.block_count,
        "n_embd": head.embedding_length,
        "n_head": num("attention.head_count"),
        "n_head_kv": num("attention.head_count_kv"),
    }


# ---- the kind ------------------------------------------------------------------------------


class LlamaCppKind(LocalKind):
    """llama.cpp's HTTP server: Hearth's worker, or the user's `binary` from engine.json."""

    name: ClassVar[str] = "llama-cpp"
    aliases: ClassVar[tuple[str, ...]] = (
        "nitro", "llama.cpp", "llama_cpp", "llamacpp", "cortex.llamacpp", "cortex",
    )  # fmt: skip
    defaults: ClassVar[Mapping[str, Any]] = P.DEFAULTS

    def validate_params(
        self, params: Mapping[str, Any], source: str, *, trusted: bool, unknown: Unknown
    ) -> dict[str, Any]:
        return P.validate_engine_params(params, source, trusted=trusted, unknown=unknown)

    def merge(self, layers: list[tuple[Mapping[str, Any] | None, str, bool]]) -> dict[str, Any]:
        """Jan's `cache_type` sets both `cache_type_k` and `cache_type_v` unless those are set."""
        return P.fold_cache_type(super().merge(layers))

    def estimate_memory(self, model_path: Path | None, size: int, params: Mapping[str, Any]) -> int:
        shape = model_shape(model_path) if model_path is not None else {}
        kinds = (params.get("cache_type_k", "f16"), params.get("cache_type_v", "f16"))
        cache_bytes = sum(_CACHE_BYTES.get(k, 2.0) for k in kinds) / 2
        return estimate_model_memory(
            size,
            ctx_len=int(params.get("ctx_len", P.DEFAULTS["ctx_len"])),
            n_parallel=int(params.get("n_parallel", P.DEFAULTS["n_parallel"])),
            cache_type_bytes=cache_bytes,
            **shape,
        )

    def slots(self, params: Mapping[str, Any]) -> int:
        return int(params.get("n_parallel", P.DEFAULTS["n_parallel"]))

    def check_request(self, spec: LaunchSpec, path: str) -> None:
        if path == "embeddings" and not spec.params.get("embedding"):
            model = spec.model_id
            raise InvalidParameter(
                f"Model '{model}' is not set up for embeddings. Set engine_parameters "
                '"embedding": true (and "pooling": "mean" for a chat model), e.g. '
                f"`hearth models edit {model} engine_parameters.embedding=true`, or use an "
                "embedding model.",
                param="model",
                code="embeddings_not_enabled",
            )

    def check_files(self, spec: LaunchSpec) -> None:
        require_gguf(spec.model_path)
        if spec.params.get("mmproj"):
            require_gguf(mmproj_path(spec), "multimodal projector (mmproj)")

    def launch(self, spec: LaunchSpec, *, host: str, port: int, key: str, workdir: str) -> Launch:
        binary = spec.params.get("binary")
        args = P.build_server_args(
            spec.params,
            model_path=spec.model_path,
            port=port,
            alias=spec.model_id,
            host=host,
            template_dir=workdir,
        )
        check_launch_args(args)
        if not binary:  # the worker watches its parent itself
            program = python_command("hearth.engines.worker", "hearth", "xllamacpp")
            return Launch([*program, *args], {KEY_ENV: key}, die_with_parent=False)
        env = {"LLAMA_API_KEY": key, "LLAMA_ARG_UI": "0", "LLAMA_ARG_WEBUI": "0"}
        env |= {"LLAMA_ARG_NO_WEBUI": "1", "LLAMA_ARG_CORS_CREDENTIALS": "0"}
        env["LLAMA_ARG_CORS_ORIGINS"] = f"http://{host}:{port}"
        return Launch([user_binary(binary), *args], env)

    def child_env(self, env: Mapping[str, str]) -> dict[str, str]:
        return {
            k: v
            for k, v in env.items()
            if k not in _DROPPED_ENV and not k.startswith(_DROPPED_ENV_PREFIXES)
        }


def user_binary(binary: str) -> str:
    path = Path(binary).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise InvalidParameter(
            f"Engine parameter 'binary' is {binary!r}, which is not an executable file. "
            "Point it at your llama-server, or remove it to use Hearth's built-in engine.",
            param="binary",
        )
    return str(path.absolute())  # engines start in a private folder, not Hearth's own


def mmproj_path(spec: LaunchSpec) -> Path:
    """`mmproj` resolved as build_server_args resolves it (relative: beside the model)."""
    mmproj = Path(str(spec.params["mmproj"]))
    return mmproj if mmproj.is_absolute() else spec.model_path.parent / mmproj


KIND: LlamaCppKind = LlamaCppKind()
register(KIND)


def __getattr__(name: str) -> Any:
    """`LlamaCppProcess`, built on first use: its base, `engines.process`, imports asyncio and
    psutil (~40 ms), which the registry (and so `hearth models list` with no server) never needs."""
    if name != "LlamaCppProcess":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = _process_class()
    globals()[name] = cls
    return cls


def _process_class() -> type:
    from hearth.engines.process import EngineProcess

    class LlamaCppProcess(EngineProcess):
        """One llama.cpp process for a model file and merged parameters, without a planner:
        for tests and benchmarks that start an engine directly."""

        def __init__(
            self,
            model_path: str | Path,
            params: Mapping[str, Any],
            *,
            alias: str,
            log_path: str | Path | None = None,
            host: str = "127.0.0.1",
            start_timeout: float = 300.0,
            stall_timeout: float = 60.0,
            env: Mapping[str, str] | None = None,
            registry_dir: str | Path | None = None,
        ) -> None:
            log_file = Path(log_path) if log_path is not None else None
            spec = LaunchSpec(
                model_id=alias,
                model_path=Path(model_path),
                params=dict(params),
                config_key="",
                log_path=log_file or Path(os.devnull),
            )
            super().__init__(
                KIND,
                spec,
                log_path=log_file,
                host=host,
                start_timeout=start_timeout,
                stall_timeout=stall_timeout,
                env=env,
                registry_dir=registry_dir,
            )
            self.model_path = spec.model_path
            self.params = spec.params

    LlamaCppProcess.__qualname__ = "LlamaCppProcess"
    return LlamaCppProcess
