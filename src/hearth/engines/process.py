"""One supervised engine child process, whatever its kind: start, readiness, death, stop.

The kind (engines/registry.py) says what to run; this class runs it the same way for all:
pick a free port on 127.0.0.1, start the child in its own session and in a private temporary
folder (never the directory Hearth was started from: see `hearth.core.pychild`), copy its
stdout+stderr into a 16 KB ring (and a log file if given), and poll the kind's health route until
200. While waiting it tells apart

- exited: the child is gone → EngineError with the exit code and the log tail;
- still loading: the health route answers 503 (llama-server), or the child writes output or
  uses CPU (Hearth's worker serves nothing until loaded) → keep waiting, up to `start_timeout`;
- stalled: none of those for `stall_timeout` seconds → kill it, EngineError with the tail.

Only Hearth can use an engine: every spawn gets a fresh random key (`secrets.token_urlsafe`)
that the kind passes through the child's environment, never its argv (world-readable in
/proc); an engine that answers a request without it is stopped before it is used. Hearth
sends the key on every request (`auth_head`, `auth_headers`).

Once serving, a watcher notices an unexpected exit at once and calls `on_exit`, so a model
reads failed (or its replica restarts) even when no request is running. Stopping kills the
whole process group. Orphans: each spawn's process group is recorded in `registry_dir` for
`orphans.sweep_orphans` at the next start, and a kind's program may die with Hearth
(PR_SET_PDEATHSIG, Linux).
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
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

import psutil

from hearth.core.errors import EngineError
from hearth.core.pychild import child_env
from hearth.engines.base import LOG_TAIL_BYTES, LogRing, free_port, looks_secret, redact_args
from hearth.engines.orphans import forget_engine, record_engine
from hearth.engines.registry import LaunchSpec, LocalKind
from hearth.engines.worker import KEY_ENV, PARENT_ENV, is_loopback

if TYPE_CHECKING:
    import httpx  # imported where used: validating a model.json loads this module's kind

_PORT_IN_USE = re.compile(r"address already in use|couldn't bind|failed to bind", re.I)
_TAIL_FOR_ERRORS = 4000
_DEATH_TAIL = 2000


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes a child die with Hearth (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


class EngineProcess:
    """One process of one model (see the module docstring).

    >>> proc = EngineProcess(kind, spec, registry_dir=home/"logs/engines")
    >>> await proc.start()           # EngineError if it exits, stalls or times out
    >>> proc.base_url                # "http://127.0.0.1:<port>"
    >>> proc.auth_headers            # {"Authorization": "Bearer <this launch's key>"}
    >>> await proc.stop()
    """

    def __init__(
        self,
        kind: LocalKind,
        spec: LaunchSpec,
        *,
        log_path: Path | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 300.0,
        stall_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        registry_dir: str | Path | None = None,
        on_exit: Callable[[EngineProcess], None] | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"engines listen on loopback only, not {host!r}")
        self.kind = kind
        self.spec = spec
        self.alias = spec.model_id
        self.log_path = log_path if log_path is not None else spec.log_path
        self.host = host
        self.start_timeout = start_timeout
        self.stall_timeout = stall_timeout
        self.env = dict(env or {})
        self.registry_dir = Path(registry_dir) if registry_dir is not None else None
        self.on_exit = on_exit
        self.port: int | None = None
        self.auth_headers: dict[str, str] = {}  # for httpx: {"Authorization": "Bearer <key>"}
        self.auth_head = b""  # the same as a ready HTTP/1.1 header line, for the proxy
        self.started_at: float | None = None  # wall clock, when the child was spawned
        self.load_seconds: float | None = None  # spawn → health 200
        self.command: list[str] = []  # redacted, safe to show
        self.crashed = False  # set once an unexpected exit was seen; stays after stop()
        self._record: Path | None = None  # this spawn's orphans record
        self._proc: asyncio.subprocess.Process | None = None
        self._ring = LogRing()
        self._log: IO[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()
        self._stopping = False
        self._tmp: str | None = None

    # -- what the rest of Hearth reads --------------------------------------------------------
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

    def death_reason(self) -> str:
        tail = self.log_tail(_DEATH_TAIL).rstrip()
        where = f" Full log: {self.log_path}." if self.log_path else ""
        return (
            f"The {self.kind.name} engine for '{self.alias}' exited unexpectedly with code "
            f"{self.returncode}; the next request starts it again.{where} "
            f"Last engine output:\n{tail}"
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, timeout: float | None = None) -> None:
        """Start the child and wait until it serves; EngineError (child killed) otherwise."""
        if self._proc is not None:
            raise RuntimeError("EngineProcess.start() called twice; make a new one")
        self.kind.check_files(self.spec)
        timeout = self.start_timeout if timeout is None else timeout
        self._tmp = tempfile.mkdtemp(prefix="hearth-engine-")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed after the child)
        try:
            await self._start_on_free_port(timeout)
        except BaseException:
            await self._kill()
            self._cleanup()
            raise
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())

    async def _start_on_free_port(self, timeout: float) -> None:
        """Spawn and wait; a port taken between choosing and binding it is retried twice."""
        for attempt in range(3):
            self.port = free_port(self.host)
            await self._spawn()
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

    async def _watch_exit(self) -> None:
        await self.wait_exit()
        if self.unexpected_exit:
            self.crashed = True
            if self.on_exit is not None:
                self.on_exit(self)

    def _new_key(self) -> str:
        """A fresh key for this spawn, and the headers Hearth sends with it."""
        key = secrets.token_urlsafe(32)
        self.auth_headers = {"Authorization": f"Bearer {key}"}
        self.auth_head = f"Authorization: Bearer {key}\r\n".encode("ascii")
        return key

    def _base_env(self) -> dict[str, str]:
        """Hearth's environment minus secrets it has no use for (HF_TOKEN, HEARTH_API_KEY, ...:
        an engine reads model files, not accounts) and minus any engine key of its own."""
        return {
            k: v
            for k, v in {**os.environ, **self.env}.items()
            if k != KEY_ENV and k != "HEARTH_API_KEY" and not looks_secret(k)
        }

    async def _spawn(self) -> None:
        assert self._tmp is not None and self.port is not None
        key = self._new_key()
        launch = self.kind.launch(
            self.spec, host=self.host, port=self.port, key=key, workdir=self._tmp
        )
        env = {**self.kind.child_env(self._base_env()), **launch.env, PARENT_ENV: str(os.getpid())}
        env = child_env(env)  # PYTHONPATH means in the private folder what it meant here
        self.command = redact_args(launch.argv)
        self._note(f"starting: {shlex.join(self.command)}")
        self.started_at = time.time()
        self._proc = await asyncio.create_subprocess_exec(
            *launch.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=self._tmp,  # never the folder Hearth was started in: nothing of a stranger's
            start_new_session=True,  # a terminal's Ctrl-C reaches Hearth only; it stops us
            preexec_fn=_pdeathsig_preexec() if launch.die_with_parent else None,
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
            f"The {self.kind.name} engine for '{self.alias}' {what}.{where} "
            f"Last engine output:\n{tail}"
        )

    async def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        t0 = time.monotonic()
        last_progress = t0
        seen_output, seen_cpu = self._ring.total, self._cpu_seconds()
        url = f"{self.base_url}{self.kind.health_path}"
        import httpx

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
                        f"stalled: no output, no CPU use and no answer on "
                        f"{self.kind.health_path} for {self.stall_timeout:g} s, so it was stopped"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), 0.1)

    async def _require_key(self, client: httpx.AsyncClient) -> None:
        import httpx

        """Refuse an engine that serves a caller without this launch's key (say a llama-server
        too old to read LLAMA_API_KEY): anything on this machine could use it around Hearth."""
        try:
            resp = await client.post(
                f"{self.base_url}{self.kind.api_prefix}/chat/completions",
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
                "stopped. Engines must require the key Hearth hands them (for llama-server: "
                "one recent enough to read LLAMA_API_KEY)"
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
