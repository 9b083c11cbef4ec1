"""Children Hearth starts never run code from the folder `hearth serve` was started in.

`python -m X` puts the current directory first on sys.path. Real servers are started, as a user
starts them, from a folder holding planted modules (`xllamacpp.py`, `pip.py`, a `hearth/`
package, a plugin's module name): each writes a marker file if it ever runs. The engine worker,
pip (the starter model's install) and a plugin's engine must run the installed code, the chat
must work, and no marker may appear.
"""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

import httpx
import openai
import pytest
from support.echo_plugin import install_echo_plugin
from support.engines import add_smol
from support.server import HearthProcess
from support.smollm import FILENAME, cache_dir, smollm2_path
from test_starter import build_index

import hearth
from hearth.core import pychild
from hearth.engines.llamacpp import KIND
from hearth.engines.registry import LaunchSpec
from hearth.services.starter import STARTER_ID

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

#: The `hearth` console script: unlike `python -m hearth`, it puts no folder of the user's on
#: sys.path, so a planted `hearth/` can only reach the children it starts.
SCRIPT = [str(Path(sys.executable).parent / "hearth")]


def _plant(folder: Path, *names: str) -> Path:
    """Modules in `folder` that, imported, write `folder`/RAN-<name> and then fail."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        marker = folder / f"RAN-{name.replace('/', '_')}"
        code = f"open({str(marker)!r}, 'w').write('planted code ran')\nraise SystemExit(3)\n"
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    return folder


def _env(*extra_path: Path) -> dict[str, str]:
    """PYTHONPATH with `extra_path` first and the test run's own (this checkout's Hearth)."""
    parts = [str(p) for p in extra_path] + [os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in parts if p)}


def test_the_worker_never_runs_modules_from_the_servers_folder(tmp_path: Path) -> None:
    start = _plant(tmp_path / "start", "xllamacpp.py", "hearth/__init__.py")
    home = tmp_path / "home"
    add_smol(home, "smol")
    env = {**_env(), "HEARTH_IMPORT_DIRS": str(cache_dir())}
    with HearthProcess(home, env=env, cwd=start, launcher=SCRIPT) as proc:
        client = proc.keep(
            openai.OpenAI(base_url=f"{proc.url}/v1", api_key="unused", max_retries=0)
        )
        reply = client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "Hi!"}],
            max_tokens=4,
            temperature=0,
            seed=1,
        )
        assert reply.choices[0].message.content
    assert sorted(p.name for p in start.glob("RAN-*")) == []


def test_the_starters_pip_never_runs_a_pip_module_from_the_servers_folder(
    tmp_path: Path,
) -> None:
    start = _plant(tmp_path / "start", "pip.py")
    env = {**_env(), **build_index(tmp_path / "index", smollm2_path()), "HEARTH_STARTER": "1"}
    with HearthProcess(tmp_path / "home", env=env, cwd=start, launcher=SCRIPT) as proc:
        models = httpx.get(f"{proc.url}/v1/models", timeout=60).json()["data"]
        assert [(m["id"], m["status"]) for m in models] == [(STARTER_ID, "ready")]
    assert sorted(p.name for p in start.glob("RAN-*")) == []


def test_a_plugin_engine_starts_outside_the_servers_folder(tmp_path: Path) -> None:
    plugins = install_echo_plugin(tmp_path / "site")
    start = _plant(tmp_path / "start", "hearth_echo.py")
    home = tmp_path / "home"
    (home / "models" / "echo-one").mkdir(parents=True)
    os.link(smollm2_path(), home / "models" / "echo-one" / FILENAME)  # so the model is ready
    (home / "models" / "echo-one" / "model.json").write_text(
        '{"engine": "echo", "engine_parameters": {"greeting": "hi there"}}', encoding="utf-8"
    )
    with HearthProcess(home, env=_env(plugins), cwd=start, launcher=SCRIPT) as proc:
        chat = {"model": "echo-one", "messages": [{"role": "user", "content": "Say hi"}]}
        reply = httpx.post(f"{proc.url}/v1/chat/completions", json=chat, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].endswith("> hi there: Say hi")
    assert sorted(p.name for p in start.glob("RAN-*")) == []


def test_the_worker_command_is_isolated(tmp_path: Path) -> None:
    spec = LaunchSpec("m", tmp_path / "m.gguf", {}, "", tmp_path / "log")
    launch = KIND.launch(spec, host="127.0.0.1", port=9, key="k", workdir=str(tmp_path))
    assert launch.argv[:5] == [sys.executable, "-s", "-P", "-m", "hearth.engines.worker"]


def test_the_user_site_stays_when_hearth_was_installed_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pip install --user hearth`: the worker needs that site, so only `-P` is given."""
    installed = Path(hearth.__file__).resolve().parent.parent
    monkeypatch.setattr(site, "ENABLE_USER_SITE", True)
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(installed))
    pychild._in_user_site.cache_clear()
    try:
        assert pychild.python_command("hearth.engines.worker")[1:3] == ["-P", "-m"]
        monkeypatch.setattr(site, "getusersitepackages", lambda: "/nonexistent/site")
        pychild._in_user_site.cache_clear()
        assert pychild.python_command("hearth.engines.worker")[1:3] == ["-s", "-P"]
    finally:
        pychild._in_user_site.cache_clear()


def test_pythonpath_means_in_the_child_what_it_meant_in_the_server() -> None:
    sep = os.pathsep
    env = {"PYTHONPATH": f"src{sep}{sep}/abs/lib{sep}", "HOME": "/h"}
    assert pychild.child_env(env, cwd="/work/proj") == {
        "PYTHONPATH": f"/work/proj/src{sep}/abs/lib",  # empty entries (the cwd) are dropped
        "HOME": "/h",
    }
    assert pychild.child_env({"PYTHONPATH": sep}, cwd="/x") == {}
    assert pychild.child_env({"HOME": "/h"}, cwd="/x") == {"HOME": "/h"}
