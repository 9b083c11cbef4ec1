"""`python -m hearth.engines.worker <llama-server flags>`: llama.cpp's HTTP server, from a wheel.

xllamacpp embeds llama.cpp's own `llama-server` (same routes, same JSON) in a Python
extension, so Hearth needs no compiled binary. This runner takes the `llama-server` flags
Hearth emits (and other common ones), so one supervision path serves both it and a user's
own `llama-server` (engine parameter `binary`). An unsupported flag exits with status 2.

Facts about xllamacpp this relies on:
- `xllamacpp.Server(CommonParams)` loads the model *synchronously, holding the GIL*, then
  serves HTTP on `params.hostnames[0]:params.port` from C++ threads; it raises RuntimeError
  when loading fails (the reason is in llama.cpp's log on stderr). Unlike `llama-server`,
  nothing listens during the load, so a supervisor sees "connection refused" until ready.
- GET /health answers 200 {"status": "ok"} once listening; `model_alias` (a set) is the
  model name in responses and /v1/models.
- Dropping the Server object stops the HTTP threads (fast, ~20 ms).

Reachable only through Hearth: the worker listens on loopback only (a non-loopback `--host`,
or `--host`/`--port` given twice, exits with status 2) and requires the per-launch key Hearth
hands it in the environment (`HEARTH_ENGINE_KEY`, removed from os.environ once read: argv is
world-readable in /proc, the environment only to its owner) on every route but /health. It
serves no web page, and its CORS headers name only its own origin, never a caller's, without
credentials. `--api-key` is not accepted: who may call the engine is Hearth's decision alone.
Run by hand without the variable, it makes up a key nobody knows: never unauthenticated.

Orphans: the worker asks the kernel for SIGTERM when its parent dies (Linux prctl
PR_SET_PDEATHSIG, which works even while the load holds the GIL) and, once serving, also
polls its parent pid. During the load SIGTERM/SIGINT keep their default action (die at once:
nothing to clean up); afterwards they stop the server and exit 0.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

PARENT_ENV = "HEARTH_PARENT_PID"
#: The per-launch key the engine requires (LlamaCppProcess makes one for every spawn).
KEY_ENV = "HEARTH_ENGINE_KEY"
PR_SET_PDEATHSIG = 1


class _Once(argparse.Action):
    """Store a value that may be given only once: Hearth sets where the engine listens, and a
    second --host or --port (say from extra_args) must not quietly win."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, f"_seen_{self.dest}", False):
            parser.error(f"{option_string} given twice; Hearth alone sets where the engine listens")
        setattr(namespace, f"_seen_{self.dest}", True)
        setattr(namespace, self.dest, values)


def is_loopback(host: str) -> bool:
    """True for names that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"hearth worker: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The llama-server flags this runner understands (same spellings as llama-server)."""
    p = _Parser(prog="python -m hearth.engines.worker", allow_abbrev=False)
    a = p.add_argument
    a("-m", "--model", required=True)
    a("--host", default="127.0.0.1", action=_Once)
    a("--port", type=int, default=8080, action=_Once)
    a("-a", "--alias")
    a("-c", "--ctx-size", type=int)
    a("-np", "--parallel", type=int)
    a("-ngl", "--gpu-layers", "--n-gpu-layers", dest="gpu_layers")
    a("--embedding", "--embeddings", action="store_true")
    a("-t", "--threads", type=int)
    a("-tb", "--threads-batch", type=int)
    a("-cb", "--cont-batching", action="store_true", default=None)
    a("-nocb", "--no-cont-batching", dest="cont_batching", action="store_false")
    a("-fa", "--flash-attn", nargs="?", const="on", choices=("on", "off", "auto"))
    a("--mmproj")
    a("-ctk", "--cache-type-k")
    a("-ctv", "--cache-type-v")
    a("--mlock", action="store_true")
    a("--no-mmap", action="store_true")
    a("--jinja", dest="jinja", action="store_true", default=None)
    a("--no-jinja", dest="jinja", action="store_false")
    a("--chat-template")
    a("--chat-template-file")
    a("-b", "--batch-size", type=int)
    a("-ub", "--ubatch-size", type=int)
    a("-n", "--n-predict", type=int)
    a("-s", "--seed", type=int)
    a("--metrics", action="store_true")
    a("--slots", dest="slots", action="store_true", default=None)
    a("--no-slots", dest="slots", action="store_false")
    a("--no-warmup", action="store_true")
    a("--no-webui", action="store_true")
    a("-kvu", "--kv-unified", action="store_true")
    a("--pooling", choices=("none", "mean", "cls", "last", "rank"))
    a("--threads-http", type=int)
    a("-lv", "--verbosity", "--log-verbosity", type=int)
    return p


