"""Pull throughput by Ollama name through Hearth vs curl of the same blob, and resume cost.

Run by hand:  .venv/bin/python bench/bench_ollama_pull.py [--size-mib 512] [--repeats 5]

A child process serves a fake Ollama registry on loopback: the manifest of `bench:latest` (a GGUF
layer and a params layer) and its blobs, each blob request answered with a 307 to `/cdn/...`, as
registry.ollama.ai redirects to its CDN. The CDN route answers with `sendfile(2)`, supports Range
and can drop the connection after N bytes. Interleaved, each repeat into a fresh folder:

- `curl -sfL -o FILE <registry>/v2/library/bench/blobs/sha256:...` (the blob only, unverified),
  and the same followed by `sha256sum FILE` (verified, as Hearth verifies);
- Hearth: `Services.pull("bench")`, what `hearth pull bench` runs without a server: the manifest,
  the params layer, the model folder, the blob (sha256 verified while streaming), and model.json
  filled from the GGUF header; timed from the call until the job is completed.

Then one Hearth pull during which every CDN connection drops once half the blob has been sent
(Hearth pulls a large file over 4 ranges): bytes the CDN sent beyond one blob, in % (bytes in
flight at the drop count as sent, so this errs high).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_download import _get, make_file

from hearth.core.config import load_settings
from hearth.services import Services

#: drop_at: when the CDN has sent this many bytes in all, every connection sending then drops
#: (a network blip during a pull over several connections); gen counts such drops.
STATE: dict[str, int] = {"drop_at": 0, "sent": 0, "gen": 0}
CHUNK = 1 << 20
PARAMS = b'{"temperature": 0.7, "num_ctx": 4096}'


def manifest(sha: str, size: int, params_sha: str) -> bytes:
    layers = [
        {
            "mediaType": "application/vnd.ollama.image.model",
            "digest": f"sha256:{sha}",
            "size": size,
        },
        {
            "mediaType": "application/vnd.ollama.image.params",
            "digest": f"sha256:{params_sha}",
            "size": len(PARAMS),
        },
    ]
    return json.dumps({"schemaVersion": 2, "layers": layers}).encode()


async def _reply(writer: asyncio.StreamWriter, status: str, body: bytes, extra: str = "") -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    writer.write(head.encode() + body)
    await writer.drain()


async def _send_blob(
    writer: asyncio.StreamWriter, fh: object, size: int, headers: dict[str, str]
) -> bool:
    """The blob (or its Range) with sendfile; False when the connection was dropped."""
    first, last, status, extra = 0, size - 1, "200 OK", ""
    if "range" in headers:
        a, _, b = headers["range"][6:].partition("-")
        first, last = int(a), int(b) if b else size - 1
        status, extra = "206 Partial Content", f"Content-Range: bytes {first}-{last}/{size}\r\n"
    count = last - first + 1
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\n"
        f'ETag: "bench"\r\n{extra}\r\n'.encode()
    )
    gen, offset, end = STATE["gen"], first, last + 1
    loop = asyncio.get_running_loop()
    while offset < end:
        try:
            sent = await loop.sendfile(writer.transport, fh, offset, min(CHUNK, end - offset))  # type: ignore[arg-type]
        except (ConnectionError, OSError):
            return False
        offset += sent
        STATE["sent"] += sent
        if STATE["drop_at"] and STATE["sent"] >= STATE["drop_at"]:
            STATE["drop_at"], STATE["gen"] = 0, STATE["gen"] + 1
        if STATE["gen"] != gen:
            return False  # dropped mid-body
    return True


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, blob: Path) -> None:
    size = blob.stat().st_size
    sha = (blob.parent / "sha").read_text()
    params_sha = hashlib.sha256(PARAMS).hexdigest()
    with open(blob, "rb") as fh:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            pairs = (x.partition(":") for x in lines[1:] if x)
            headers = {k.lower(): v.strip() for k, _, v in pairs}
            if target.startswith("/__arm"):
                STATE["drop_at"] = int(target.split("=")[1])
                await _reply(writer, "200 OK", b"ok")
            elif target == "/__stats":
                await _reply(writer, "200 OK", json.dumps(STATE).encode())
                STATE["sent"] = 0
            elif target.endswith("/manifests/latest"):
                await _reply(writer, "200 OK", manifest(sha, size, params_sha))
            elif target.endswith(params_sha):
                await _reply(writer, "200 OK", PARAMS)
            elif target.endswith(sha):
                await _reply(writer, "307 Temporary Redirect", b"", "Location: /cdn/blob\r\n")
            elif target == "/cdn/blob":
                if not await _send_blob(writer, fh, size, headers):
                    break
            else:
                await _reply(writer, "404 Not Found", b"")
    writer.close()


def serve(blob: Path, port_file: Path) -> None:
    """Child process: the registry on a free loopback port, written to `port_file`."""

    async def main() -> None:
        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await _handle(r, w, blob)
            except (asyncio.IncompleteReadError, ConnectionError):
                w.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def run_curl(url: str, out: Path, *, verify: bool = False) -> float:
    """curl alone, or curl then `sha256sum` (a verified fetch, as Hearth's)."""
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-L", "-o", str(out), url], check=True)
    if verify:
        subprocess.run(["sha256sum", str(out)], check=True, capture_output=True)
    return time.perf_counter() - start


def hash_speed() -> float:
    """hashlib.sha256 MB/s on this CPU: the bound of any verified download."""
    data = os.urandom(256 << 20)
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    return len(data) / (time.perf_counter() - start) / 1e6


def run_hearth(registry: str, home: Path) -> float:
    """One `Services.pull("bench")` into a fresh home, timed until the job completes."""

    async def pull() -> float:
        settings = load_settings(home=home, env={"HEARTH_OLLAMA_REGISTRY": registry})
        services = Services.create(settings)
        try:
            start = time.perf_counter()
            model_id, job = await services.pull("bench")
            assert job is not None
            snap = await job.wait()
            seconds = time.perf_counter() - start
            assert snap.state == "completed", snap.error
            assert services.get_model(model_id)["status"] == "ready"
            return seconds
        finally:
            await services.stop()

    return asyncio.run(pull())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(Path(args.serve[0]), Path(args.serve[1]))
    if shutil.which("curl") is None:
        sys.exit("curl is missing: apt-get install -y curl")
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        root = Path(tmp)
        blob = root / "blob"
        print(f"generating {args.size_mib} MiB ...", file=sys.stderr)
        sha = make_file(blob, size)
        (root / "sha").write_text(sha)
        port_file = root / "port"
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(blob), str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            port = int(port_file.read_text())
            registry = f"http://127.0.0.1:{port}"
            times = bench(registry, sha, root, size, args.repeats)
            refetch = resume_cost(registry, root, size, port)
        finally:
            child.terminate()
            child.wait()
    report(times, refetch, args)


def bench(registry: str, sha: str, root: Path, size: int, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"curl": [], "curl + sha256sum": [], "hearth pull": []}
    url = f"{registry}/v2/library/bench/blobs/sha256:{sha}"
    for i in range(repeats):
        for name in times:
            out = root / f"out-{i}"
            out.mkdir()
            if name == "hearth pull":
                seconds = run_hearth(registry, out)
            else:
                seconds = run_curl(url, out / "blob", verify=name != "curl")
            times[name].append(seconds)
            print(f"  {name:12s} run {i + 1}: {size / seconds / 1e6:8.1f} MB/s", file=sys.stderr)
            shutil.rmtree(out)
    return times


def resume_cost(registry: str, root: Path, size: int, port: int) -> float:
    """Drop every CDN connection at 50% during a Hearth pull; bytes sent beyond one blob, in %."""
    out = root / "resume"
    out.mkdir()
    _get(port, "/__stats")
    _get(port, f"/__arm?drop_at={size // 2}")
    run_hearth(registry, out)
    stats = json.loads(_get(port, "/__stats"))
    assert stats["gen"] >= 1, "the drop never happened"
    sent = stats["sent"]
    with contextlib.suppress(OSError):
        shutil.rmtree(out)
    return 100.0 * (sent - size) / size


def report(times: dict[str, list[float]], refetch: float, args: argparse.Namespace) -> None:
    size = args.size_mib << 20
    curl = statistics.median(times["curl"])
    print(f"\n{args.size_mib} MiB over loopback, {args.repeats} interleaved repeats\n")
    print("| client | MB/s (median) | MB/s (best) | vs curl (median) |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        med, best = statistics.median(values), min(values)
        print(f"| {name} | {size / med / 1e6:.0f} | {size / best / 1e6:.0f} | {curl / med:.2f}x |")
    print(f"\nHearth pull with a drop at 50%: {refetch:.3f}% of the blob fetched twice")
    print(f"hashlib.sha256 on this CPU: {hash_speed():.0f} MB/s")


if __name__ == "__main__":
    main()
