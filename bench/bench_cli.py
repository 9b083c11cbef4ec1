"""How long a `hearth` command takes as a whole process, from exec to exit.

Run by hand:  .venv/bin/python bench/bench_cli.py [--runs 10] [--models 5] [--before SRC]
With `--before OTHER_CHECKOUT/src` (e.g. `git worktree add /tmp/before HEAD~1`), that checkout's
CLI runs too, alternating run by run with this one (PYTHONPATH=SRC for its children; the server
both talk to is this checkout's), so the two columns share whatever load the machine has.

Each row is the median (and min) wall time of `--runs` runs of the `hearth` console script of
this venv, after one warm-up run (so Python's bytecode caches exist, as after any install):

- `hearth --help`, `hearth --version`
- `hearth models list` on a home with no server, validated (HEARTH_NO_LIST_CACHE=1: settings
  and every model.json through pydantic) and from the list cache (cli/listcache.py: nothing
  changed since the last list, as between two `hearth ls` of a person), and with its server
  running (it asks the server), `hearth ps` and `hearth stop X` (X not loaded: one round trip)
- import of `hearth.cli.main`: median of `python -c 'import hearth.cli.main'` minus median of
  `python -c pass`, the two interleaved; the same, for scale, for the libraries under a command
  that asks a server (click, rich.console, http.client) and for what it no longer loads (typer,
  and pydantic, which Typer 0.29 loaded for any command with a valued option).

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


def sample(cmd: list[str], envs: list[dict[str, str]], runs: int) -> list[list[float]]:
    """`runs` timings of `cmd` under each env, the envs alternating run by run (so a burst of
    load on this shared machine hits every variant alike); one warm-up run each first."""
    for env in envs:
        timed(cmd, env)  # warm-up: bytecode caches, page cache
    times: list[list[float]] = [[] for _ in envs]
    for _ in range(runs):
        for i, env in enumerate(envs):
            times[i].append(timed(cmd, env))
    return times


def row(name: str, variants: list[list[float]]) -> str:
    cells = []
    for times in variants:
        ms = sorted(t * 1000 for t in times)
        cells.append(f"{statistics.median(ms):.0f} | {ms[0]:.0f}")
    return f"| {name} | " + " | ".join(cells) + " |"


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


def origin(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import hearth; print(hearth.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def make_home(root: Path, models: int) -> Path:
    home = root / "home"
    for i in range(models):
        folder = home / "models" / f"model-{i}"
        folder.mkdir(parents=True)
        write_gguf(folder / f"model-{i}.Q4_0.gguf", name=f"Model {i}")
    return home


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument(
        "--before",
        metavar="SRC",
        help="another checkout's src/ (e.g. a git worktree of the previous commit): its CLI "
        "runs alternately with this one, against the same server, and gets its own columns",
    )
    args = parser.parse_args()
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "HEARTH_PORT")
    }
    envs = [env]
    if args.before:
        envs.append({**env, "PYTHONPATH": args.before})
    for e in envs:
        print(f"hearth from {origin(e)}")
    print(f"{args.runs} runs each, variants alternating; {os.cpu_count()} CPUs\n")
    header = " | ".join("median ms | min ms" for _ in envs)
    rows = [f"| command | {header} |", "|---|" + "---:|---:|" * len(envs)]
    with tempfile.TemporaryDirectory() as tmp:
        home = make_home(Path(tmp), args.models)
        for e in envs:
            e["HEARTH_HOME"] = str(home)
        made = time.monotonic()
        for name, argv in [("`hearth --help`", ["--help"]), ("`hearth --version`", ["--version"])]:
            rows.append(row(name, sample([HEARTH, *argv], envs, args.runs)))
        # The list cache is written only once the files it covers are 2 s old (racy entries).
        time.sleep(max(0.0, made + 2.5 - time.monotonic()))
        validated = [{**e, "HEARTH_NO_LIST_CACHE": "1"} for e in envs]
        listing, no_server = [HEARTH, "models", "list"], "`hearth models list` (no server"
        rows.append(row(f"{no_server}, validated)", sample(listing, validated, args.runs)))
        rows.append(row(f"{no_server}, list cache)", sample(listing, envs, args.runs)))
        with HearthProcess(home, "--no-starter", env=env) as server:
            assert server.proc is not None
            for name, argv in [
                ("`hearth models list` (server running)", ["models", "list"]),
                ("`hearth ps` (server running)", ["ps"]),
                ("`hearth stop model-0` (server running)", ["stop", "model-0"]),
            ]:
                rows.append(row(name, sample([HEARTH, *argv], envs, args.runs)))
        for e in envs:
            delta, base = import_time(e, args.runs, "hearth.cli.main")
            rows.append(f"| import `hearth.cli.main` (minus `python -c pass`, {base:.0f} ms) "
                        f"| {delta:.0f} | |")  # fmt: skip
    # For scale: what a server-asking command stands on, and what it no longer loads.
    for module in ("click", "rich.console", "http.client", "typer", "pydantic"):
        delta, _ = import_time(env, args.runs, module)
        rows.append(f"| for scale: import `{module}` | {delta:.0f} | |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
