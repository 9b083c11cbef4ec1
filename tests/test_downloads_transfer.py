"""download_file against a real loopback server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fault_server import FaultServer, gguf_bytes, sha256

from hearth.core.errors import InsufficientStorage, InvalidModelFile, InvalidRequest
from hearth.downloads.transfer import (
    ChecksumMismatch,
    DownloadCancelled,
    DownloadFailed,
    DownloadResult,
    download_file,
)

FAST: dict[str, Any] = {"backoff": 0.001, "max_backoff": 0.01, "min_range_size": 256 * 1024}
SIZE = 2_000_000


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def fetch(url: str, dest: Path, name: str = "m.gguf", **kwargs: Any) -> DownloadResult:
    options = {**FAST, "connections": 1, **kwargs}
    return asyncio.run(download_file(url, dest, name, **options))


def requested_bytes(server: FaultServer, path: str, total: int) -> int:
    """Bytes the client asked for, from the recorded Range headers (no Range = whole file)."""
    out = 0
    for req in server.requests_for(path):
        if req.range is None:
            out += total
        else:
            first, _, last = req.range[len("bytes=") :].partition("-")
            out += (int(last) if last else total - 1) - int(first) + 1
    return out


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def test_plain_download_verifies_and_publishes(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 1)
    seen: list[tuple[int, int | None]] = []
    result = fetch(
        server.add("/m.gguf", data),
        tmp_path,
        expected_size=SIZE,
        expected_sha256=sha256(data),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert result.sha256 == sha256(data) and result.size == SIZE
    assert (result.resumed_from, result.restarted, result.note) == (0, False, None)
    assert (tmp_path / "m.gguf").read_bytes() == data
    assert leftovers(tmp_path) == ["m.gguf"]
    assert seen[-1] == (SIZE, SIZE)


def test_interrupted_then_resumed_fetches_only_the_missing_bytes(
    server: FaultServer, tmp_path: Path
) -> None:
    data = gguf_bytes(SIZE, 2)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", close_after=700_000)
    with pytest.raises(DownloadFailed, match="Gave up"):
        fetch(url, tmp_path, retries=0)
    assert leftovers(tmp_path) == ["m.gguf.part", "m.gguf.part.json"]
    sidecar = json.loads((tmp_path / "m.gguf.part.json").read_text())
    assert sidecar["segments"] == [[0, SIZE, 700_000]]

    result = fetch(url, tmp_path, expected_sha256=sha256(data))
    assert result.resumed_from == 700_000 and not result.restarted
    last = server.requests_for("/m.gguf")[-1]
    assert last.range == f"bytes=700000-{SIZE - 1}"
    assert last.if_range == server.store.etags["/m.gguf"]
    assert requested_bytes(server, "/m.gguf", SIZE) == SIZE + SIZE - 700_000  # 1st ask + rest
    assert server.bytes_sent("/m.gguf") == SIZE
    assert leftovers(tmp_path) == ["m.gguf"]


def test_connection_drops_are_retried_in_the_same_call(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 3)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", close_after=300_000, times=3)
    result = fetch(url, tmp_path, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data)
    ranges = [r.range for r in server.requests_for("/m.gguf")]
    assert ranges == [None, f"bytes=300000-{SIZE - 1}", f"bytes=600000-{SIZE - 1}",
                      f"bytes=900000-{SIZE - 1}"]  # fmt: skip
    assert server.bytes_sent("/m.gguf") == SIZE


def test_server_errors_are_retried_then_succeed(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 4)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", status=500, times=2)
    server.fault("/m.gguf", status=429, retry_after=0, times=1)
    result = fetch(url, tmp_path, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data)
    assert [r.status for r in server.requests_for("/m.gguf")] == [500, 500, 429, 200]


def test_persistent_server_errors_give_a_clear_error(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/m.gguf", gguf_bytes(SIZE, 5))
    server.fault("/m.gguf", status=503, times=None)
    with pytest.raises(DownloadFailed, match=r"after 2 retries: HTTP 503"):
        fetch(url, tmp_path, retries=2)
    assert len(server.requests_for("/m.gguf")) == 3


def test_not_found_names_the_url_and_the_fix(server: FaultServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailed, match=r"404 Not Found for URL http://.*/nope.gguf; check"):
        fetch(server.url("/nope.gguf"), tmp_path)
    assert len(server.requests_for("/nope.gguf")) == 1
    assert leftovers(tmp_path) == []


def test_changed_etag_restarts_with_a_note(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/m.gguf", gguf_bytes(SIZE, 6))
    server.fault("/m.gguf", close_after=500_000)
    with pytest.raises(DownloadFailed):
        fetch(url, tmp_path, retries=0)
    new = gguf_bytes(SIZE, 7)
    server.replace("/m.gguf", new)
    result = fetch(url, tmp_path, expected_sha256=sha256(new))
    assert result.restarted and result.resumed_from == 500_000
    assert result.note is not None and "started over" in result.note
    assert (tmp_path / "m.gguf").read_bytes() == new
    assert server.requests_for("/m.gguf")[-1].status == 200


def test_ignored_range_restarts_from_zero(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 8)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", close_after=500_000)
    with pytest.raises(DownloadFailed):
        fetch(url, tmp_path, retries=0)
    server.fault("/m.gguf", ignore_range=True, no_accept_ranges=True, times=None)
    result = fetch(url, tmp_path, expected_sha256=sha256(data))
    assert result.restarted and "ignores Range" in (result.note or "")
    assert result.sha256 == sha256(data) and leftovers(tmp_path) == ["m.gguf"]


def test_short_body_is_an_error_and_never_published(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/m.gguf", gguf_bytes(SIZE, 9))
    server.fault("/m.gguf", extra_length=1000, times=None)
    with pytest.raises(DownloadFailed, match="promised"):
        fetch(url, tmp_path)
    assert not (tmp_path / "m.gguf").exists()


def test_expected_size_mismatch_is_refused_before_writing(
    server: FaultServer, tmp_path: Path
) -> None:
    url = server.add("/m.gguf", gguf_bytes(SIZE, 10))
    with pytest.raises(DownloadFailed, match=f"reports {SIZE} bytes .* but {SIZE + 1}"):
        fetch(url, tmp_path, expected_size=SIZE + 1)
    assert leftovers(tmp_path) == []


def test_not_enough_disk_space_is_refused_up_front(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/m.gguf", gguf_bytes(SIZE, 11))
    with pytest.raises(InsufficientStorage, match=r"needs .* but only .* free"):
        fetch(url, tmp_path, expected_size=10**15)
    assert server.requests_for("/m.gguf") == [] and leftovers(tmp_path) == []


def test_sha256_mismatch_deletes_the_part(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 12)
    with pytest.raises(ChecksumMismatch) as info:
        fetch(server.add("/m.gguf", data), tmp_path, expected_sha256="ab" * 32)
    assert "ab" * 32 in info.value.message and sha256(data) in info.value.message
    assert leftovers(tmp_path) == []


def test_non_gguf_payload_is_refused(server: FaultServer, tmp_path: Path) -> None:
    url = server.add("/page.gguf", b"<!doctype html>" + b"x" * 300_000)
    with pytest.raises(InvalidModelFile, match="not a GGUF"):
        fetch(url, tmp_path)
    assert leftovers(tmp_path) == []
    result = fetch(url, tmp_path, "page.bin", require_gguf=False)
    assert result.size == 300_015


def test_redirects_are_followed_over_http(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 13)
    server.add("/real.gguf", data)
    server.add("/m.gguf", b"")
    server.fault("/m.gguf", redirect_to="/real.gguf")
    assert fetch(server.url("/m.gguf"), tmp_path).sha256 == sha256(data)


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/m.gguf", "file:///etc/passwd"])
def test_redirect_to_another_scheme_is_refused(
    server: FaultServer, tmp_path: Path, target: str
) -> None:
    url = server.add("/m.gguf", gguf_bytes(1000))
    server.fault("/m.gguf", redirect_to=target)
    with pytest.raises(InvalidRequest, match="Refused a redirect") as info:
        fetch(url, tmp_path)
    assert info.value.code == "unsafe_redirect"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["../m.gguf", "a/m.gguf", "a\\m.gguf", ".m.gguf", "m\x00.gguf"])
def test_file_names_with_paths_are_refused(server: FaultServer, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequest, match="not a plain file name"):
        fetch(server.add("/m.gguf", gguf_bytes(1000)), tmp_path / "d", name)
    assert server.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/m.gguf", "file:///m.gguf", "m.gguf"])
def test_non_http_urls_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidRequest, match="only http:// and https://"):
        fetch(url, tmp_path)


def test_cancel_keeps_the_part_and_resume_finishes(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 14)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", trickle=0.005, trickle_chunk=16_384)

    async def cancel_midway() -> None:
        cancel = asyncio.Event()

        def progress(done: int, total: int | None) -> None:
            if done >= 100_000:
                cancel.set()

        await download_file(
            url, tmp_path, "m.gguf", progress=progress, cancel=cancel, connections=1, **FAST
        )

    with pytest.raises(DownloadCancelled, match="partial file is kept"):
        asyncio.run(cancel_midway())
    assert leftovers(tmp_path) == ["m.gguf.part", "m.gguf.part.json"]
    kept = json.loads((tmp_path / "m.gguf.part.json").read_text())["segments"][0][2]
    assert 100_000 <= kept < SIZE
    result = fetch(url, tmp_path, expected_sha256=sha256(data))
    assert result.resumed_from == kept and result.sha256 == sha256(data)
    assert server.requests_for("/m.gguf")[-1].range == f"bytes={kept}-{SIZE - 1}"


def test_parallel_ranges_build_the_right_file(server: FaultServer, tmp_path: Path) -> None:
    size = 4_000_000
    data = gguf_bytes(size, 15)
    result = fetch(
        server.add("/m.gguf", data), tmp_path, connections=4, expected_sha256=sha256(data)
    )
    assert result.sha256 == sha256(data)
    ranges = sorted(r.range or "" for r in server.requests_for("/m.gguf"))
    assert ranges == ["", "bytes=1000000-1999999", "bytes=2000000-2999999", "bytes=3000000-3999999"]


def test_parallel_range_interrupted_refetches_only_its_rest(
    server: FaultServer, tmp_path: Path
) -> None:
    size = 4_000_000
    data = gguf_bytes(size, 16)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", close_after=150_000, range_start=2_000_000)
    result = fetch(url, tmp_path, connections=4, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data)
    ranges = [r.range for r in server.requests_for("/m.gguf")]
    assert "bytes=2150000-2999999" in ranges and len(ranges) == 5


def test_parallel_download_resumes_every_range(server: FaultServer, tmp_path: Path) -> None:
    size = 4_000_000
    data = gguf_bytes(size, 17)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", close_after=150_000, range_start=3_000_000)
    with pytest.raises(DownloadFailed):
        fetch(url, tmp_path, connections=4, retries=0)
    segments = json.loads((tmp_path / "m.gguf.part.json").read_text())["segments"]
    assert [s[:2] for s in segments] == [[i * 1_000_000, (i + 1) * 1_000_000] for i in range(4)]
    before = len(server.requests_for("/m.gguf"))
    result = fetch(url, tmp_path, connections=4, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data) and result.resumed_from == sum(s[2] for s in segments)
    asked = 0
    for req in server.requests_for("/m.gguf")[before:]:
        first, _, last = (req.range or "bytes=0-").removeprefix("bytes=").partition("-")
        asked += int(last) - int(first) + 1
    assert asked == size - result.resumed_from


def test_tokens_never_reach_logs_errors_or_the_sidecar(
    server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "hf_SECRETtoken123"
    headers = {"Authorization": f"Bearer {secret}"}
    url = server.add("/m.gguf", gguf_bytes(SIZE, 18))
    server.fault("/m.gguf", close_after=200_000)
    server.fault("/m.gguf", status=500)
    with pytest.raises(DownloadFailed) as info:
        fetch(url, tmp_path, headers=headers, retries=1)
    assert secret not in str(info.value)
    assert secret not in (tmp_path / "m.gguf.part.json").read_text()
    result = fetch(url, tmp_path, headers=headers)
    with pytest.raises(DownloadFailed) as missing:
        fetch(server.url("/gone.gguf"), tmp_path, "g.gguf", headers=headers)
    assert secret not in str(missing.value) and secret not in repr(result)
    assert all(r.authorization == f"Bearer {secret}" for r in server.requests)
    assert secret not in caplog.text


# --- The fast path (http.client on worker threads) next to the httpx one ---

# A throwaway self-signed certificate for 127.0.0.1 (EC P-256, valid until 2126), inlined so the
# https test needs neither `cryptography` nor the openssl command line.
TEST_CERT = """-----BEGIN CERTIFICATE-----
MIIBnjCCAUWgAwIBAgIUeL/v+LhJU//u3AaiS+OBs4SnbgowCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLaGVhcnRoLXRlc3QwIBcNMjYxMTI1MTgwNTA2WhgPMjEyNjEx
MDExODA1MDZaMBYxFDASBgNVBAMMC2hlYXJ0aC10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEaujTwynaexcDiMIpWhkQNzTL+G65OhgVMvzGz65zfgZyxaX+
dJE+IhlHFDmfeXc5WcBSbLZQMG8aJZBB0M2LtaNvMG0wHQYDVR0OBBYEFM4NEWCa
S76f9JDxyPrPA0X1sAOsMB8GA1UdIwQYMBaAFM4NEWCaS76f9JDxyPrPA0X1sAOs
MBoGA1UdEQQTMBGHBH8AAAGCCWxvY2FsaG9zdDAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0cAMEQCIFxIBG4MN1qyUlqSPmqIaRYrGAoK8QDX8Kmr6qxYQCHp
AiBbwD8kasHCluCvTOdHgBpVDZXg6HNJ1Zk0WVmHc9bYSg==
-----END CERTIFICATE-----
"""
TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJm9YoUHqZBbmOTaQ
fyzrwGo1+lprmMlUfkgvo21aAKyhRANCAARq6NPDKdp7FwOIwilaGRA3NMv4brk6
GBUy/MbPrnN+BnLFpf50kT4iGUcUOZ95dzlZwFJstlAwbxolkEHQzYu1
-----END PRIVATE KEY-----
"""


