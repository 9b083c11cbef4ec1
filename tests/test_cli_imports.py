"""What the `hearth` command imports (issue 15): only what the command it runs uses.

Each case runs in a fresh interpreter and reads its `sys.modules`, so it tests what is imported,
not how long it takes (bench/bench_cli.py times it). `hearth --help` must not load the server, the
store, the downloader, the engines, numpy or even Rich; a command that asks a running server
(`ps`, `models list`, `stop`) loads the small client and the renderer, not the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.server import ThreadedServer

from hearth import __version__
from hearth.config import load_settings
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
    "hearth.scheduler",
    "hearth.server",
    "hearth.services",
    "hearth.runtime",
    "hearth.starter",
)
#: Not loaded by `import hearth.cli.main`, `--help` or `--version` either.
COMMAND_ONLY = ("rich", "pydantic", "hearth.config", "hearth.client", "hearth.cli.backend")

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
        "from hearth.cli.main import app",
        f"app({list(args)!r}, prog_name='hearth')",
    )


def test_importing_the_cli_loads_almost_nothing() -> None:
    code, out, modules = loaded("import hearth.cli.main", "pass")
    assert code == 0, out
    assert "hearth.cli.main" in modules and "typer" in modules
    assert offenders(modules, HEAVY + COMMAND_ONLY) == []


@pytest.mark.parametrize("args", [["--help"], ["models", "--help"], ["--version"]])
def test_help_and_version_work_and_load_almost_nothing(args: list[str]) -> None:
    code, out, modules = loaded(*hearth(*args))
    assert code == 0, out
    assert (f"hearth {__version__}" if args == ["--version"] else "Usage: hearth") in out
    # Past the top level, Typer (0.29+) coerces the callback's options (--home) with pydantic.
    allowed = ("pydantic",) if args[0] == "models" else ()
    forbidden = tuple(p for p in HEAVY + COMMAND_ONLY if p not in allowed)
    assert offenders(modules, forbidden) == []


def test_the_console_script_answers_help(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "hearth"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "models", "pull", "run", "ps", "stop"):
        assert command in done.stdout


def test_commands_that_ask_the_server_load_only_the_client_and_the_renderer(home: Path) -> None:
    (home / "models" / "broken").mkdir()
    (home / "models" / "broken" / "model.json").write_text("{}", encoding="utf-8")
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        env = {"HEARTH_PORT": str(server.port), "HEARTH_HOME": str(home)}
        for args in (["ps"], ["models", "list"], ["models", "show", "broken"], ["stop", "x"]):
            code, out, modules = loaded(*hearth(*args), env=env)
            assert code == (1 if args == ["stop", "x"] else 0), (args, out)
            assert "hearth.client" in modules and "rich.console" in modules, args
            assert offenders(modules, HEAVY) == [], args
    assert "does not exist" in out  # `stop x`: the server's answer, through the client


def test_without_a_server_models_list_reads_the_folder(home: Path) -> None:
    """The other side: no server, so the store is loaded (it is what answers)."""
    code, out, modules = loaded(*hearth("models", "list"), env={"HEARTH_HOME": str(home)})
    assert code == 0, out
    assert "No models yet" in out
    assert "hearth.services" in modules
