"""download_file against servers that are hostile or broken on purpose (issue 14, transfer side).

A raw asyncio server on loopback plays each part: an endless chunked body, a drip feed, a server
that never answers, a malformed Content-Length. The FaultServer covers range tricks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import shutil
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fault_server import GGUF_HEADER, FaultServer, gguf_bytes, sha256
from support.gguf_factory import gguf_bytes as real_gguf

from hearth.core.errors import InsufficientStorage, InvalidModelFile, InvalidRequest
from hearth.downloads import common
from hearth.downloads.common import BodyTooLarge
from hearth.downloads.pump import run_blocking
from hearth.downloads.space import LEDGER
from hearth.downloads.state import PartWriter
from hearth.downloads.transfer import DownloadFailed, DownloadResult, download_file
from hearth.downloads.wire import Stopper, WireResponse, open_wire

FAST: dict[str, Any] = {"backoff": 0.001, "max_backoff": 0.01, "min_range_size": 256 * 1024}
Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]  # (request head, writer)


class RawServer:
    """An asyncio server on its own thread and loop; `handler` writes raw HTTP bytes."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.hits = handler, 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        assert self._ready.wait(10), "the raw server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _close(self) -> None:
        """Stop listening and end every handler still running (endless ones included)."""
        self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await self.handler(head, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def url(self, name: str = "m.gguf") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def serve(handler: Handler) -> RawServer:
    return RawServer(handler)


async def endless_chunked(head: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b"\x00" * (64 << 10)
    writer.write(b"%x\r\n%s\r\n" % (len(GGUF_HEADER), GGUF_HEADER))
    while True:
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        await writer.drain()


def fetch(url: str, dest: Path, name: str = "m.gguf", **kwargs: Any) -> DownloadResult:
    return asyncio.run(download_file(url, dest, name, **{**FAST, "connections": 1, **kwargs}))


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


# --- Disk safety ---


@pytest.mark.parametrize("via_httpx", [False, True])
def test_endless_body_stops_at_the_size_cap(tmp_path: Path, via_httpx: bool) -> None:
    async def run(url: str) -> DownloadResult:
        if not via_httpx:
            return await download_file(url, tmp_path, "m.gguf", max_bytes=3_000_000, **FAST)
        async with httpx.AsyncClient() as client:
            return await download_file(
                url, tmp_path, "m.gguf", max_bytes=3_000_000, client=client, **FAST
            )

    with serve(endless_chunked) as srv, pytest.raises(BodyTooLarge) as info:
        asyncio.run(run(srv.url()))
    assert "max_download_bytes" in info.value.message and info.value.status == 502
    assert leftovers(tmp_path) == []


def test_endless_body_stops_before_the_disk_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "disk_free", lambda path: 10_000_000)  # a small disk
    with serve(endless_chunked) as srv, pytest.raises(InsufficientStorage) as info:
        fetch(srv.url(), tmp_path, reserve_bytes=6_000_000)
    assert str(tmp_path) in info.value.message and "download_reserve_bytes" in info.value.message
    assert info.value.status == 507 and leftovers(tmp_path) == []


def test_a_full_disk_mid_download_is_507_and_leaves_nothing(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    land = PartWriter.land

    def full_after_1mb(self: PartWriter, seg: Any, offset: int, view: memoryview) -> None:
        if offset >= 1_000_000:  # what the kernel says when the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        land(self, seg, offset, view)

    monkeypatch.setattr(PartWriter, "land", full_after_1mb)
    url = server.add("/m.gguf", gguf_bytes(3_000_000, 1))
    with pytest.raises(InsufficientStorage, match="is full") as info:
        fetch(url, tmp_path)
    assert str(tmp_path) in info.value.message and leftovers(tmp_path) == []


@pytest.mark.slow
def test_two_downloads_that_only_fit_alone_are_refused_together(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 3_000_000
    free = size + (16 << 20) + 1_000_000  # room for one file and the margin, not two
    monkeypatch.setattr(common, "disk_free", lambda path: free)
    first, second = gguf_bytes(size, 2), gguf_bytes(size, 3)
    url1, url2 = server.add("/a.gguf", first), server.add("/b.gguf", second)
    # every request for it trickles (ranges too): ~2 s at least, still running when b asks
    server.fault("/a.gguf", trickle=0.05, trickle_chunk=64 << 10, times=None)

    async def both() -> DownloadResult:
        started = asyncio.Event()
        one = asyncio.ensure_future(
            download_file(url1, tmp_path, "a.gguf", expected_size=size, **FAST,
                          progress=lambda d, t: started.set())
        )  # fmt: skip
        await asyncio.wait_for(started.wait(), 30)
        with pytest.raises(InsufficientStorage, match="other downloads") as info:
            await download_file(url2, tmp_path, "b.gguf", expected_size=size, **FAST)
        assert str(tmp_path) in info.value.message
        return await one

    assert asyncio.run(both()).sha256 == sha256(first)
    assert server.requests_for("/b.gguf") == []
    assert LEDGER.promised(tmp_path) == 0  # released: the next one fits
    assert fetch(url2, tmp_path, "b.gguf", expected_size=size).sha256 == sha256(second)


# --- Validate before publishing ---


def _tensor_file() -> bytes:
    return real_gguf(n_tensors=2, tensor_shape=(64, 64))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"GGUF" + b"\x00" * 200_000, id="zero-filled"),
        pytest.param(GGUF_HEADER[:30], id="truncated-header"),
        pytest.param(_tensor_file()[:-5000], id="truncated-tensors"),
    ],
)
def test_invalid_gguf_is_never_published(
    server: FaultServer, tmp_path: Path, payload: bytes
) -> None:
    url = server.add("/m.gguf", payload)
    with pytest.raises(InvalidModelFile, match="not published"):
        fetch(url, tmp_path, expected_size=len(payload))
    assert leftovers(tmp_path) == []


