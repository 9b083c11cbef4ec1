"""Settings precedence: defaults < settings.json < HEARTH_* env < flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.core.config import load_settings, resolve_home
from hearth.core.errors import InvalidRequest


def test_layers_in_order(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    assert load_settings(home=home, env={}).port == 1337
    (home / "settings.json").write_text(
        json.dumps({"port": 2000, "host": "127.0.0.2", "api_key": "f"})
    )
    s = load_settings(home=home, env={})
    assert (s.port, s.host, s.api_key) == (2000, "127.0.0.2", "f")
    s = load_settings(
        home=home, env={"HEARTH_PORT": "3000", "HEARTH_CORS_ORIGINS": "http://a, http://b"}
    )
    assert (s.port, s.host, s.cors_origins) == (3000, "127.0.0.2", ["http://a", "http://b"])
    s = load_settings(home=home, flags={"port": 4000, "host": None}, env={"HEARTH_PORT": "3000"})
    assert (s.port, s.host) == (4000, "127.0.0.2")


def test_home_from_flag_env_default(tmp_path: Path) -> None:
    assert resolve_home(tmp_path / "a", {"HEARTH_HOME": str(tmp_path / "b")}) == tmp_path / "a"
    assert resolve_home(None, {"HEARTH_HOME": str(tmp_path / "b")}) == tmp_path / "b"
    assert resolve_home(None, {}) == (Path.home() / "hearth").resolve()


@pytest.mark.parametrize(
    ("content", "env", "fragment"),
    [
        ("{broken", {}, "not valid JSON"),
        ("[1]", {}, "JSON object"),
        ('{"port": "many"}', {}, "'port'"),
        ('{"colour": "red"}', {}, "'colour'"),
        ("{}", {"HEARTH_PORT": "99999"}, "'port'"),
    ],
)
def test_bad_settings_say_which_and_where(
    tmp_path: Path, content: str, env: dict[str, str], fragment: str
) -> None:
    (tmp_path / "settings.json").write_text(content)
    with pytest.raises(InvalidRequest) as info:
        load_settings(home=tmp_path, env=env)
    assert fragment in info.value.message


def test_server_address_follows_the_settings_precedence(tmp_path: Path) -> None:
    """The CLI's pydantic-free reader agrees with load_settings on host, port and key."""
    from hearth.core.address import server_address

    (tmp_path / "settings.json").write_text(
        json.dumps({"port": 2000, "host": "::1", "api_key": "from-file", "keep_alive": "5m"}),
        encoding="utf-8",
    )
    for env in ({}, {"HEARTH_PORT": "3000"}, {"HEARTH_API_KEY": "from-env", "HEARTH_HOST": ""}):
        light, full = server_address(tmp_path, env), load_settings(home=tmp_path, env=env)
        assert (light.host, light.port, light.api_key) == (full.host, full.port, full.api_key)
        assert light.base_url == full.base_url and light.home == full.home
    assert server_address(tmp_path, {}).base_url == "http://[::1]:2000"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"port": "eighty"}', "Setting 'port' is invalid"),
        ('{"port": 70000}', "Setting 'port' is invalid"),
        ('{"api_key": 5}', "Setting 'api_key' is invalid"),
        ("{nope", "is not valid JSON"),
        ("[1]", "must hold a JSON object"),
    ],
)
def test_server_address_hands_odd_values_to_the_full_loader(
    tmp_path: Path, content: str, message: str
) -> None:
    from hearth.core.address import server_address

    (tmp_path / "settings.json").write_text(content, encoding="utf-8")
    with pytest.raises(InvalidRequest, match=message):
        server_address(tmp_path, {})
