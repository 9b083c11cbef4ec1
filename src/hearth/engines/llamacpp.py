"""Supervise one llama.cpp HTTP server child: Hearth's worker or a user's own `llama-server`.

Both take the same flags (`params.build_server_args`), so there is one path: pick a free port
on 127.0.0.1, start the child in its own session, copy its stdout+stderr into a 16 KB ring
(and a log file if given), and poll GET /health until 200. While waiting it tells apart

- exited: the child is gone → EngineError with the exit code and the log tail;
- still loading: /health answers 503 (llama-server), or the child writes output or uses CPU
  (our worker serves nothing until loaded) → keep waiting, up to `start_timeout`;
- stalled: none of those for `stall_timeout` seconds → kill it, EngineError with the tail.

Orphans: our worker watches its parent itself; a user's binary gets PR_SET_PDEATHSIG on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from hearth.engines.base import LOG_TAIL_BYTES, LogRing, free_port, redact_args
from hearth.engines.params import build_server_args
from hearth.engines.worker import PARENT_ENV
from hearth.errors import EngineError, InvalidParameter

_PORT_IN_USE = re.compile(r"address already in use|couldn't bind|failed to bind", re.I)
_TAIL_FOR_ERRORS = 4000


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

    >>> proc = LlamaCppProcess(path, merged_params, alias="smollm2", log_path=home/"logs/x.log")
    >>> await proc.start()           # EngineError if it exits, stalls or times out
    >>> proc.base_url                # "http://127.0.0.1:<port>" (routes: /v1/chat/completions…)
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
    ) -> None:
        self.model_path = Path(model_path)
        self.params = dict(params)
        self.alias = alias
        self.log_path = Path(log_path) if log_path is not None else None
        self.host = host
        self.start_timeout = start_timeout
        self.stall_timeout = stall_timeout
        self.env = dict(env or {})
        self.port: int | None = None
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
        if not self.model_path.is_file():
            raise EngineError(f"The model file {self.model_path} does not exist.")
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
                    self._proc, self._exited = None, asyncio.Event()
        except BaseException:
            await self._kill()
            self._cleanup()
            raise

    async def _spawn(self, program: list[str]) -> None:
        args = build_server_args(
            self.params,
            model_path=self.model_path,
            port=self.port or 0,
            alias=self.alias,
            host=self.host,
            template_dir=self._tmp,
        )
        cmd = [*program, *args]
        self.command = redact_args(cmd)
        self._note(f"starting: {shlex.join(self.command)}")
        env = {**os.environ, **self.env, PARENT_ENV: str(os.getpid())}
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
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if self._exited.is_set() or self._proc.returncode is not None:
                    await self._exited.wait()
                    raise self._fail(f"exited with code {self._proc.returncode} while starting")
                progress = False
                try:
                    resp = await client.get(url)
                    if resp.status_code == 200:
                        self.load_seconds = time.monotonic() - t0
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

    def _cleanup(self) -> None:
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
