"""Supervise one llama.cpp HTTP server child: Hearth's worker or a user's own `llama-server`.

Both take the same flags (`params.build_server_args`), so there is one path: pick a free port
on 127.0.0.1, start the child in its own session, copy its stdout+stderr into a 16 KB ring
(and a log file if given), and poll GET /health until 200. While waiting it tells apart

- exited: the child is gone → EngineError with the exit code and the log tail;
- still loading: /health answers 503 (llama-server), or the child writes output or uses CPU
  (our worker serves nothing until loaded) → keep waiting, up to `start_timeout`;
- stalled: none of those for `stall_timeout` seconds → kill it, EngineError with the tail.

Only Hearth can use an engine: every spawn gets a fresh random key (`secrets.token_urlsafe`)
through the child's environment, never its argv (world-readable in /proc). The worker reads
`HEARTH_ENGINE_KEY`; a user's llama-server reads `LLAMA_API_KEY` (llama.cpp's variable for
`--api-key`) plus `LLAMA_ARG_UI=0` (and the older `LLAMA_ARG_WEBUI=0`, `LLAMA_ARG_NO_WEBUI=1`)
and `LLAMA_ARG_CORS_ORIGINS` set to its own origin; variables from Hearth's environment that
would move its listener or change its auth are dropped. Hearth sends the key on every request
(`auth_head`, `auth_headers`). Engine parameters cannot name a flag that sets where the engine
listens or who may call it (`check_launch_args`), and the engine always binds loopback.

Only model files reach the engine: the model (and `mmproj`) must be a regular file starting
with the bytes `GGUF`, checked before spawning, so llama.cpp never reads a file that is not a
model and its errors (e.g. "invalid magic characters: 'xxxx'") never quote one.

Orphans: our worker watches its parent itself; a user's binary gets PR_SET_PDEATHSIG on Linux
(only the direct child), so each engine's process group is also recorded in `registry_dir`
for `orphans.sweep_orphans` at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from hearth.engines.base import LOG_TAIL_BYTES, LogRing, free_port, looks_secret, redact_args
from hearth.engines.orphans import forget_engine, record_engine
from hearth.engines.params import build_server_args
from hearth.engines.worker import KEY_ENV, PARENT_ENV, is_loopback
from hearth.errors import EngineError, InvalidParameter

_PORT_IN_USE = re.compile(r"address already in use|couldn't bind|failed to bind", re.I)
_TAIL_FOR_ERRORS = 4000
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


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes a user's binary die with Hearth (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


class LlamaCppProcess:
    """One model served by a llama.cpp HTTP server child process (see the module docstring).

    >>> proc = LlamaCppProcess(path, merged_params, alias="smollm2", log_path=home/"logs/x.log",
    ...                        registry_dir=home/"logs/engines")
    >>> await proc.start()           # EngineError if it exits, stalls or times out
    >>> proc.base_url                # "http://127.0.0.1:<port>" (routes: /v1/chat/completions…)
    >>> proc.auth_headers            # {"Authorization": "Bearer <this launch's key>"}
    >>> await proc.stop()
    """

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
        if not is_loopback(host):
            raise ValueError(f"engines listen on loopback only, not {host!r}")
        self.model_path = Path(model_path)
        self.params = dict(params)
        self.alias = alias
        self.log_path = Path(log_path) if log_path is not None else None
        self.host = host
        self.start_timeout = start_timeout
        self.stall_timeout = stall_timeout
        self.env = dict(env or {})
        self.registry_dir = Path(registry_dir) if registry_dir is not None else None
        self.port: int | None = None
        self.auth_headers: dict[str, str] = {}  # for httpx: {"Authorization": "Bearer <key>"}
        self.auth_head = b""  # the same as a ready HTTP/1.1 header line, for the proxy
        self._record: Path | None = None  # this spawn's orphans record
        self.started_at: float | None = None  # wall clock, when the child was spawned
        self.load_seconds: float | None = None  # spawn → /health 200
        self.command: list[str] = []  # redacted, safe to show
        self._proc: asyncio.subprocess.Process | None = None
        self._ring = LogRing()
        self._log: IO[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()
        self._stopping = False
        self._tmp: str | None = None

    # -- what a scheduler reads -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def unexpected_exit(self) -> bool:
        """True once the child has died without stop() being asked for."""
        return self.returncode is not None and not self._stopping

    def log_tail(self, max_bytes: int = LOG_TAIL_BYTES) -> str:
        return self._ring.tail(max_bytes)

    def rss_bytes(self) -> int:
        """Resident memory of the child and its descendants (0 when not running)."""
        if not self.alive or self.pid is None:
            return 0
        try:
            proc = psutil.Process(self.pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    async def wait_exit(self) -> int | None:
        """Return when the child has exited (for whatever reason) with its exit code."""
        await self._exited.wait()
        return self.returncode

    # -- lifecycle --------------------------------------------------------------------------
    def _command(self) -> list[str]:
        binary = self.params.get("binary")
        if not binary:
            return [sys.executable, "-m", "hearth.engines.worker"]
        path = Path(binary).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InvalidParameter(
                f"Engine parameter 'binary' is {binary!r}, which is not an executable file. "
                "Point it at your llama-server, or remove it to use Hearth's built-in engine.",
                param="binary",
            )
        return [str(path)]

    async def start(self, timeout: float | None = None) -> None:
        """Start the child and wait until it serves; EngineError (child killed) otherwise."""
        if self._proc is not None:
            raise RuntimeError("LlamaCppProcess.start() called twice; make a new one")
        program = self._command()
        require_gguf(self.model_path)
        if self.params.get("mmproj"):
            require_gguf(self._mmproj_path(), "multimodal projector (mmproj)")
        timeout = self.start_timeout if timeout is None else timeout
        self._tmp = tempfile.mkdtemp(prefix="hearth-engine-")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed after the child)
        try:
            for attempt in range(3):
                self.port = free_port(self.host)
                await self._spawn(program)
                try:
                    await self._wait_ready(timeout)
                    return
                except EngineError:
                    tail = self._ring.tail(2000)
                    if attempt == 2 or self.alive or not _PORT_IN_USE.search(tail):
                        raise
                    self._note("port was taken; retrying on another port")
                    await self._kill()
                    self._forget()
                    self._proc, self._exited = None, asyncio.Event()
        except BaseException:
            await self._kill()
            self._cleanup()
            raise

    def _mmproj_path(self) -> Path:
        """`mmproj` resolved as build_server_args resolves it (relative: beside the model)."""
        mmproj = Path(str(self.params["mmproj"]))
        return mmproj if mmproj.is_absolute() else self.model_path.parent / mmproj

    def _new_key(self) -> str:
        """A fresh key for this spawn, and the headers Hearth sends with it."""
        key = secrets.token_urlsafe(32)
        self.auth_headers = {"Authorization": f"Bearer {key}"}
        self.auth_head = f"Authorization: Bearer {key}\r\n".encode("ascii")
        return key

    def _child_env(self, key: str) -> dict[str, str]:
        """Hearth's environment minus what could move the engine's listener or auth and minus
        secrets it has no use for (HF_TOKEN, HEARTH_API_KEY, ...: an engine reads model files,
        not accounts), plus the key (see the module docstring) and the parent pid to watch."""
        env = {
            k: v
            for k, v in {**os.environ, **self.env}.items()
            if k not in _DROPPED_ENV
            and not k.startswith(_DROPPED_ENV_PREFIXES)
            and not looks_secret(k)
        }
        env[PARENT_ENV] = str(os.getpid())
        if not self.params.get("binary"):
            env[KEY_ENV] = key
            return env
        env["LLAMA_API_KEY"] = key
        env.update(LLAMA_ARG_UI="0", LLAMA_ARG_WEBUI="0", LLAMA_ARG_NO_WEBUI="1")
        env.update(LLAMA_ARG_CORS_ORIGINS=self.base_url, LLAMA_ARG_CORS_CREDENTIALS="0")
        return env

    async def _spawn(self, program: list[str]) -> None:
        args = build_server_args(
            self.params,
            model_path=self.model_path,
            port=self.port or 0,
            alias=self.alias,
            host=self.host,
            template_dir=self._tmp,
        )
        check_launch_args(args)
        cmd = [*program, *args]
        self.command = redact_args(cmd)
        self._note(f"starting: {shlex.join(self.command)}")
        env = self._child_env(self._new_key())
        self.started_at = time.time()
        self._proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches Hearth only; it stops us
            preexec_fn=_pdeathsig_preexec() if self.params.get("binary") else None,
        )
        self._reader = asyncio.create_task(self._pump(self._proc, self._exited))
        if self.registry_dir is not None:
            try:
                self._record = record_engine(
                    self.registry_dir, pid=self._proc.pid, model_id=self.alias
                )
            except OSError as exc:  # a full disk must not stop the model from loading
                self._note(f"could not record the engine in {self.registry_dir}: {exc}")

    async def _pump(self, proc: asyncio.subprocess.Process, exited: asyncio.Event) -> None:
        """Copy the child's output to the ring and the log file, then record its exit."""
        assert proc.stdout is not None
        try:
            while chunk := await proc.stdout.read(4096):
                self._ring.write(chunk)
                if self._log is not None:
                    self._log.write(chunk)
                    self._log.flush()
            await proc.wait()
            self._note(f"engine exited with code {proc.returncode}")
        finally:
            exited.set()

    def _note(self, message: str) -> None:
        line = f"[hearth {time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n".encode()
        self._ring.write(line)
        if self._log is not None:
            self._log.write(line)
            self._log.flush()

    def _cpu_seconds(self) -> float:
        try:
            times = psutil.Process(self.pid).cpu_times()
            return float(times.user + times.system)
        except (psutil.Error, TypeError, ValueError):
            return 0.0

    def _fail(self, what: str) -> EngineError:
        tail = self._ring.tail(_TAIL_FOR_ERRORS).rstrip()
        where = f" Full log: {self.log_path}." if self.log_path else ""
        return EngineError(
            f"The llama.cpp engine for '{self.alias}' {what}.{where} Last engine output:\n{tail}"
        )

    async def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        t0 = time.monotonic()
        last_progress = t0
        seen_output, seen_cpu = self._ring.total, self._cpu_seconds()
        url = f"{self.base_url}/health"
        async with httpx.AsyncClient(
            timeout=2.0, trust_env=False, headers=self.auth_headers
        ) as client:
            while True:
                if self._exited.is_set() or self._proc.returncode is not None:
                    await self._exited.wait()
                    raise self._fail(f"exited with code {self._proc.returncode} while starting")
                progress = False
                try:
                    resp = await client.get(url)
                    if resp.status_code == 200:
                        self.load_seconds = time.monotonic() - t0
                        await self._require_key(client)
                        self._note(f"ready in {self.load_seconds:.2f} s on {self.base_url}")
                        return
                    progress = resp.status_code == 503  # llama-server: "Loading model"
                except httpx.TransportError:
                    pass
                cpu = self._cpu_seconds()
                if self._ring.total != seen_output or cpu > seen_cpu + 0.01:
                    progress = True
                seen_output, seen_cpu = self._ring.total, cpu
                now = time.monotonic()
                if progress:
                    last_progress = now
                if now - t0 > timeout:
                    await self._kill()
                    raise self._fail(f"was still loading after {timeout:g} s and was stopped")
                if now - last_progress > self.stall_timeout:
                    await self._kill()
                    raise self._fail(
                        f"stalled: no output, no CPU use and no answer on /health for "
                        f"{self.stall_timeout:g} s, so it was stopped"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), 0.1)

    async def _require_key(self, client: httpx.AsyncClient) -> None:
        """Refuse an engine that serves a caller without this launch's key (say a llama-server
        too old to read LLAMA_API_KEY): anything on this machine could use it around Hearth."""
        try:
            resp = await client.post(
                f"{self.base_url}/v1/chat/completions",
                json={},
                headers={"Authorization": "Bearer not-the-engine-key"},
            )
            status = resp.status_code
        except httpx.TransportError:
            status = 0
        if status != 401:
            await self._kill()
            raise self._fail(
                f"answered a request that lacked Hearth's key (HTTP {status}), so it was "
                "stopped. Engines must require the key Hearth hands them: use a llama-server "
                "recent enough to read LLAMA_API_KEY"
            )

    async def _kill(self, grace: float = 0.0) -> None:
        """SIGTERM the child's process group, then SIGKILL after `grace` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            if grace > 0:
                self._signal(proc.pid, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), grace)
            if proc.returncode is None:
                self._signal(proc.pid, signal.SIGKILL)
        self._signal(proc.pid, signal.SIGKILL)  # anything the child left in its group
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), 10)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)

    @staticmethod
    def _signal(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _forget(self) -> None:
        """Drop this spawn's orphans record (its group has just been killed)."""
        forget_engine(self._record)
        self._record = None

    def _cleanup(self) -> None:
        self._forget()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def stop(self, grace: float = 5.0) -> None:
        """Ask the child to exit (SIGTERM), kill it after `grace` s; leaves no process."""
        self._stopping = True
        try:
            await self._kill(grace)
        finally:
            if self._proc is not None and self._log is not None:
                self._note("stopped by Hearth")
            self._cleanup()
