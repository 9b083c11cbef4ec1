"""How long a `hearth` command takes as a whole process, from exec to exit.

Run by hand:  .venv/bin/python bench/bench_cli.py [--runs 10] [--models 5]
The code before a change:  PYTHONPATH=OTHER_CHECKOUT/src .venv/bin/python bench/bench_cli.py
(every child, the server included, inherits PYTHONPATH, so it runs that checkout's `hearth`).

Each row is the median (and min) wall time of `--runs` runs of the `hearth` console script of
this venv, after one warm-up run (so Python's bytecode caches exist, as after any install):

- `hearth --help`, `hearth --version`
- `hearth models list` on a home with no server (it reads the folder) and with its server
  running (it asks the server), `hearth ps` and `hearth stop X` (X not loaded: one round trip)
- import of `hearth.cli.main`: median of `python -c 'import hearth.cli.main'` minus median of
  `python -c pass`, the two interleaved; the same for `typer` and `typer._adapters` (Typer's
  pydantic-based coercion of option values), the floor under any command.

The server is a real `hearth serve --no-starter` child (tests/support/server.py) on a temporary
home with `--models` small GGUF models; no engine is started.
Targets (issue 15): every command median < 250 ms, the CLI's import < 100 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.gguf_factory import write_gguf
from support.server import HearthProcess

HEARTH = str(Path(sys.executable).parent / "hearth")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{cmd} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return elapsed


def sample(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    timed(cmd, env)  # warm-up: bytecode caches, page cache
    return [timed(cmd, env) for _ in range(runs)]


def row(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"| {name} | {statistics.median(ms):.0f} | {ms[0]:.0f} |"


def import_time(env: dict[str, str], runs: int, module: str) -> tuple[float, float]:
    """(median of `import module` minus median of `pass`, median of `pass`) in ms."""
    bare, full = [sys.executable, "-c", "pass"], [sys.executable, "-c", f"import {module}"]
    timed(bare, env), timed(full, env)
    bares, fulls = [], []
    for _ in range(runs):
        bares.append(timed(bare, env))
        fulls.append(timed(full, env))
    base = statistics.median(bares) * 1000
    return statistics.median(fulls) * 1000 - base, base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--models", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("HEARTH_PORT", None)
    where = subprocess.run(
        [sys.executable, "-c", "import hearth; print(hearth.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"hearth from {where}; {args.runs} runs each; {os.cpu_count()} CPUs\n")
    rows = ["| command | median ms | min ms |", "|---|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        for i in range(args.models):
            folder = home / "models" / f"model-{i}"
            folder.mkdir(parents=True)
            write_gguf(folder / f"model-{i}.Q4_0.gguf", name=f"Model {i}")
        env["HEARTH_HOME"] = str(home)
        hearth = [HEARTH]
        rows.append(row("`hearth --help`", sample([*hearth, "--help"], env, args.runs)))
        rows.append(row("`hearth --version`", sample([*hearth, "--version"], env, args.runs)))
        rows.append(
            row(
                "`hearth models list` (no server)",
                sample([*hearth, "models", "list"], env, args.runs),
            )
        )
        with HearthProcess(home, "--no-starter", env=env) as server:
            assert server.proc is not None
            rows.append(
                row(
                    "`hearth models list` (server running)",
                    sample([*hearth, "models", "list"], env, args.runs),
                )
            )
            rows.append(
                row("`hearth ps` (server running)", sample([*hearth, "ps"], env, args.runs))
            )
            rows.append(
                row(
                    "`hearth stop model-0` (server running)",
                    sample([*hearth, "stop", "model-0"], env, args.runs),
                )
            )
        delta, base = import_time(env, args.runs, "hearth.cli.main")
        rows.append(
            f"| import `hearth.cli.main` (minus `python -c pass`, {base:.0f} ms) | {delta:.0f} | |"
        )
    # For scale: Typer itself, and Typer's parameter coercion (pydantic), which any command
    # with a non-flag option (the top level's --home) loads when it runs.
    for module in ("typer", "typer._adapters"):
        delta, _ = import_time(env, args.runs, module)
        rows.append(f"| for scale: import `{module}` | {delta:.0f} | |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
