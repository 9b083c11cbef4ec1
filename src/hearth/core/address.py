"""Where the home's server listens and the key it wants, read without pydantic.

Commands that only talk to a running server (`hearth ps`, `stop`, `ls`, ...) need three
settings: the home (to find its server.json), the configured address (for a server embedded in
another program) and the api key. Validating every setting with pydantic costs such a command
more time than its whole round trip, so this module reads just those, with the same precedence as
`hearth.core.config.load_settings` (defaults < settings.json < HEARTH_* environment < flags), and
hands anything it cannot read plainly to the full loader, whose error says what to fix.

`hearth.core.config` uses the same home resolution and settings.json reader
(`hearth.core.home`), so the two cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from hearth.core.home import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    SETTINGS_FILE,
    Home,
    base_url,
    locate_home,
    settings_file_layer,
)
from hearth.core.keyfile import merge_key_layers


class ServerAddress(NamedTuple):
    """What a client needs to find and call the home's server (a NamedTuple: `dataclasses`
    imports `inspect`, ~15 ms of every command's start-up)."""

    home: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_key: str | None = None
    jan: bool = False

    @property
    def state_dir(self) -> Path:
        """Hearth's own folder (server.json, history): the home, or `<jan data>/hearth`."""
        return Home(self.home, self.jan).state

    @property
    def base_url(self) -> str:
        return base_url(self.host, self.port)


def server_address(
    home: str | Path | None = None, env: Mapping[str, str] | None = None, jan: bool = False
) -> ServerAddress:
    """host, port and api_key by the settings' precedence; odd values go to the full loader.

    `jan`: the home is Jan's data folder (found as Jan finds it when `home` is None)."""
    env = os.environ if env is None else env
    where = locate_home(home, env, jan)
    resolved = where.state
    from_file = settings_file_layer(resolved)
    from_env = {n: env[f"HEARTH_{n.upper()}"] for n in _FIELDS if env.get(f"HEARTH_{n.upper()}")}
    merged = {k: v for k, v in {**from_file, **from_env}.items() if k in ("host", "port")}
    layers = [(str(resolved / SETTINGS_FILE), from_file), ("the HEARTH_* environment", from_env)]
    merged.update(merge_key_layers(layers))  # a key file is read (and checked) here
    plain = _plain(merged)
    if plain is None:  # let pydantic say precisely what is wrong (or coerce what is fine)
        from hearth.core.config import load_settings

        full = load_settings(home=where.path, env=env, jan=where.jan)
        return ServerAddress(where.path, full.host, full.port, full.api_key, where.jan)
    return ServerAddress(where.path, **plain, jan=where.jan)


_FIELDS = ("host", "port", "api_key", "api_key_file")


def _plain(values: dict[str, Any]) -> dict[str, Any] | None:
    """The values as ServerAddress fields when they are plainly valid, else None."""
    out: dict[str, Any] = {}
    host, port, key = values.get("host"), values.get("port"), values.get("api_key")
    if host is not None:
        if not isinstance(host, str):
            return None
        out["host"] = host
    if port is not None:
        if isinstance(port, str) and port.isdecimal():
            port = int(port)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            return None
        out["port"] = port
    if key is not None:
        if not isinstance(key, str):
            return None
        out["api_key"] = key
    return out
