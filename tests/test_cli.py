"""The `hearth` CLI: offline on the home folder, and through a running server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAKE_GGUF, make_model
from support.cli import CliRunner
from support.server import HearthProcess, ThreadedServer

from hearth.cli.main import main as app

runner = CliRunner()


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["--home", str(home), *args], env=env)
    return result.exit_code, result.output


def test_offline_list_show_edit_rm(home: Path) -> None:
    make_model(home, "alpha", {"name": "Alpha", "x_keep": 1}, {"alpha.gguf": FAKE_GGUF})
    make_model(home, "broken", "{nope")
    code, out = cli(home, "models", "list")
    assert code == 0
    assert "alpha" in out and "Alpha" in out and "ready" in out and "invalid" in out
    assert "not valid JSON" in out
    code, out = cli(home, "models", "show", "alpha")
    assert code == 0 and json.loads(out)["name"] == "Alpha"
    code, out = cli(
        home, "models", "edit", "alpha", "engine_parameters.ctx_len=4096", "description=My model"
    )
    assert code == 0, out
    on_disk = json.loads((home / "models" / "alpha" / "model.json").read_text())
    assert on_disk == {
        "name": "Alpha",
        "x_keep": 1,
        "engine_parameters": {"ctx_len": 4096},
        "description": "My model",
    }
    code, out = cli(home, "models", "edit", "alpha", 'engine_parameters.ctx_len="lots"')
    assert code == 1 and "whole number" in out
    for absurd, fragment in (("engine_parameters.ctx_len=1000000000000000000000000000000",
                              "from 1 to 16,777,216"), ("created=" + "9" * 41, "'created'"),
                             ("engine_parameters.n_parallel=1000000000", "from 1 to 256")):
        code, out = cli(home, "models", "edit", "alpha", absurd)
        assert code == 1 and fragment in out, out  # and nothing written:
    assert json.loads((home / "models" / "alpha" / "model.json").read_text()) == on_disk
    code, out = cli(home, "models", "rm", "-y", "alpha")
    assert code == 0 and not (home / "models" / "alpha").exists()
    code, out = cli(home, "models", "show", "alpha")
    assert code == 1 and "does not exist" in out
    code, out = cli(home, "models", "show", "../x")
    assert code == 1 and "not a valid model id" in out
    code, out = cli(home, "models", "list", "--json")
    assert code == 0 and [m["id"] for m in json.loads(out)] == ["broken"]


def test_cli_goes_through_a_running_server(server: ThreadedServer, home: Path) -> None:
    make_model(home, "beta", {}, {"beta.gguf": FAKE_GGUF})
    env = {"HEARTH_PORT": str(server.port)}
    code, out = cli(home, "models", "list", env=env)
    assert code == 0 and "beta" in out
    # the server, not the folder, answers: prove it with a model only the server can see as deleted
    code, out = cli(home, "models", "rm", "-y", "beta", env=env)
    assert code == 0 and not (home / "models" / "beta").exists()


@pytest.mark.slow
def test_serve_refuses_a_taken_port(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = HearthProcess(home, port=port).start(wait=False).exited(timeout=60)
    assert code != 0
    assert f"Port {port}" in out and "--port" in out


@pytest.mark.slow
def test_serve_refuses_a_network_bind_without_a_key(home: Path) -> None:
    code, out = HearthProcess(home, "--host", "0.0.0.0").start(wait=False).exited(timeout=60)
    assert code != 0
    assert "--api-key" in out and "--insecure" in out


@pytest.mark.slow
def test_serve_creates_the_home_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "brand-new"
    with HearthProcess(home) as proc:
        for sub in ("models", "engines", "logs"):
            assert (home / sub).is_dir()
    assert proc.proc.returncode == 0
    assert str(home) in proc.output


def test_python_dash_m_and_console_script_agree() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hearth", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("hearth ")
    script = Path(sys.executable).parent / "hearth"
    if not script.exists():
        pytest.fail("the `hearth` console script is not installed; run `pip install -e .`")
    out2 = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, env=os.environ
    )
    assert out2.stdout == out.stdout
