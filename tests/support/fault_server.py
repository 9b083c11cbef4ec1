"""A real HTTP server on loopback that serves files and misbehaves on demand.

Tests register files (`add`), arm faults per path (`fault`), run real downloads against `url(...)`
and then inspect `requests` (method, path, Range, If-Range, bytes sent) to see what was re-fetched.
It also fakes the few Hugging Face Hub routes `huggingface_hub.HfApi.model_info(...,
files_metadata=True)` calls, plus `/{repo}/resolve/{rev}/{file}`, so HF resolution runs offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

CHUNK = 64 * 1024


def _tiny_header() -> bytes:
    """A valid GGUF v3 header: no tensors, one key (general.architecture = "llama")."""
    key, value = b"general.architecture", b"llama"
    return (
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key)) + key + struct.pack("<I", 8)  # 8: string
        + struct.pack("<Q", len(value)) + value
    )  # fmt: skip


GGUF_HEADER = _tiny_header()


def gguf_bytes(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random payload behind a valid GGUF header (Hearth reads it).

    Below the header's own size it is the magic and random bytes, which is not a valid file.
    """
    rng = random.Random(seed)
    head = GGUF_HEADER if size >= len(GGUF_HEADER) else b"GGUF"
    return head + rng.randbytes(max(0, size - len(head)))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Fault:
    """Misbehaviour for one path. `times` counts the requests it still applies to (None: all).

    `range_start` limits it to requests whose Range starts at that offset (0 also matches no Range).
    """

    close_after: int | None = None  # send this many body bytes, then drop the connection
    status: int | None = None  # answer this status instead of the file
    retry_after: int | None = None
    ignore_range: bool = False  # always answer 200 with the whole file
    no_accept_ranges: bool = False  # do not advertise Accept-Ranges
    extra_length: int = 0  # advertise Content-Length this much larger, send the real bytes, close
    redirect_to: str | None = None  # 302 to this location (absolute or relative)
    trickle: float | None = None  # seconds to sleep between small chunks
    trickle_chunk: int = 4096
    times: int | None = 1
    range_start: int | None = None


@dataclass
class Recorded:
    method: str
    path: str
    range: str | None
    if_range: str | None
    authorization: str | None
    status: int = 0
    sent: int = 0  # body bytes written to the socket


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, bytes]
    sha: str
    lfs: bool = True


