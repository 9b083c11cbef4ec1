"""The home folder and its settings.json, read the one way both settings loaders share: the fast
one for commands that only call a server (`hearth.core.address`) and the full one
(`hearth.core.config`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from hearth.core.errors import InvalidRequest
from hearth.core.jan import find_jan_folder, looks_like_jan, state_dir

DEFAULT_HOME = "~/hearth"
SETTINGS_FILE = "settings.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1337


class Home(NamedTuple):
    """The folder Hearth serves and where its own files go.

    `path` is a Hearth home or a Jan data folder (`jan`); `state` holds Hearth's own files
    (settings.json, engines/, logs/, the lock, server.json): the home itself, or
    `<data>/hearth` in a Jan folder, so nothing of Hearth's lands beside Jan's files."""

    path: Path
    jan: bool = False
    source: str = ""

    @property
    def state(self) -> Path:
        return state_dir(self.path, self.jan)


def locate_home(
    flag: str | Path | None = None, env: Mapping[str, str] | None = None, jan: bool = False
) -> Home:
    """--home, else (with --jan) Jan's data folder as Jan finds it, else HEARTH_HOME, else
    ~/hearth. A folder shaped like Jan's (`hearth.core.jan.looks_like_jan`) is used as one."""
    env = os.environ if env is None else env
    if jan and not flag:
        found = find_jan_folder(env)
        return Home(found.path, True, found.source)
    source = "--home" if flag else ("HEARTH_HOME" if env.get("HEARTH_HOME") else "the default")
    path = Path(flag or env.get("HEARTH_HOME") or DEFAULT_HOME).expanduser().resolve()
    return Home(path, jan or looks_like_jan(path), source)


def resolve_home(flag: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """--home, else HEARTH_HOME, else ~/hearth (settings.json lives inside it, so not there)."""
    return locate_home(flag, env).path


def read_settings_file(home: Path) -> dict[str, Any]:
    """The user's settings.json in Hearth's own folder `home` (a home, or `<jan data>/hearth`)
    as a dict ({} when absent), or a clear error."""
    path = home / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(
            f"{path} is not valid JSON ({exc}). Fix the file or remove it to use the defaults."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(f'{path} must hold a JSON object like {{"port": 1337}}.')
    data.pop("home", None)
    data.pop("jan", None)
    return data


def settings_file_layer(home: Path) -> dict[str, Any]:
    # `home` here is Hearth's own folder (Home.state), where settings.json lives.
    """settings.json as a settings layer: a relative `api_key_file` there names a file in the
    home (where the file itself lives), not in whatever folder a command runs from."""
    data = read_settings_file(home)
    path = data.get("api_key_file")
    if isinstance(path, str) and path and not Path(path).expanduser().is_absolute():
        data["api_key_file"] = str(home / path)
    return data


def base_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches a server bound to host:port at."""
    host = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"
