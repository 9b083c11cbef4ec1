"""The home folder and its settings.json, read the one way both settings loaders share: the fast
one for commands that only call a server (`hearth.core.address`) and the full one
(`hearth.core.config`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hearth.core.errors import InvalidRequest

DEFAULT_HOME = "~/hearth"
SETTINGS_FILE = "settings.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1337


def resolve_home(flag: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """--home, else HEARTH_HOME, else ~/hearth (settings.json lives inside it, so not there)."""
    env = os.environ if env is None else env
    raw = flag or env.get("HEARTH_HOME") or DEFAULT_HOME
    return Path(raw).expanduser().resolve()


def read_settings_file(home: Path) -> dict[str, Any]:
    """The user's settings.json as a dict ({} when absent), or a clear error."""
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
    return data


def settings_file_layer(home: Path) -> dict[str, Any]:
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
