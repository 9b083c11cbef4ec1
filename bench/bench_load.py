"""Starting an already-downloaded model through Hearth vs the bare engine's own load time.

Run by hand:  .venv/bin/python bench/bench_load.py [--repeats 7]

- bare: the engine command Hearth would run (`python -s -P -m hearth.engines.worker` with the same
  llama-server flags, from `params.build_server_args`), spawned directly; spawn -> GET /health
  200, polled every 5 ms.
- start: POST /v1/models/{id}/start on a running `hearth serve` (plan, spawn, wait for health,
  answer), then POST .../stop; client-side wall time.
- first request: with the model unloaded, a streamed chat request's time to first token (the
  auto-load included), minus the warm time to first token.
Runs alternate bare/Hearth so drift on this shared machine hits both alike.

Target (issue 4): start <= 1.2x the bare engine's load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engines import add_smol
from support.server import HearthProcess, free_port

from hearth.core.pychild import python_command
from hearth.engines.params import build_server_args, merge_engine_params
from hearth.engines.plan import DEFAULT_ENGINE_JSON

PARAMS = {"ctx_len": 2048, "cpu_threads": 2}


def bare_load(model: Path, tmp: Path) -> float:
    port = free_port()
    params = merge_engine_params(DEFAULT_ENGINE_JSON, PARAMS, None)
    args = build_server_args(params, model_path=model, port=port, alias="smol", template_dir=tmp)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*python_command("hearth.engines.worker", "hearth", "xllamacpp"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError("the engine exited while loading")
                time.sleep(0.005)
    finally:
        proc.terminate()
        proc.wait()


def first_token(http: httpx.Client) -> float:
    body = {"model": "smol", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
            "stream": True}  # fmt: skip
    t0 = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content":"' in line:
                return time.perf_counter() - t0
    raise RuntimeError("no token")


def main(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        folder = add_smol(home, "smol", PARAMS)
        model = next(folder.glob("*.gguf"))
        bare: list[float] = []
        start: list[float] = []
        reported: list[float] = []
        cold: list[float] = []
        warm: list[float] = []
        hearth = HearthProcess(home, "--no-starter", "--log-level", "warning")
        with hearth as proc, httpx.Client(base_url=proc.url, timeout=120) as http:
            bare_load(model, Path(tmp))  # warm the page cache and Python's imports
            for _ in range(repeats):
                bare.append(bare_load(model, Path(tmp)))
                t0 = time.perf_counter()
                answer = http.post("/v1/models/smol/start").raise_for_status().json()
                start.append(time.perf_counter() - t0)
                reported.append(answer["load_seconds"])
                warm.append(first_token(http))
                http.post("/v1/models/smol/stop").raise_for_status()
                cold.append(first_token(http))
                http.post("/v1/models/smol/stop").raise_for_status()

        def ms(values: list[float]) -> str:
            return f"{1000 * statistics.median(values):.0f}"

        print(f"SmolLM2-135M Q4_1, ctx_len {PARAMS['ctx_len']}, {repeats} runs, medians:")
        print("| bare engine load ms | Hearth start ms | Hearth's load_seconds ms | ratio | "
              "first request, cold ms | warm ms |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        ratio = statistics.median(start) / statistics.median(bare)
        print(f"| {ms(bare)} | {ms(start)} | {ms(reported)} | {ratio:.2f} | {ms(cold)} | "
              f"{ms(warm)} |")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    main(parser.parse_args().repeats)
