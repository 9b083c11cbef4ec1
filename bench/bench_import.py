"""Drop-in import speed: a 4 GiB GGUF moved into models/, and 100 files dropped at once.

Run by hand:  .venv/bin/python bench/bench_import.py [--repeats 5]

Targets (issue 3): a 4 GiB GGUF on the same filesystem goes from "file complete" (the moment
it lands in models/ whole) to listed as ready in under 0.5 s; 100 files dropped at once are all
imported, each exactly once. The server is a real `hearth serve` child process; the 4 GiB file
is sparse (a valid header, then 4 GiB of tensor data that takes no disk space).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.gguf_factory import kv, raw_gguf, tensor_info, write_gguf
from support.server import HearthProcess

GIB = 1 << 30


def sparse_gguf(path: Path, data_bytes: int) -> None:
    elements = data_bytes // 4  # one F32 tensor
    header = raw_gguf(
        kvs=[kv("general.architecture", "llama"), kv("llama.context_length", 4096)],
        tensors=[tensor_info("w", [elements], ttype=0, offset=0)],
    )
    header += b"\0" * (-len(header) % 32)
    with open(path, "wb") as fh:
        fh.write(header)
        fh.truncate(len(header) + data_bytes)


def wait_listed(http: httpx.Client, model_id: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = http.get(f"/v1/models/{model_id}")
        if r.status_code == 200 and r.json()["status"] == "ready":
            return time.perf_counter()
        time.sleep(0.002)
    raise RuntimeError(f"{model_id} was not imported within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, staging = Path(tmp) / "home", Path(tmp) / "staging"
        (home / "models").mkdir(parents=True)
        staging.mkdir()
        with HearthProcess(home) as server, httpx.Client(base_url=server.url) as http:
            times = []
            for i in range(args.repeats):
                src = staging / f"big-{i}.gguf"
                sparse_gguf(src, 4 * GIB)
                t0 = time.perf_counter()
                os.rename(src, home / "models" / src.name)
                times.append((wait_listed(http, f"big-{i}") - t0) * 1000)
            for i in range(100):
                write_gguf(staging / f"batch-{i:03d}.gguf")
            t0 = time.perf_counter()
            for i in range(100):
                os.rename(staging / f"batch-{i:03d}.gguf", home / "models" / f"batch-{i:03d}.gguf")
            for i in range(100):
                wait_listed(http, f"batch-{i:03d}")
            batch_s = time.perf_counter() - t0
            ids = [
                m["id"]
                for m in http.get("/v1/models").json()["data"]
                if m["id"].startswith("batch")
            ]
            loose = list((home / "models").glob("*.gguf"))
    print("| test | result |")
    print("|---|---|")
    print(
        f"| 4 GiB GGUF, landed -> listed ready (ms, {args.repeats} runs) | "
        f"median {statistics.median(times):.0f}, max {max(times):.0f} |"
    )
    print(
        f"| 100 files dropped at once | {len(ids)} models, {len(set(ids))} distinct, "
        f"{len(loose)} left loose, all listed after {batch_s:.2f} s |"
    )


if __name__ == "__main__":
    main()
