"""One server per home, and a note saying where it listens.

A server that serves a home (`hearth serve`, or the one `hearth run` starts in its own process)
holds an exclusive `flock` on `<home>/.hearth.lock` for its whole life, and writes
`<home>/server.json` (pid, host, port, a key-less url, start time) once it has bound its port:

- A second server on the same home cannot take the lock and says which process has it, instead of
  racing the first one's imports, engines and model.json writes (or failing on "port taken").
- Every CLI command finds the home's server from server.json, whatever port it was given. The file
  counts only while the lock is held: the kernel drops the lock when its holder dies, even by
  kill -9, so a stale file is recognised (and replaced by the next server) without guessing
  from pids, which get reused.

The lock file is never deleted: a new file would be a new lock that a waiting process could take
while the old one is still held. The api key is never written; server.json holds nothing secret.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from hearth.core.errors import Conflict

LOCK_FILE = ".hearth.lock"
RUNTIME_FILE = "server.json"
#: How long a starting server retries the lock: a CLI probing it holds it for microseconds.
_ACQUIRE_PATIENCE = 1.0


class RunningServer(NamedTuple):
    """What server.json says about the server of a home.

    (A NamedTuple, and logging imported where it logs: every CLI command reads this module, and
    `dataclasses` and `logging` would add ~25 ms to each.)"""

    pid: int
    host: str
    port: int
    url: str
    started: float

    @classmethod
    def from_json(cls, data: Any) -> RunningServer | None:
        """None for anything but the shape a server writes (a hand-edited or foreign file)."""
        if not isinstance(data, dict):
            return None
        try:
            server = cls(
                pid=data["pid"],
                host=data["host"],
                port=data["port"],
                url=data["url"],
                started=data["started"],
            )
        except (KeyError, TypeError):
            return None
        ints_ok = all(type(v) is int for v in (server.pid, server.port))
        text_ok = isinstance(server.host, str) and isinstance(server.url, str)
        if not (ints_ok and text_ok and isinstance(server.started, int | float)):
            return None
        return server if server.url.startswith(("http://", "https://")) else None


def connect_url(host: str, port: int) -> str:
    """A URL this machine can reach a server bound to `host` on (wildcards mean loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host.strip("[]") == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _read_runtime(home: Path) -> RunningServer | None:
    try:
        data = json.loads((home / RUNTIME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return RunningServer.from_json(data)


def _lock_is_held(home: Path) -> bool:
    """Whether a live process holds the home's lock (a shared probe, released at once)."""
    try:
        fd = os.open(home / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no server has ever served this home
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # closing drops the probe's shared lock, if it got one
    return False


def running_server(home: Path) -> RunningServer | None:
    """The live server of this home from its server.json, or None (none, or a stale file)."""
    if not (home / RUNTIME_FILE).exists():
        return None
    return _read_runtime(home) if _lock_is_held(home) else None


class HomeInstance:
    """`with HomeInstance(home) as instance:` this process is the home's one server until exit.

    `acquire` takes the lock (raising Conflict, naming the holder, if another process has it);
    `publish` writes server.json once the port is bound; `release` removes it and unlocks.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.lock_path = home / LOCK_FILE
        self.runtime_path = home / RUNTIME_FILE
        self._fd: int | None = None
        self.published: RunningServer | None = None

    def acquire(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + _ACQUIRE_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise self._busy() from None
                time.sleep(0.02)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # names the holder before server.json exists
        self._sweep_stale()

    def _sweep_stale(self) -> None:
        """A server.json left by a killed server points at nothing: remove it, the home is ours."""
        stale = _read_runtime(self.home)
        if stale is not None:
            import logging

            logging.getLogger("hearth").info(
                "Replacing the stale %s of pid %d (it is gone).", RUNTIME_FILE, stale.pid
            )
        with contextlib.suppress(FileNotFoundError):
            self.runtime_path.unlink()

    def _busy(self) -> Conflict:
        """The error for a home another process serves: who, where, and what to do."""
        server = _read_runtime(self.home)
        pid: int | str | None = server.pid if server else None
        if pid is None:
            with contextlib.suppress(OSError, ValueError):
                pid = int(self.lock_path.read_text(encoding="ascii").strip())
        where = f" at {server.url}" if server else " (still starting)"
        who = f"pid {pid}" if pid is not None else "another process"
        stop = f"`kill {pid}`" if pid is not None else "stopping it"
        return Conflict(
            f"Hearth is already serving the home {self.home} ({who}){where}. Use that server "
            f"(every `hearth` command finds it by itself), or stop it with {stop} first; to "
            "run a second server, give it another home with --home.",
            code="home_busy",
        )

    def publish(self, host: str, port: int) -> RunningServer:
        """Write server.json for the bound port; it never holds the api key."""
        if self._fd is None:
            raise RuntimeError("publish() before acquire()")
        from hearth.core import atomic  # the server's path, not the CLI's: imported here

        server = RunningServer(
            pid=os.getpid(), host=host, port=port, url=connect_url(host, port), started=time.time()
        )
        atomic.write_json(
            self.runtime_path, server._asdict(), indent=2, newline=True, storage_error=True
        )
        self.published = server
        return server

    def release(self) -> None:
        """Remove server.json (it is ours: we hold the lock) and unlock; safe to call twice."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.runtime_path.unlink()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None
        self.published = None

    def __enter__(self) -> HomeInstance:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
