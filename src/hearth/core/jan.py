"""Jan's data folder: where Jan keeps it, and how Hearth knows one when it is given one.

Jan (desktop 0.6 to 0.8) names its data folder in an app config file outside the folder,
`<OS data dir>/Jan/settings.json` (`{"data_folder": "<path>"}`); without one, `JAN_DATA_FOLDER`,
else `<OS data dir>/Jan/data`. `hearth --jan` finds it the same way (../shared/spec/
jan-data-folder.md section 1), and `--home <folder>` is recognised as Jan's by its shape.

In a Jan folder Hearth never converts anything: it reads Jan's files where Jan keeps them and
puts its own (lock, server.json, settings.json, engines/, logs/, caches) in one folder of its
own, `<data>/hearth/`, never beside Jan's (Jan's own `settings.json` and `logs/` are Jan's).

Standard library only: every CLI command resolves its home through here (tests/test_cli_imports).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from hearth.core.errors import InvalidRequest
from hearth.core.strangefile import read_regular

#: Hearth's own folder inside a Jan data folder.
STATE_FOLDER = "hearth"
MAX_APP_CONFIG_BYTES = 1 << 20
#: What only a Jan data folder has (a Hearth home has none of them): Jan's llama.cpp tree, its
#: MCP config and its extensions. Any one of them is enough.
_JAN_MARKERS_DIRS = ("llamacpp", "extensions")
_JAN_MARKERS_FILES = ("mcp_config.json",)


class JanFolder(NamedTuple):
    """Jan's data folder and where its location came from (said at start)."""

    path: Path
    source: str


def looks_like_jan(folder: Path) -> bool:
    """Whether `folder` is a Jan data folder (0.6 and later): a few stat calls, no reads."""
    return any((folder / name).is_dir() for name in _JAN_MARKERS_DIRS) or any(
        (folder / name).is_file() for name in _JAN_MARKERS_FILES
    )


def state_dir(home: Path, jan: bool) -> Path:
    """Where Hearth's own files live: the home itself, or `<data>/hearth` in a Jan folder."""
    return home / STATE_FOLDER if jan else home


def os_data_dir(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """The OS data folder Jan puts its `Jan/` folder in (Tauri's `data_dir`), or JAN_DATA_ROOT."""
    root = env.get("JAN_DATA_ROOT")
    if root and Path(root).is_absolute():
        return Path(root)
    home = Path(env.get("HOME") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform.startswith("win"):
        appdata = env.get("APPDATA")
        return Path(appdata) if appdata else home / "AppData" / "Roaming"
    xdg = env.get("XDG_DATA_HOME")
    return Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"


def _app_configs(env: Mapping[str, str], platform: str) -> list[Path]:
    """Jan's app config files, the canonical one first, then the older places Jan migrates."""
    data = os_data_dir(env, platform)
    app = env.get("APP_NAME") or "Jan"
    found = [data / app / "settings.json", data / "jan.ai.app" / "settings.json"]
    if not platform.startswith(("win", "darwin")):
        found.append(Path(env.get("HOME") or Path.home()) / ".config" / "Jan" / "settings.json")
    return found


def _configured_folder(config: Path) -> Path | None:
    """The `data_folder` an app config names, or None (absent, unreadable, not a path)."""
    try:
        raw = read_regular(config, MAX_APP_CONFIG_BYTES)  # never block on a FIFO
        if len(raw) > MAX_APP_CONFIG_BYTES:
            return None
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    folder = data.get("data_folder") if isinstance(data, dict) else None
    if isinstance(folder, str) and folder.strip():
        return Path(folder).expanduser()
    return None


def find_jan_folder(
    env: Mapping[str, str] | None = None, platform: str = sys.platform
) -> JanFolder:
    """Jan's data folder as Jan finds it: its app config, else JAN_DATA_FOLDER, else the default.

    The folder must exist (Jan makes it on first start); otherwise the error says where Hearth
    looked and how to point it at the folder."""
    env = os.environ if env is None else env
    candidates: list[JanFolder] = []
    for config in _app_configs(env, platform):
        named = _configured_folder(config)
        if named is not None:
            candidates.append(JanFolder(named, f"named in Jan's app config {config}"))
            break
    if env.get("JAN_DATA_FOLDER"):
        candidates.append(JanFolder(Path(env["JAN_DATA_FOLDER"]).expanduser(), "JAN_DATA_FOLDER"))
    default = os_data_dir(env, platform) / (env.get("APP_NAME") or "Jan") / "data"
    candidates.append(JanFolder(default, "Jan's default data folder"))
    first = candidates[0]
    if first.path.is_dir():
        return JanFolder(first.path.resolve(), first.source)
    raise InvalidRequest(
        f"No Jan data folder at {first.path} ({first.source}). Start Jan once so it creates "
        "it, set JAN_DATA_FOLDER, or pass --home <Jan's data folder> (Settings > Advanced in "
        "Jan shows where it is)."
    )