def test_a_valid_file_and_a_later_split_part_are_published(
    server: FaultServer, tmp_path: Path
) -> None:
    whole = _tensor_file()
    assert fetch(server.add("/m.gguf", whole), tmp_path).size == len(whole)
    part = b"GGUF" + (3).to_bytes(4, "little") + bytes(16) + b"tensor data"  # no architecture
    name = "big-00002-of-00002.gguf"
    assert fetch(server.add(f"/{name}", part), tmp_path, name).size == len(part)
    assert leftovers(tmp_path) == sorted([name, "m.gguf"])


# --- Deadlines ---


def dripper(chunked: bool) -> Handler:
    """10 MB at 50 bytes/s, plain or chunked; honours `Range: bytes=N-` (a retry gets a 206)."""

    async def drip(head: bytes, writer: asyncio.StreamWriter) -> None:
        size, start = 10_000_000, 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"range: bytes="):
                start = int(line[13:].split(b"-")[0])
        status = b"200 OK"
        if start:
            status = b"206 Partial Content\r\nContent-Range: bytes %d-%d/%d" % (
                start, size - 1, size
            )  # fmt: skip
        framing = (
            b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (size - start)
        )
        writer.write(b"HTTP/1.1 %s\r\n%s\r\n\r\n" % (status, framing))
        piece = b"GGUF" if not start else b"x"
        while True:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
            await asyncio.sleep(0.02)
            piece = b"x"

    return drip


