"""What the `hearth` command imports (issue 15): only what the command it runs uses.

Each case runs in a fresh interpreter and reads its `sys.modules`, so it tests what is imported,
not how long it takes (bench/bench_cli.py times it). `hearth --help` must not load the server, the
store, the downloader, the engines, numpy or even Rich; a command that asks a running server
(`ps`, `ls`, `models list`, `stop`) loads the small client, not the rest (neither pydantic nor
Rich: each alone costs more than the whole command's round trip).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.server import ThreadedServer

from hearth import __version__
from hearth.core.config import load_settings
from hearth.services import Services

#: Never loaded by a command that talks to a server, nor by importing the CLI.
HEAVY = (
    "numpy",
    "gguf",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "huggingface_hub",
    "jinja2",
    "watchdog",
    "hearth.downloads",
    "hearth.engines",
    "hearth.models",
    "hearth.engines.scheduler",
    "hearth.server",
    "hearth.services",
    "hearth.runtime",
    "hearth.services.starter",
    "hearth.core.config",
    "pydantic",
    "typer",
    "click",
)
#: Not loaded by `import hearth.cli.main`, `--help` or `--version` either.
COMMAND_ONLY = ("rich", "hearth.core.address", "hearth.cli.client", "hearth.cli.backend")

RUN = """
import json, sys
{setup}
try:
    {body}
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nMODULES " + json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def loaded(setup: str, body: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    """(exit code, output, modules) of a fresh interpreter that ran `setup` then `body`."""
    script = RUN.format(setup=setup, body=body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    out, marker, tail = done.stdout.rpartition("\nMODULES ")
    assert marker, f"no module list; exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    result = json.loads(tail)
    return result["code"] or 0, out + done.stderr, set(result["modules"])


def offenders(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in prefixes or m.startswith(prefixes))


def hearth(*args: str) -> tuple[str, str]:
    return (
        "from hearth.cli.main import main",
        f"sys.exit(main({list(args)!r}))",
    )


def test_importing_the_cli_loads_almost_nothing() -> None:
    code, out, modules = loaded("import hearth.cli.main", "pass")
    assert code == 0, out
    assert "hearth.cli.main" in modules
    assert offenders(modules, HEAVY + COMMAND_ONLY) == []


@pytest.mark.parametrize("args", [["--help"], ["models", "--help"], ["--version"]])
def test_help_and_version_work_and_load_almost_nothing(args: list[str]) -> None:
    code, out, modules = loaded(*hearth(*args))
    assert code == 0, out
    assert (f"hearth {__version__}" if args == ["--version"] else "usage: hearth") in out
    assert offenders(modules, HEAVY + COMMAND_ONLY) == []


def test_the_console_script_answers_help(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "hearth"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in (
        "serve", "models", "pull", "run", "ps", "stop",
        "ls", "rm", "show", "load", "cp", "create", "search",
    ):  # fmt: skip
        assert command in done.stdout


@pytest.mark.slow
def test_commands_that_ask_the_server_load_only_the_client(home: Path) -> None:
    (home / "models" / "broken").mkdir()
    (home / "models" / "broken" / "model.json").write_text("{}", encoding="utf-8")
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        env = {"HEARTH_PORT": str(server.port), "HEARTH_HOME": str(home)}
        cases = (
            ["ps"], ["ls"], ["models", "list"], ["models", "show", "broken"],
            ["show", "broken"], ["show", "broken", "--modelfile"], ["stop", "x"],
        )  # fmt: skip
        for args in cases:
            code, out, modules = loaded(*hearth(*args), env=env)
            assert code == (1 if args == ["stop", "x"] else 0), (args, out)
            assert "hearth.cli.client" in modules, args
            # plain columns and lines (cli/output.py): Rich is for progress bars and spinners
            assert offenders(modules, (*HEAVY, "rich")) == [], args
    assert "does not exist" in out  # `stop x`: the server's answer, through the client


def test_without_a_server_models_list_reads_the_folder(home: Path) -> None:
    """The other side: no server, so the store is loaded (it is what answers)."""
    code, out, modules = loaded(*hearth("models", "list"), env={"HEARTH_HOME": str(home)})
    assert code == 0, out
    assert "No models yet" in out
    assert "hearth.services" in modules


@pytest.mark.slow
def test_home_is_accepted_before_and_after_the_command(tmp_path: Path) -> None:
    """`hearth --home H ls` and `hearth ls --home H` (Ollama's and LM Studio's habit) agree;
    the option after the command wins over the one before it and over HEARTH_HOME."""
    first, second = tmp_path / "first", tmp_path / "second"
    for home in (first, second):
        folder = home / "models" / f"only-in-{home.name}"
        folder.mkdir(parents=True)
        (folder / "model.json").write_text("{}", encoding="utf-8")  # listed, as invalid
    env = {**os.environ, "HEARTH_HOME": str(tmp_path / "elsewhere")}
    script = Path(sys.executable).parent / "hearth"
    for args, expected in (
        (["--home", str(first), "ls"], "first"),
        (["ls", "--home", str(second)], "second"),
        (["--home", str(first), "models", "list", "--home", str(second)], "second"),
        (["models", "--home", str(first), "list"], "first"),
    ):
        done = subprocess.run(
            [str(script), *args], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, (args, done.stderr)
        assert f"only-in-{expected}" in done.stdout, (args, done.stdout)
        other = "first" if expected == "second" else "second"
        assert f"only-in-{other}" not in done.stdout, args


@pytest.mark.slow
def test_a_cached_offline_list_loads_neither_pydantic_nor_the_store(home: Path) -> None:
    """No server, nothing changed since the last list: the list cache answers (cli/listcache.py)
    with plain columns, without pydantic, the settings, the store or even the HTTP client."""
    (home / "models" / "alpha").mkdir()
    (home / "models" / "alpha" / "model.json").write_text('{"name": "Alpha"}', encoding="utf-8")
    (home / "models" / "alpha" / "alpha.gguf").write_bytes(b"GGUF" + b"\0" * 20)
    env = {"HEARTH_HOME": str(home)}
    fast_margin = "from hearth.cli import listcache; listcache.RACY_MARGIN_NS = 50_000_000"
    time.sleep(0.1)  # older than that margin: the first list may write the cache
    code, slow, modules = loaded(f"{fast_margin}\n{hearth('ls')[0]}", hearth("ls")[1], env=env)
    assert code == 0 and "hearth.models.store" in modules, slow
    assert os.path.exists(home / ".cache" / "models-list.json")
    code, fast, modules = loaded(*hearth("ls"), env=env)
    assert code == 0 and fast == slow and "Alpha" in fast
    assert offenders(modules, (*HEAVY, "rich", "http")) == []