class _OneFile(BaseHTTPRequestHandler):
    """Serves one payload for any path, plainly or chunked; records each request target."""

    protocol_version = "HTTP/1.1"
    server: _MiniServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        srv = self.server
        srv.targets.append(self.path)
        self.send_response(200)
        if srv.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step, at = 1, 0
            while at < len(srv.payload):  # uneven chunk sizes, some larger than a read buffer
                piece = srv.payload[at : at + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                at, step = at + len(piece), step * 7 + 13
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(srv.payload)))
            self.end_headers()
            self.wfile.write(srv.payload)


class _MiniServer(ThreadingHTTPServer):
    """For what the fault server does not do: chunked bodies, TLS, acting as a proxy."""

    daemon_threads = True

    def __init__(self, payload: bytes, *, chunked: bool = False, tls: Path | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _OneFile)
        self.payload, self.chunked, self.targets = payload, chunked, list[str]()
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls / "cert.pem", tls / "key.pem")
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        super().__exit__(*exc)


@pytest.mark.slow
def test_chunked_body_of_unknown_size(tmp_path: Path) -> None:
    data = gguf_bytes(1_500_000, 20)
    with _MiniServer(data, chunked=True) as srv:
        result = fetch(f"{srv.base}/m.gguf", tmp_path, connections=4, expected_sha256=sha256(data))
    assert result.size == len(data) and (tmp_path / "m.gguf").read_bytes() == data
    assert srv.targets == ["/m.gguf"] and leftovers(tmp_path) == ["m.gguf"]