@dataclass
class _Store:
    files: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    repos: dict[str, HubRepo] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        return

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        store = self.server.store
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        rec = Recorded(
            self.command,
            path,
            self.headers.get("Range"),
            self.headers.get("If-Range"),
            self.headers.get("Authorization"),
        )
        with store.lock:
            store.requests.append(rec)
        if path.startswith("/api/models/"):
            return self._hub_api(rec, path[len("/api/models/") :])
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            repo = store.repos.get(repo_id)
            _, _, name = rest.partition("/")
            if repo is None or name not in repo.files:
                return self._reply(rec, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound"})
            path = rec.path = f"/{repo_id}/resolve/main/{name}"
        if path not in store.files:
            return self._reply(rec, 404, b"not found")
        fault = self._take_fault(path)
        if fault and fault.redirect_to:
            return self._reply(rec, 302, b"", {"Location": fault.redirect_to})
        if fault and fault.status:
            extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return self._reply(rec, fault.status, b"boom", extra)
        self._send_file(rec, path, fault, head)

    def _take_fault(self, path: str) -> Fault | None:
        store = self.server.store
        start = _range_start(self.headers.get("Range"))
        with store.lock:
            for fault in store.faults.get(path, []):
                if fault.times == 0:
                    continue
                if fault.range_start is not None and fault.range_start != start:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def _send_file(self, rec: Recorded, path: str, fault: Fault | None, head: bool) -> None:
        store = self.server.store
        with store.lock:
            data, etag = store.files[path], store.etags[path]
        total = len(data)
        first, last, status = 0, total - 1, 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        use_range = wanted is not None and not (fault and fault.ignore_range)
        if use_range and if_range is not None and if_range != etag:
            use_range = False
        if use_range and wanted is not None:
            span = _parse_range(wanted, total)
            if span is None:
                return self._reply(rec, 416, b"", {"Content-Range": f"bytes */{total}"})
            first, last, status = span[0], span[1], 206
        body = memoryview(data)[first : last + 1]
        headers = {"ETag": etag, "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
        if not (fault and fault.no_accept_ranges):
            headers["Accept-Ranges"] = "bytes"
        if status == 206:
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
        length = len(body) + (fault.extra_length if fault else 0)
        self._start(rec, status, length, headers)
        if head:
            return
        limit = fault.close_after if fault and fault.close_after is not None else len(body)
        step = fault.trickle_chunk if fault and fault.trickle else CHUNK
        try:
            for offset in range(0, min(limit, len(body)), step):
                if store.stopping.is_set():
                    break
                piece = body[offset : min(offset + step, limit)]
                self.wfile.write(piece)
                rec.sent += len(piece)
                if fault and fault.trickle:
                    self.wfile.flush()
                    time.sleep(fault.trickle)
            self.wfile.flush()
        except OSError:
            pass
        if limit < len(body) or (fault and fault.extra_length) or store.stopping.is_set():
            self._drop()

    def _drop(self) -> None:
        """Close the connection without finishing the body (the client sees an early EOF)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _start(self, rec: Recorded, status: int, length: int, headers: dict[str, str]) -> None:
        rec.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(
        self, rec: Recorded, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self._start(rec, status, len(body), headers or {})
        if self.command != "HEAD":
            self.wfile.write(body)
            rec.sent = len(body)

    def _hub_api(self, rec: Recorded, rest: str) -> None:
        store = self.server.store
        repo_id = rest.split("/revision/")[0].split("/tree/")[0].strip("/")
        repo = store.repos.get(repo_id)
        if repo is None:
            body = json.dumps({"error": "Repository not found"}).encode()
            headers = {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"}
            return self._reply(rec, 404, body, headers)
        siblings = []
        for name, data in repo.files.items():
            entry: dict[str, object] = {"rfilename": name, "size": len(data)}
            entry["blobId"] = hashlib.sha1(data).hexdigest()
            if repo.lfs:
                entry["lfs"] = {"size": len(data), "sha256": sha256(data), "pointerSize": 134}
            siblings.append(entry)
        info = {"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha, "siblings": siblings}
        body = json.dumps(info).encode()
        self._reply(rec, 200, body, {"Content-Type": "application/json"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    store: _Store

    def handle_error(self, request: object, client_address: object) -> None:
        return  # clients dropping connections mid-body is the point of these tests


def _range_start(value: str | None) -> int:
    if not value or not value.startswith("bytes="):
        return 0
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else 0


def _parse_range(value: str, total: int) -> tuple[int, int] | None:
    """One `bytes=a-b`, `bytes=a-` or `bytes=-n` range; None when unsatisfiable."""
    if not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].partition("-")
    if not first:
        n = int(last)
        return (max(0, total - n), total - 1) if n > 0 and total else None
    a = int(first)
    b = int(last) if last else total - 1
    if a >= total or b < a:
        return None
    return a, min(b, total - 1)


class FaultServer:
    """Start with `with FaultServer() as srv:`; `srv.url("/f.gguf")` is the file's address."""

    def __init__(self) -> None:
        self.store = _Store()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.store = self.store
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.store.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + quote(path)

    def add(self, path: str, data: bytes) -> str:
        """Serve `data` at `path`; returns its URL. The ETag is derived from the content."""
        with self.store.lock:
            self.store.files[path] = data
            self.store.etags[path] = f'"{sha256(data)[:16]}"'
        return self.url(path)

    replace = add  # a new body means a new ETag, as when a file is replaced on a real server

    def fault(self, path: str, **kwargs: object) -> Fault:
        """Arm a fault for `path` (see `Fault`); several faults are used in the order added."""
        fault = Fault(**kwargs)  # type: ignore[arg-type]
        with self.store.lock:
            self.store.faults.setdefault(path, []).append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.store.lock:
            self.store.faults.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self.store.lock:
            return list(self.store.requests)

    def requests_for(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path and r.method == "GET"]

    def bytes_sent(self, path: str) -> int:
        return sum(r.sent for r in self.requests_for(path))

    def add_hf_repo(
        self, repo_id: str, files: dict[str, bytes], *, sha: str | None = None, lfs: bool = True
    ) -> HubRepo:
        """Expose a fake Hub repo: its API listing and `/{repo}/resolve/{rev}/{file}` downloads."""
        commit = sha or hashlib.sha1(repo_id.encode()).hexdigest()
        repo = HubRepo(repo_id, dict(files), commit, lfs)
        with self.store.lock:
            self.store.repos[repo_id] = repo
            for name, data in files.items():
                key = f"/{repo_id}/resolve/main/{name}"
                self.store.files[key] = data
                self.store.etags[key] = f'"{sha256(data)[:16]}"'
        return repo

    def hf_path(self, repo_id: str, name: str) -> str:
        """The path key (for `fault`/`requests_for`) of a Hub file, whatever revision is asked."""
        return f"/{repo_id}/resolve/main/{name}"


def serve() -> Iterator[FaultServer]:
    """Generator for a pytest fixture: `server = pytest.fixture(serve)`."""
    with FaultServer() as srv:
        yield srv