async def silent(head: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.slow
def test_a_drip_feed_fails_within_the_stall_deadline(tmp_path: Path, chunked: bool) -> None:
    seen: list[int] = []
    with (
        serve(dripper(chunked)) as srv,
        pytest.raises(DownloadFailed, match="less than 64 KiB") as info,
    ):
        fetch(srv.url(), tmp_path, stall_seconds=0.5, retries=1,
              progress=lambda done, total: seen.append(done))  # fmt: skip
    assert "Gave up" in info.value.message
    assert srv.hits == 2  # trickling bytes did not reset the retry budget
    assert seen and max(seen) > 0  # bytes were reported as they arrived


@pytest.mark.slow
def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with serve(silent) as srv, pytest.raises(DownloadFailed, match=r"no response within 0\.3 s"):
        fetch(srv.url(), tmp_path, stall_seconds=0.3, retries=1)
    assert srv.hits == 2 and leftovers(tmp_path) == []


# --- Malformed answers ---


@pytest.mark.parametrize("length", [b"-5", b"abc", b"5, 5"])
def test_a_malformed_content_length_is_a_clear_error(tmp_path: Path, length: bytes) -> None:
    async def bad(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nGGUF" % length)
        await writer.drain()

    with serve(bad) as srv, pytest.raises(DownloadFailed, match="invalid Content-Length"):
        fetch(srv.url(), tmp_path)
    assert leftovers(tmp_path) == []


def test_a_server_that_ignores_range_is_not_a_changed_file(
    server: FaultServer, tmp_path: Path
) -> None:
    data = gguf_bytes(4_000_000, 4)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", ignore_range=True, times=None)  # still advertises Accept-Ranges
    result = fetch(url, tmp_path, connections=4, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data) and "ignores Range" in (result.note or "")


def test_a_dropping_server_that_ignores_range_says_so(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/m.gguf", gguf_bytes(2_000_000, 5))
    server.fault("/m.gguf", ignore_range=True, close_after=300_000, times=None)
    with pytest.raises(DownloadFailed, match="cannot resume downloads") as info:
        fetch(url, tmp_path)
    assert "changed" not in info.value.message


@pytest.mark.parametrize("target", ["javascript:alert(1)", "data:text/plain,GGUF", "http://[::1"])
def test_odd_redirect_locations_are_refused(
    server: FaultServer, tmp_path: Path, target: str
) -> None:
    url = server.add("/m.gguf", gguf_bytes(1000))
    server.fault("/m.gguf", redirect_to=target)
    with pytest.raises(InvalidRequest, match="Refused a redirect") as info:
        fetch(url, tmp_path)
    assert target not in info.value.message and leftovers(tmp_path) == []


@pytest.mark.slow
def test_the_stall_deadline_also_holds_on_the_httpx_path(tmp_path: Path) -> None:
    async def run(url: str) -> DownloadResult:
        async with httpx.AsyncClient() as client:
            return await download_file(
                url, tmp_path, "m.gguf", client=client, stall_seconds=0.5, retries=1, **FAST
            )

    with serve(dripper(False)) as srv, pytest.raises(DownloadFailed, match="less than 64 KiB"):
        asyncio.run(run(srv.url()))
    assert srv.hits == 2


def test_the_longest_allowed_name_downloads(server: FaultServer, tmp_path: Path) -> None:
    name = "m" * (255 - len(".part.json") - len(".gguf")) + ".gguf"
    data = gguf_bytes(600_000, 6)
    server.fault("/m.gguf", close_after=300_000)  # the sidecar is written: a resume follows
    result = fetch(server.add("/m.gguf", data), tmp_path, name, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data) and leftovers(tmp_path) == [name]


def test_an_endless_pull_on_a_real_small_disk_fails_cleanly(tmp_path: Path) -> None:
    """End to end on a real 8 MiB tmpfs (the suite runs as root, as CI does): a pull of an
    endless body through the API stops before the reserve, removes its `.part`, leaves the model
    not `downloading`, and the next pull answers (no 500)."""
    from support.server import ThreadedServer

    from hearth.core.config import load_settings
    from hearth.services import Services

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        flags = {"download_reserve_bytes": 2 << 20}
        services = Services.create(load_settings(home=disk / "home", flags=flags, env={}))
        with serve(endless_chunked) as raw, ThreadedServer(services) as srv, srv.http() as http:
            r = http.post("/v1/models/pull", json={"source": raw.url("endless.gguf")})
            assert r.status_code == 202, r.text
            job = r.json()
            deadline = time.monotonic() + 60
            while job["state"] not in ("completed", "failed", "cancelled"):
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
                job = http.get(f"/v1/downloads/{job['id']}").json()
            assert job["state"] == "failed" and "disk" in job["error"], job
            folder = disk / "home" / "models" / job["model_id"]
            assert not [p.name for p in folder.iterdir() if ".part" in p.name]
            model = http.get(f"/v1/models/{job['model_id']}").json()
            assert model["status"] != "downloading", model
            again = http.post("/v1/models/pull", json={"source": raw.url("endless.gguf")})
            assert again.status_code < 500, again.text
            assert shutil.disk_usage(disk).free > (1 << 20)  # the reserve held
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_response_opened_as_its_download_is_cancelled_is_closed(server: FaultServer) -> None:
    """Cancelled while the worker thread opens a response: the thread still returns it (it was
    open before the stop), and nobody awaits it any more. It must be closed there and then,
    not left to the garbage collector with its socket open (a ResourceWarning, an error here)."""
    url = server.add("/m.gguf", gguf_bytes(4096))
    opened: list[WireResponse] = []
    stopper = Stopper()

    def open_then_wait_for_the_stop() -> WireResponse:
        resp = open_wire(url, {}, 10, stopper)
        opened.append(resp)
        while not stopper.stopped:  # the caller is cancelled now: the result lands after it
            time.sleep(0.01)
        return resp

    async def main() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            task = asyncio.create_task(
                run_blocking(pool, stopper, open_then_wait_for_the_stop, discard=WireResponse.close)
            )
            while not opened:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert opened[0].conn.sock is None  # closed by `discard`, not by the collector
