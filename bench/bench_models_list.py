"""GET /v1/models with 1,000 model folders: first call, warm p50/p95, freshness, idle RSS.

Run by hand:  .venv/bin/python bench/bench_models_list.py [--models 1000] [--calls 300]

Targets (issue 2): warm p50 < 20 ms, first call < 1 s, a change on disk visible in the next
list, idle server RSS < 100 MB. The server runs as a real `hearth serve` child process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import HearthProcess

JAN_LIKE = {
    "sources": [
        {"filename": "model.gguf", "url": "https://huggingface.co/o/r/resolve/main/model.gguf"}
    ],
    "name": "Model {i}",
    "version": "1.0",
    "description": "A benchmark model with a realistic model.json.",
    "format": "gguf",
    "settings": {
        "ctx_len": 4096,
        "prompt_template": "<|user|>\n{prompt}<|end|>\n<|assistant|>",
        "ngl": 33,
    },
    "parameters": {
        "temperature": 0.7,
        "top_p": 0.95,
        "stream": True,
        "max_tokens": 2048,
        "stop": ["<|end|>"],
    },
    "metadata": {"author": "Someone", "tags": ["7B", "Featured"], "size": 4370000000},
    "engine": "nitro",
}


def populate(home: Path, n: int) -> None:
    for i in range(n):
        folder = home / "models" / f"model-{i:04d}"
        folder.mkdir(parents=True)
        raw = json.loads(json.dumps(JAN_LIKE).replace("{i}", str(i)))
        (folder / "model.json").write_text(json.dumps(raw, indent=2))
        (folder / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 16)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        populate(home, args.models)
        with (
            HearthProcess(home, env={"HEARTH_WATCH": "false"}) as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            t0 = time.perf_counter()
            first = http.get("/v1/models")
            first_ms = (time.perf_counter() - t0) * 1000
            assert len(first.json()["data"]) == args.models
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                r = http.get("/v1/models")
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
            times.sort()
            p50 = statistics.median(times)
            p95 = times[int(len(times) * 0.95) - 1]
            # freshness: a new folder and an edited model.json show up in the very next list
            new = home / "models" / "zz-new"
            new.mkdir()
            (new / "model.json").write_text('{"name": "New"}')
            ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
            fresh_new = "zz-new" in ids
            (home / "models" / "model-0000" / "model.json").write_text('{"name": "Edited"}')
            names = {m["id"]: m["name"] for m in http.get("/v1/models").json()["data"]}
            fresh_edit = names["model-0000"] == "Edited"
            time.sleep(2)
            rss = psutil.Process(server.proc.pid).memory_info().rss / 2**20
            size_kb = len(first.content) / 1024
    header = ["models", "first call ms", "warm p50 ms", "warm p95 ms", "body KB"]
    header += ["new folder seen", "edit seen", "idle RSS MB"]
    row = [args.models, f"{first_ms:.0f}", f"{p50:.1f}", f"{p95:.1f}", f"{size_kb:.0f}"]
    row += [fresh_new, fresh_edit, f"{rss:.0f}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
