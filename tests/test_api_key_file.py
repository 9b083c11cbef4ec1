"""The API key from a file: `--api-key-file`, HEARTH_API_KEY_FILE, settings.json `api_key_file`.

`--api-key KEY` is readable by every local user in `ps`; a key file is not, and is refused
(like ssh refuses a private key) when others could read or change it. Real servers
(`hearth serve` children) are called with the `openai` client; the CLI's client commands find
the key through the same file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from support.server import HearthProcess

from hearth.core.address import server_address
from hearth.core.config import load_settings
from hearth.core.errors import InvalidRequest

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

KEY = "file-key-0123456789abcdef"


def _key_file(path: Path, text: str = KEY + "\n", mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def _refused(proc: HearthProcess) -> tuple[int, str]:
    """Start a server expected to exit on its own; its exit code and output."""
    return proc.start(wait=False).exited(timeout=60)


def _client(proc: HearthProcess, key: str) -> openai.OpenAI:
    return proc.keep(openai.OpenAI(base_url=f"{proc.url}/v1", api_key=key, max_retries=0))


def test_serve_with_a_key_file_needs_that_key_and_never_shows_it(
    home: Path, tmp_path: Path
) -> None:
    path = _key_file(tmp_path / "hearth.key")
    with HearthProcess(home, "--api-key-file", str(path)) as proc:
        assert proc.proc is not None
        assert _client(proc, KEY).models.list().data == []  # the trailing newline is not the key
        with pytest.raises(openai.AuthenticationError):
            _client(proc, "wrong").models.list()
        cmdline = Path(f"/proc/{proc.proc.pid}/cmdline").read_bytes()
        assert KEY.encode() not in cmdline and str(path).encode() in cmdline
        # A client command of the same home finds the key through the same file.
        env = {**os.environ, "HEARTH_API_KEY_FILE": str(path)}
        ps = subprocess.run(
            [sys.executable, "-m", "hearth", "--home", str(home), "ps", "--json"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert ps.returncode == 0 and json.loads(ps.stdout) == [], ps.stdout + ps.stderr
        assert proc.stop(signal.SIGTERM) == 0
    assert "--api-key is on" not in proc.output  # no warning: the key is not on the line


def test_a_key_file_others_can_read_is_refused_naming_chmod(home: Path, tmp_path: Path) -> None:
    path = _key_file(tmp_path / "open.key", mode=0o644)
    code, out = _refused(HearthProcess(home, "--api-key-file", str(path)))
    assert code != 0, out
    assert f"chmod 600 {path}" in out and "0644" in out
    assert KEY not in out  # the refusal never prints the key
    path.chmod(0o620)  # writable by the group: anyone there could set the key
    code, out = _refused(HearthProcess(home, env={"HEARTH_API_KEY_FILE": str(path)}))
    assert code != 0 and f"chmod 600 {path}" in out, out


def test_a_key_on_the_command_line_is_warned_about(home: Path) -> None:
    proc = HearthProcess(home, "--api-key", KEY).start()
    assert proc.stop(signal.SIGTERM) == 0
    warning = next(line for line in proc.output.splitlines() if "--api-key is on" in line)
    assert "WARNING" in warning and "HEARTH_API_KEY" in warning and "--api-key-file" in warning
    quiet = HearthProcess(home, env={"HEARTH_API_KEY": KEY}).start()
    assert quiet.stop(signal.SIGTERM) == 0
    assert "--api-key is on" not in quiet.output


def test_what_a_key_file_may_be(home: Path, tmp_path: Path) -> None:
    def error(path: Path) -> str:
        with pytest.raises(InvalidRequest) as caught:
            load_settings(home=home, env={"HEARTH_API_KEY_FILE": str(path)})
        assert caught.value.param == "api_key_file"
        return caught.value.message

    assert "not a regular file" in error(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    assert "not a regular file" in error(fifo)  # refused at once: no wait for a writer
    assert "cannot be opened" in error(tmp_path / "absent")
    assert "is empty" in error(_key_file(tmp_path / "empty", ""))
    assert "alone on one line" in error(_key_file(tmp_path / "two", f"{KEY}\n\n"))
    assert "alone on one line" in error(_key_file(tmp_path / "space", f" {KEY}\n"))
    assert "not UTF-8" in error(_bytes(tmp_path))
    assert "over 4096 bytes" in error(_key_file(tmp_path / "big", "k" * 5000))
    other = _key_file(tmp_path / "theirs")
    os.chown(other, 12345, 12345)  # only root can give a file away: the suite runs as root
    assert "belongs to another user" in error(other)
    crlf = _key_file(tmp_path / "crlf", KEY + "\r\n")
    assert load_settings(home=home, env={"HEARTH_API_KEY_FILE": str(crlf)}).api_key == KEY


def _bytes(tmp_path: Path) -> Path:
    path = tmp_path / "latin1"
    path.write_bytes(b"caf\xe9\n")
    path.chmod(0o600)
    return path


def test_the_highest_layer_naming_a_key_decides(home: Path, tmp_path: Path) -> None:
    path = _key_file(home / "hearth.key", "from-file\n")
    (home / "settings.json").write_text(json.dumps({"api_key_file": "hearth.key"}))
    # settings.json: relative to the home, wherever the command runs
    assert load_settings(home=home, env={}).api_key == "from-file"
    assert server_address(home, env={}).api_key == "from-file"
    # the environment's key beats settings.json's file; a flag beats both
    env = {"HEARTH_API_KEY": "from-env"}
    assert load_settings(home=home, env=env).api_key == "from-env"
    assert server_address(home, env=env).api_key == "from-env"
    flagged = load_settings(home=home, env=env, flags={"api_key_file": str(path)})
    assert flagged.api_key == "from-file" and flagged.api_key_file == path
    with pytest.raises(InvalidRequest, match="Both api_key and api_key_file are set in the HEA"):
        load_settings(home=home, env={**env, "HEARTH_API_KEY_FILE": str(path)})