@pytest.mark.slow
def test_https_verifies_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = gguf_bytes(SIZE, 21)
    (tmp_path / "cert.pem").write_text(TEST_CERT)
    (tmp_path / "key.pem").write_text(TEST_KEY)
    dest = tmp_path / "out"
    with _MiniServer(data, tls=tmp_path) as srv:
        url = f"{srv.base}/m.gguf"
        with pytest.raises(DownloadFailed, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(url, dest, retries=0)  # self-signed: refused with the default trust store
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
        result = fetch(url, dest, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data) and leftovers(dest) == ["m.gguf"]


@pytest.mark.slow
def test_a_configured_proxy_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = gguf_bytes(SIZE, 22)
    with _MiniServer(data) as proxy:
        for name in ("no", "https", "all", "http"):
            monkeypatch.delenv(f"{name}_proxy", raising=False)
            monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.base)
        result = fetch("http://models.invalid/m.gguf", tmp_path, expected_sha256=sha256(data))
    assert result.sha256 == sha256(data)
    assert proxy.targets == ["http://models.invalid/m.gguf"]  # absolute form: sent to a proxy


def test_redirect_to_another_origin_drops_the_token(server: FaultServer, tmp_path: Path) -> None:
    data = gguf_bytes(SIZE, 23)
    server.add("/real.gguf", data)
    server.add("/m.gguf", b"")
    other = server.url("/real.gguf").replace("127.0.0.1", "localhost")
    server.fault("/m.gguf", redirect_to=other)
    result = fetch(server.url("/m.gguf"), tmp_path, headers={"Authorization": "Bearer hf_x"})
    assert result.sha256 == sha256(data)
    assert [r.authorization for r in server.requests] == ["Bearer hf_x", None]


@pytest.mark.parametrize("connections", [1, 4])
def test_a_caller_client_still_works(server: FaultServer, tmp_path: Path, connections: int) -> None:
    data = gguf_bytes(4_000_000, 24)
    url = server.add("/m.gguf", data)
    server.fault("/m.gguf", close_after=150_000)

    async def run() -> DownloadResult:
        async with httpx.AsyncClient() as client:
            return await download_file(
                url, tmp_path, "m.gguf", expected_sha256=sha256(data), client=client,
                **{**FAST, "connections": connections},
            )  # fmt: skip

    result = asyncio.run(run())
    assert result.sha256 == sha256(data) and leftovers(tmp_path) == ["m.gguf"]
    assert server.bytes_sent("/m.gguf") == len(data)
