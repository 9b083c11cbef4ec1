"""A Jan data folder as Hearth's home: found as Jan finds it, known by its shape, Hearth's own
files kept in `<data>/hearth/` (issue 25, point 1)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from hearth.cli.main import main
from hearth.core.config import load_settings
from hearth.core.errors import InvalidRequest
from hearth.core.jan import find_jan_folder, looks_like_jan
from tests.support.cli import CliRunner
from tests.support.janfolder import fifo_feeding, make_jan_folder
from tests.support.server import HearthProcess


def _app_config(data_root: Path, folder: Path) -> None:
    (data_root / "Jan").mkdir(parents=True, exist_ok=True)
    (data_root / "Jan" / "settings.json").write_text(json.dumps({"data_folder": str(folder)}))


def test_the_folder_named_in_jans_app_config_comes_first(tmp_path: Path) -> None:
    moved = make_jan_folder(tmp_path / "elsewhere" / "jan-data")
    _app_config(tmp_path / "xdg", moved)
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    found = find_jan_folder({**env, "JAN_DATA_FOLDER": str(tmp_path / "other")}, "linux")
    assert found.path == moved.resolve()
    assert "app config" in found.source


def test_a_fifo_for_jans_app_config_is_passed_over(tmp_path: Path) -> None:
    """A FIFO at Jan's app config would hang every command's start: it is not read."""
    moved = make_jan_folder(tmp_path / "elsewhere" / "jan-data")
    named = make_jan_folder(tmp_path / "named")
    (tmp_path / "xdg" / "Jan").mkdir(parents=True)
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    with fifo_feeding(
        tmp_path / "xdg" / "Jan" / "settings.json", json.dumps({"data_folder": str(moved)})
    ):
        found = find_jan_folder({**env, "JAN_DATA_FOLDER": str(named)}, "linux")
    assert found.path == named and found.source == "JAN_DATA_FOLDER"


def test_jan_data_folder_then_the_default_per_os(tmp_path: Path) -> None:
    named = make_jan_folder(tmp_path / "named")
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert find_jan_folder({**env, "JAN_DATA_FOLDER": str(named)}, "linux").path == named
    default = make_jan_folder(tmp_path / "xdg" / "Jan" / "data")
    assert find_jan_folder(env, "linux").path == default
    mac = make_jan_folder(tmp_path / "Library" / "Application Support" / "Jan" / "data")
    assert find_jan_folder({"HOME": str(tmp_path)}, "darwin").path == mac
    win = make_jan_folder(tmp_path / "Roaming" / "Jan" / "data")
    assert find_jan_folder({"APPDATA": str(tmp_path / "Roaming")}, "win32").path == win


def test_no_jan_folder_says_where_it_looked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    with pytest.raises(InvalidRequest) as caught:
        find_jan_folder(env, "linux")
    assert str(tmp_path / "xdg" / "Jan" / "data") in caught.value.message
    assert "--home" in caught.value.message


def test_a_jan_folder_is_known_by_its_shape_and_hearths_files_go_in_hearth(
    tmp_path: Path,
) -> None:
    data = make_jan_folder(tmp_path / "data")
    assert looks_like_jan(data) and not looks_like_jan(tmp_path / "hearth-home")
    (data / "hearth").mkdir()
    (data / "hearth" / "settings.json").write_text(json.dumps({"port": 4242}))
    settings = load_settings(home=data, env={})
    assert settings.jan and settings.state_dir == data / "hearth"
    assert settings.port == 4242  # Hearth's settings, never Jan's flat settings.json
    assert settings.engines_dir == data / "hearth" / "engines"
    assert settings.logs_dir == data / "hearth" / "logs"
    assert settings.threads_dir == data / "threads"
    assert settings.jan_models_dir == data / "llamacpp" / "models"
    plain = load_settings(home=tmp_path / "hearth-home", env={})
    assert not plain.jan and plain.state_dir == tmp_path / "hearth-home"


def test_cli_jan_flag_finds_the_folder(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "xdg" / "Jan" / "data")
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg"), "HEARTH_HOME": None}
    result = CliRunner().invoke(main, ["ls", "--jan", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []
    assert (data / "hearth" / "engines").is_dir()
    assert sorted(p.name for p in data.iterdir()) == [
        "assistants",
        "extensions",
        "hearth",
        "llamacpp",
        "logs",
        "mcp_config.json",
        "models",
        "settings.json",
        "threads",
    ]
    missing = CliRunner().invoke(main, ["ls", "--jan"], env={**env, "XDG_DATA_HOME": "/nowhere"})
    assert missing.exit_code != 0 and "No Jan data folder" in missing.output


@pytest.mark.slow
def test_serving_a_jan_folder_says_so_and_leaves_jans_files_alone(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "data")
    jan_settings = (data / "settings.json").read_text()
    with HearthProcess(data, "--no-starter") as server:
        assert httpx.get(f"{server.url}/health").json()["home"] == str(data)
        assert (data / "hearth" / "server.json").exists()
        assert not (data / "server.json").exists()
    assert "Jan data folder" in server.output and str(data / "hearth") in server.output
    assert (data / "settings.json").read_text() == jan_settings
    assert (data / "logs" / "app.log").read_text() == "jan's own log\n"