def _fail(message: str) -> NoReturn:
    print(f"hearth worker: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _enum(enum: Any, name: str, flag: str) -> Any:
    try:
        return enum.__members__[name]
    except KeyError:
        _fail(f"{flag}: unsupported value {name.rsplit('_TYPE_', 1)[-1].lower()!r}")


def _lock_down(p: Any, host: str, port: int, key: str) -> None:
    """Only Hearth may use the engine: its key on every non-public route, no web page, no MCP
    proxy, and CORS that names the engine's own origin (which serves no page) instead of
    echoing the caller's, without credentials. A web page reaching this port by DNS rebinding
    or a port scan can neither call it nor read an answer."""
    p.api_keys = [key]
    p.ui = False
    p.ui_mcp_proxy = False
    p.endpoint_props = False
    p.cors_origins = f"http://{host}:{port}"
    p.cors_origins_explicit = True
    p.cors_credentials = False
    p.cors_methods = "GET, POST"
    p.cors_headers = "content-type"


def _apply_sizes(p: Any, ns: argparse.Namespace) -> None:
    """Context, slots, batches, threads and GPU layers: the numbers a load is sized by."""
    simple = {
        "ctx_size": "n_ctx",
        "parallel": "n_parallel",
        "batch_size": "n_batch",
        "ubatch_size": "n_ubatch",
        "n_predict": "n_predict",
        "threads_http": "n_threads_http",
        "verbosity": "verbosity",
        "cont_batching": "cont_batching",
    }
    for flag, attr in simple.items():
        if getattr(ns, flag) is not None:
            setattr(p, attr, getattr(ns, flag))
    if ns.gpu_layers is not None:
        value = {"auto": "-1", "all": "999"}.get(ns.gpu_layers, ns.gpu_layers)
        try:
            p.n_gpu_layers = int(value)
        except ValueError:
            _fail(f"-ngl: expected a number, auto or all; got {value!r}")
    if ns.threads is not None:
        p.cpuparams.n_threads = ns.threads
        p.cpuparams_batch.n_threads = ns.threads
    if ns.threads_batch is not None:
        p.cpuparams_batch.n_threads = ns.threads_batch


def to_common_params(ns: argparse.Namespace, key: str) -> Any:
    """Translate parsed flags to an `xllamacpp.CommonParams` that requires `key`."""
    import xllamacpp as xlc

    if not is_loopback(ns.host):
        _fail(f"--host {ns.host}: the engine listens on loopback only; Hearth is its front door")
    p = xlc.CommonParams()
    p.model.path = ns.model
    p.hostnames = [ns.host]
    p.port = ns.port
    _lock_down(p, ns.host, ns.port, key)
    if ns.alias:
        p.model_alias = {a.strip() for a in ns.alias.split(",") if a.strip()}
    _apply_sizes(p, ns)
    if ns.embedding:
        p.embedding = True
    if ns.flash_attn is not None:
        fa = {"on": "ENABLED", "off": "DISABLED", "auto": "AUTO"}[ns.flash_attn]
        p.flash_attn_type = _enum(xlc.llama_flash_attn_type, f"LLAMA_FLASH_ATTN_TYPE_{fa}", "-fa")
    if ns.mmproj:
        p.mmproj.path = ns.mmproj
    if ns.cache_type_k:
        p.cache_type_k = _enum(xlc.ggml_type, f"GGML_TYPE_{ns.cache_type_k.upper()}", "-ctk")
    if ns.cache_type_v:
        p.cache_type_v = _enum(xlc.ggml_type, f"GGML_TYPE_{ns.cache_type_v.upper()}", "-ctv")
    if ns.mlock or ns.no_mmap:
        mode = ("MLOCK" if ns.mlock else "NONE") if ns.no_mmap else "MMAP_MLOCK"
        p.load_mode = _enum(xlc.llama_load_mode, f"LLAMA_LOAD_MODE_{mode}", "--mlock")
    if ns.jinja is not None:
        p.use_jinja = ns.jinja
    if ns.chat_template_file:
        p.chat_template = Path(ns.chat_template_file).read_text(encoding="utf-8")
    elif ns.chat_template:
        p.chat_template = ns.chat_template
    if ns.seed is not None:
        p.sampling.seed = ns.seed
    if ns.metrics:
        p.endpoint_metrics = True
    if ns.slots is not None:
        p.endpoint_slots = ns.slots
    if ns.no_warmup:
        p.warmup = False
    if ns.kv_unified:
        p.kv_unified = True
    if ns.pooling:
        pooling = f"LLAMA_POOLING_TYPE_{ns.pooling.upper()}"
        p.pooling_type = _enum(xlc.llama_pooling_type, pooling, "--pooling")
    return p


def _die_with_parent() -> int:
    """Ask the kernel to SIGTERM us when the parent dies; return the parent pid to watch."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    return parent


def _say(message: str) -> None:
    print(f"hearth worker: {message}", file=sys.stderr, flush=True)


def _take_key() -> str:
    """The key from Hearth, removed from our environment; a random one if run by hand."""
    key = os.environ.pop(KEY_ENV, "")
    if not key:
        _say(f"{KEY_ENV} is not set: using a random key, so only /health answers")
        key = secrets.token_urlsafe(32)
    return key


def main(argv: Sequence[str] | None = None) -> int:
    parent = _die_with_parent()
    parser = build_parser()
    ns, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.exit(
            2,
            f"hearth worker: unsupported llama-server option(s): {' '.join(unknown)}. "
            "This runner understands the flags listed by --help; for others, point the "
            "engine parameter 'binary' at your own llama-server.\n",
        )
    params = to_common_params(ns, _take_key())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # die at once while the load holds the GIL

    import xllamacpp as xlc

    _say(f"loading {ns.model}")
    try:
        server = xlc.Server(params)
    except RuntimeError as exc:
        _say(f"failed to start: {exc} (see the llama.cpp log above)")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _say(f"listening on {server.listening_address}")
    while not stop.wait(0.25):
        if os.getppid() != parent:
            _say("parent process exited; stopping")
            break
    del server
    _say("stopped")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown racing llama.cpp's native threads
