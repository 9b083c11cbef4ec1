"""Download throughput and resume cost, Hearth's `download_file` against curl, on loopback.

Run by hand:  .venv/bin/python bench/bench_download.py [--size-mib 1024] [--repeats 3]

The file (GGUF magic + random bytes) is generated in a temp dir and served by a tiny asyncio
HTTP/1.1 server in a child process that answers with `loop.sendfile` (zero-copy sendfile(2)),
supports Range and can drop the connection after N bytes (for the resume test). curl, Hearth with
1 connection and Hearth with N connections run interleaved, each repeat in a fresh output dir.
Hearth runs with sha256 verification on (expected hash passed), as in real pulls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fault_server import GGUF_HEADER

from hearth.downloads.transfer import DownloadFailed, download_file

STATE = {"close_after": None, "sent": 0}


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: Path) -> None:
    loop = asyncio.get_running_loop()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                break
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            pairs = (x.partition(":") for x in lines[1:] if x)
            headers = {k.lower(): v.strip() for k, _, v in pairs}
            if target.startswith("/__arm"):
                STATE["close_after"] = int(target.split("=")[1])
                body = b"ok"
            elif target == "/__stats":
                body = json.dumps(STATE).encode()
                STATE["sent"] = 0
            else:
                body = None
            if body is not None:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                continue
            first, last, status = 0, size - 1, "200 OK"
            extra = ""
            if "range" in headers:
                a, _, b = headers["range"][6:].partition("-")
                first, last = int(a), int(b) if b else size - 1
                status = "206 Partial Content"
                extra = f"Content-Range: bytes {first}-{last}/{size}\r\n"
            count = last - first + 1
            writer.write(
                (
                    f"HTTP/1.1 {status}\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\n"
                    f'ETag: "bench"\r\n{extra}\r\n'
                ).encode()
            )
            limit, STATE["close_after"] = STATE["close_after"], None
            send = count if limit is None else min(count, limit)
            try:
                sent = await loop.sendfile(writer.transport, fh, first, send)
            except (ConnectionError, OSError):
                break
            finally:
                STATE["sent"] += send
            if limit is not None or sent < count:
                break
    writer.close()


def serve(path: Path, port_file: Path) -> None:
    """Child process: serve `path` on a free loopback port, written to `port_file`."""

    async def main() -> None:
        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                await _handle(r, w, path)
            except (asyncio.IncompleteReadError, ConnectionError):
                w.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _get(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += sock.recv(65536)
        return body


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        # A valid GGUF header (Hearth reads it before publishing the file), then random bytes.
        block = GGUF_HEADER + os.urandom((16 << 20) - len(GGUF_HEADER))
        written = 0
        while written < size:
            piece = block[: size - written]
            fh.write(piece)
            digest.update(piece)
            written += len(piece)
            block = os.urandom(16 << 20)
    return digest.hexdigest()


def run_curl(url: str, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(out), url], check=True)
    return time.perf_counter() - start


def run_ours(url: str, out_dir: Path, sha: str, size: int, connections: int) -> float:
    start = time.perf_counter()
    asyncio.run(
        download_file(
            url, out_dir, "bench.gguf", expected_size=size, expected_sha256=sha,
            connections=connections, min_range_size=64 << 20,
        )
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(Path(args.serve[0]), Path(args.serve[1]))
    if shutil.which("curl") is None:
        sys.exit("curl is missing: apt-get install -y curl")
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="hearth-bench-") as tmp:
        root = Path(tmp)
        src = root / "src.gguf"
        print(f"generating {args.size_mib} MiB ...", file=sys.stderr)
        sha = make_file(src, size)
        port_file = root / "port"
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(src), str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            port = int(port_file.read_text())
            url = f"http://127.0.0.1:{port}/bench.gguf"
            results = bench(url, root, sha, size, args.repeats, args.connections)
            refetch = resume_cost(url, root, sha, size, port)
        finally:
            child.terminate()
            child.wait()
    report(results, refetch, args)


def _cpu() -> tuple[float, float, float]:
    """(user, system) CPU seconds of this process plus its finished children, and host steal."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    steal = 0.0
    with contextlib.suppress(OSError, IndexError, ValueError), open("/proc/stat") as fh:
        steal = int(fh.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime, steal


def bench(
    url: str, root: Path, sha: str, size: int, repeats: int, conns: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"curl": [], "hearth x1": [], f"hearth x{conns}": []}
    for i in range(repeats):
        for name in times:
            out = root / f"out-{name.replace(' ', '')}-{i}"
            out.mkdir()
            before = _cpu()
            if name == "curl":
                seconds = run_curl(url, out / "bench.gguf")
            else:
                seconds = run_ours(url, out, sha, size, 1 if name == "hearth x1" else conns)
            user, system, steal = (b - a for a, b in zip(before, _cpu(), strict=True))
            times[name].append(seconds)
            # CPU per run makes a slow run explainable: on a 2-vCPU VM the slow runs of the
            # threaded client show inflated system time (and steal), not more bytes of work.
            print(
                f"  {name:12s} run {i + 1}: {size / seconds / 1e6:8.1f} MB/s"
                f"  (cpu user {user:.2f}s sys {system:.2f}s, steal {steal:.2f}s)",
                file=sys.stderr,
            )
            shutil.rmtree(out)
    return times


def resume_cost(url: str, root: Path, sha: str, size: int, port: int) -> float:
    """Drop the connection at 50%, resume, and return the bytes sent beyond one file, in %."""
    out = root / "resume"
    out.mkdir()
    _get(port, "/__stats")
    _get(port, f"/__arm?close_after={size // 2}")
    with contextlib.suppress(DownloadFailed):
        asyncio.run(download_file(url, out, "bench.gguf", connections=1, retries=0))
    result = asyncio.run(download_file(url, out, "bench.gguf", expected_sha256=sha, connections=1))
    assert result.sha256 == sha and result.resumed_from > 0
    sent = json.loads(_get(port, "/__stats"))["sent"]
    shutil.rmtree(out)
    return 100.0 * (sent - size) / size


def report(times: dict[str, list[float]], refetch: float, args: argparse.Namespace) -> None:
    size = args.size_mib << 20
    curl = statistics.median(times["curl"])
    print(f"\n{args.size_mib} MiB over loopback, {args.repeats} interleaved repeats (median)\n")
    print("| client | MB/s (median) | MB/s (best) | vs curl |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        med, best = statistics.median(values), min(values)
        print(f"| {name} | {size / med / 1e6:.0f} | {size / best / 1e6:.0f} | {curl / med:.2f}x |")
    print(f"\nresume after a drop at 50%: {refetch:.3f}% of the file fetched twice (target < 1%)")


if __name__ == "__main__":
    main()
