"""Who else is on Hearth's port, and whether Jan itself runs: told once, at `hearth serve`.

Jan's Local API Server listens on 127.0.0.1:1337 by default, Hearth's default port too. When
the port is taken, `port_holder` asks the holder who it is, in a way each answers without a
key: Jan's server (src-tauri/src/core/server/proxy.rs in janhq/jan) serves its bundled
`/openapi.json` with no host or key check, titled "Jan API Server Endpoints"; Hearth's own
`/openapi.json` is titled "Hearth"; Ollama answers `/` with "Ollama is running". Anything else
is "another program". Each probe has a short timeout, so a holder that never answers costs
seconds, never a hang.

`jan_processes` finds Jan's desktop app: a Tauri build whose Cargo package is named `Jan`,
so its main binary is `Jan` on Linux (`/usr/bin/Jan`, inside the AppImage too) and macOS
(`Jan.app/Contents/MacOS/Jan`) and `Jan.exe` on Windows (src-tauri/Cargo.toml,
tauri.conf.json `productName`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import httpx
import psutil

log = logging.getLogger("hearth")

PROBE_TIMEOUT = 2.0
JAN_SERVER = "Jan's Local API Server"
#: The names Jan's desktop app runs under (see the module docstring), compared case-blind.
JAN_PROCESS_NAMES = frozenset({"jan", "jan.exe"})
#: The line `hearth serve` logs when the home is a Jan folder and Jan runs (README quotes it).
JAN_RUNNING_WARNING = (
    "Jan is running (pid {pids}). If it uses this data folder too, while both run: reading "
    "models and conversations is safe; Jan rewrites files it holds in memory, so a "
    "conversation edited in both, or model settings changed in both, may be overwritten by "
    "Jan. Quit Jan before editing the same conversation or model in Hearth."
)


def _title(answer: httpx.Response) -> str:
    try:
        data = answer.json()
    except (ValueError, UnicodeDecodeError):
        return ""
    info = data.get("info") if isinstance(data, dict) else None
    title = info.get("title") if isinstance(info, dict) else None
    return title if isinstance(title, str) else ""


def port_holder(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str:
    """Who listens on host:port, in words ("Jan's Local API Server", "another Hearth",
    "Ollama", or "another program")."""
    target = host.strip("[]")
    if target in ("0.0.0.0", "::", ""):
        target = "127.0.0.1"
    netloc = f"[{target}]" if ":" in target else target
    base = f"http://{netloc}:{port}"
    try:
        with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            title = _title(client.get(f"{base}/openapi.json"))
            if title.startswith("Jan"):
                return JAN_SERVER
            if title.startswith("Hearth"):
                return "another Hearth"
            if "Ollama is running" in client.get(f"{base}/").text[:200]:
                return "Ollama"
    except httpx.HTTPError:
        pass
    return "another program"


def holder_fix(holder: str) -> str:
    """How to free the port from that holder (a clause for the error)."""
    if holder == JAN_SERVER:
        return "or stop Jan's server (in Jan: Settings > Local API Server)"
    if holder == "another Hearth":
        return "or stop that Hearth (`hearth stop` in its home)"
    return "or stop that program"


def is_jan(name: str | None, cmdline: Iterable[str] | None) -> bool:
    """Whether a process is Jan's desktop app, by its name or the file its command ran."""
    if name and name.lower() in JAN_PROCESS_NAMES:
        return True
    first = next(iter(cmdline or ()), "")
    base = os.path.basename(first.replace("\\", "/")) if isinstance(first, str) else ""
    return base.lower() in JAN_PROCESS_NAMES


def jan_processes(processes: Iterable[Any] | None = None) -> list[int]:
    """The pids of Jan's desktop app running now (psutil; processes it may not see are
    skipped)."""
    found = []
    source = psutil.process_iter(["name", "cmdline"]) if processes is None else processes
    for proc in source:
        info = getattr(proc, "info", None) or {}
        try:
            if is_jan(info.get("name"), info.get("cmdline")):
                found.append(int(proc.pid))
        except (psutil.Error, TypeError, ValueError):
            continue
    return found


def warn_if_jan_runs() -> None:
    """Log one warning when Jan's desktop app runs (the home is a Jan data folder)."""
    try:
        pids = jan_processes()
    except psutil.Error as exc:  # a process table Hearth may not read: say nothing wrong
        log.debug("could not list processes to look for Jan: %s", exc)
        return
    if pids:
        log.warning(JAN_RUNNING_WARNING.format(pids=", ".join(map(str, pids))))
