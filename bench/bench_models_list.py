"""GET /v1/models (and Ollama's GET /api/tags) with many model folders: first call, warm
p50/p95, freshness, idle RSS, and /health latency while many clients list at once.

Run by hand:
  .venv/bin/python bench/bench_models_list.py [--models 1000] [--calls 300] [--jan]
  .venv/bin/python bench/bench_models_list.py --models 5000 --clients 50 [--seconds 20]
  .venv/bin/python bench/bench_models_list.py --models 5000 --hand-written --clients 20 \
      --load-path /api/tags

`--hand-written`: each folder is a model.json with no header facts (as written by hand or by
Jan) and its own small real GGUF, so /api/tags' details and /v1/models' capabilities come
from the GGUF headers; both routes are measured, one after the other. Issue 22: /api/tags
warm p50 within 2x of /v1/models', /health p99 < 100 ms while 20 clients list /api/tags.

Targets: issue 2: warm p50 < 20 ms with 1,000 models, first call < 1 s, a change on disk visible
in the next list, idle server RSS < 100 MB. Issue 8: listing 5,000 models p50 < 50 ms (one
client, warm); /health p99 < 100 ms while 50 clients list 5,000 models continuously.

The server runs as a real `hearth serve` child process. Under load, the listing clients and the
/health prober run in two more processes (so neither's own event loop skews the other's
numbers); the listers speak minimal HTTP/1.1 over asyncio streams so that the load generator
leaves the 2 cores to the server rather than to its own JSON and HTTP parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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

_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def populate(home: Path, n: int, *, hand_written: bool = False) -> None:
    """`n` Jan-style folders; `hand_written`: a model.json without metadata and a real GGUF."""
    gguf = b"GGUF\x03\x00\x00\x00" + b"\x00" * 16
    if hand_written:
        from support.gguf_factory import gguf_bytes

        gguf = gguf_bytes(name="Bench", chat_template="{{ messages }} {{ tools }}")
    for i in range(n):
        folder = home / "models" / f"model-{i:04d}"
        folder.mkdir(parents=True)
        raw = json.loads(json.dumps(JAN_LIKE).replace("{i}", str(i)))
        if hand_written:
            raw = {"name": raw["name"], "description": raw["description"]}
        (folder / "model.json").write_text(json.dumps(raw, indent=2))
        (folder / "model.gguf").write_bytes(gguf)


def populate_jan(data: Path, n: int) -> None:
    """A Jan data folder with `n` models as Jan's hub downloads leave them: nested ids
    (`author-7/Model-0007-Q4_K_M`), model.yml with Jan's keys, model.gguf beside it, and Jan's
    llama.cpp settings file."""
    from support.janfolder import make_jan_folder, write_llamacpp_settings, write_model_yml

    make_jan_folder(data)
    write_llamacpp_settings(data, {"threads": -1, "batch_size": 2048, "flash_attn": "auto"})
    gguf = b"GGUF\x03\x00\x00\x00" + b"\x00" * 16
    for i in range(n):
        model_id = f"author-{i % 50}/Model-{i:04d}-Q4_K_M"
        folder = data / "llamacpp" / "models" / model_id
        folder.mkdir(parents=True)
        (folder / "model.gguf").write_bytes(gguf)
        write_model_yml(folder, jan_yml(model_id, i))


def jan_yml(model_id: str, i: int) -> dict[str, Any]:
    return {
        "model_path": f"llamacpp/models/{model_id}/model.gguf",
        "name": f"Model-{i}",
        "size_bytes": 2497281120,
        "model_sha256": f"{i:064x}",
        "model_size_bytes": 2497281120,
        "embedding": False,
        "embedding_check_v": 3,
        "ctx_size": 8192,
        "temperature": 0.7,
        "top_p": 0.9,
    }


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


# ---- one client ------------------------------------------------------------------------------


#: What each list route calls its entries, and a marker counted once per entry in its body.
ROUTES = {"/v1/models": ("data", b'"object":"model"'), "/api/tags": ("models", b'"digest":')}


def measure_single(
    http: httpx.Client, models: int, calls: int, path: str = "/v1/models"
) -> dict[str, Any]:
    """First call, then `calls` warm lists one after another."""
    t0 = time.perf_counter()
    first = http.get(path)
    first_ms = (time.perf_counter() - t0) * 1000
    assert len(first.json()[ROUTES[path][0]]) == models
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
    return {
        "first_ms": first_ms,
        "p50": statistics.median(times),
        "p95": pct(times, 95),
        "body_kb": len(first.content) / 1024,
    }


def check_freshness(http: httpx.Client, home: Path, jan: bool = False) -> tuple[bool, bool]:
    """A new folder and an edited model.json show up in the very next list."""
    if jan:
        return check_jan_freshness(http, home)
    new = home / "models" / "zz-new"
    new.mkdir()
    (new / "model.json").write_text('{"name": "New"}')
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    (home / "models" / "model-0000" / "model.json").write_text('{"name": "Edited"}')
    names = {m["id"]: m["name"] for m in http.get("/v1/models").json()["data"]}
    return "zz-new" in ids, names["model-0000"] == "Edited"


def check_jan_freshness(http: httpx.Client, data: Path) -> tuple[bool, bool]:
    """A new Jan model and an edited model.yml show up in the very next list."""
    from support.janfolder import write_model_yml

    new = data / "llamacpp" / "models" / "zz" / "new"
    new.mkdir(parents=True)
    (new / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 16)
    write_model_yml(new, {"model_path": "llamacpp/models/zz/new/model.gguf", "name": "New"})
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    first = "author-0/Model-0000-Q4_K_M"
    write_model_yml(data / "llamacpp" / "models" / first, {**jan_yml(first, 0), "name": "Edited"})
    names = {m["id"]: m["name"] for m in http.get("/v1/models").json()["data"]}
    return "zz/new" in ids, names[first] == "Edited"


# ---- many clients (each function below runs in its own process) -----------------------------


def probe_health(url: str, seconds: float, interval: float = 0.01) -> list[tuple[float, float]]:
    """GET /health every `interval` seconds on one kept-alive connection: (sent at, ms) pairs."""
    probes: list[tuple[float, float]] = []
    with httpx.Client(base_url=url, timeout=120) as http:
        http.get("/health")
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            sent, t0 = time.time(), time.perf_counter()
            r = http.get("/health")
            probes.append((sent, (time.perf_counter() - t0) * 1000))
            assert r.status_code == 200
            time.sleep(interval)
    return probes


async def _lister(
    host: str, port: int, stop: float, models: int, out: dict[str, Any], path: str
) -> None:
    """List models back to back on one connection; count lists that are not complete."""
    reader, writer = await asyncio.open_connection(host, port, limit=2**20)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    marker = ROUTES[path][1]
    try:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CONTENT_LENGTH.search(head)
            body = await reader.readexactly(int(match.group(1))) if match else b""
            out["times"].append((time.perf_counter() - t0) * 1000)
            if not head.startswith(b"HTTP/1.1 200") or body.count(marker) != models:
                out["bad"] += 1
    finally:
        writer.close()


def run_listers(
    url: str, clients: int, seconds: float, models: int, path: str = "/v1/models"
) -> dict[str, Any]:
    """`clients` connections listing continuously for `seconds`."""
    parsed = urlparse(url)
    out: dict[str, Any] = {"times": [], "bad": 0, "start": time.time()}

    async def main() -> None:
        stop = time.monotonic() + seconds
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
        listers = (_lister(host, port, stop, models, out, path) for _ in range(clients))
        await asyncio.gather(*listers)

    asyncio.run(main())
    out["end"] = time.time()
    return out


def measure_load(
    url: str, models: int, clients: int, seconds: float, path: str = "/v1/models"
) -> dict[str, Any]:
    """/health latency idle, then while `clients` list continuously (1 s ramp-up first)."""
    spawn = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as prober,
        ProcessPoolExecutor(max_workers=1, mp_context=spawn) as loader,
    ):
        loader.submit(time.sleep, 0).result()  # both processes started before timing begins
        idle = [ms for _, ms in prober.submit(probe_health, url, 3.0).result()]
        listers = loader.submit(run_listers, url, clients, seconds + 2, models, path)
        time.sleep(1)
        probes = prober.submit(probe_health, url, seconds).result()
        lists = listers.result()
    # only probes sent while every lister was busy count (a slow server ends the load early)
    loaded = [ms for sent, ms in probes if lists["start"] + 1 <= sent <= lists["end"]]
    return {
        "idle_p50": statistics.median(idle),
        "idle_p99": pct(idle, 99),
        "p50": statistics.median(loaded),
        "p99": pct(loaded, 99),
        "max": max(loaded),
        "probes": len(loaded),
        "lists": len(lists["times"]),
        "list_p50": statistics.median(lists["times"]),
        "bad": lists["bad"],
    }


# ---- report ----------------------------------------------------------------------------------


def table(header: list[str], *rows: list[Any]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--clients", type=int, default=0, help="listing clients for the load run")
    parser.add_argument("--seconds", type=float, default=20, help="length of the load run")
    parser.add_argument("--hand-written", action="store_true", help="model.json + real GGUF")
    parser.add_argument("--load-path", choices=sorted(ROUTES), default="/v1/models")
    parser.add_argument("--jan", action="store_true", help="a Jan data folder of model.yml files")
    args = parser.parse_args()
    load: dict[str, Any] | None = None
    # hand-written: /api/tags first (its first call reads every folder and GGUF header)
    paths = ["/api/tags", "/v1/models"] if args.hand_written else ["/v1/models"]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        if args.jan:
            populate_jan(home, args.models)
        else:
            populate(home, args.models, hand_written=args.hand_written)
        extra = ["--no-starter"] if args.jan else []
        with (
            HearthProcess(home, *extra, env={"HEARTH_WATCH": "false"}) as server,
            httpx.Client(base_url=server.url, timeout=600) as http,
        ):
            singles = {path: measure_single(http, args.models, args.calls, path) for path in paths}
            if args.clients:
                load = measure_load(
                    server.url, args.models, args.clients, args.seconds, args.load_path
                )
            fresh_new, fresh_edit = check_freshness(http, home, args.jan)
            time.sleep(2)
            assert server.proc is not None
            rss = psutil.Process(server.proc.pid).memory_info().rss / 2**20
    header = ["route", "models", "first call ms", "warm p50 ms", "warm p95 ms", "body KB"]
    header += ["new folder seen", "edit seen", "idle RSS MB"]
    rows = []
    for path, single in singles.items():
        row = [path, args.models, f"{single['first_ms']:.0f}", f"{single['p50']:.1f}"]
        row += [f"{single['p95']:.1f}", f"{single['body_kb']:.0f}", fresh_new, fresh_edit]
        rows.append([*row, f"{rss:.0f}"])
    print(table(header, *rows))
    if len(singles) == 2:
        ratio = singles["/api/tags"]["p50"] / singles["/v1/models"]["p50"]
        print(f"\n/api/tags warm p50 / /v1/models warm p50: {ratio:.2f}")
    if load is not None:
        header = ["route", "models", "clients", "lists served", "list p50 ms under load"]
        header += ["incomplete lists", "/health idle p50/p99 ms", "/health under load p50 ms"]
        header += ["/health under load p99 ms", "max ms", "probes"]
        row = [args.load_path, args.models, args.clients, load["lists"]]
        row += [f"{load['list_p50']:.0f}", load["bad"]]
        row += [f"{load['idle_p50']:.1f} / {load['idle_p99']:.1f}", f"{load['p50']:.1f}"]
        row += [f"{load['p99']:.1f}", f"{load['max']:.0f}", load["probes"]]
        print()
        print(table(header, row))


if __name__ == "__main__":
    main()
