"""Hugging Face resolution against a fake Hub on loopback, and against hostile or broken ones."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fault_server import FaultServer, gguf_bytes, sha256

from hearth.core.errors import Forbidden, InvalidRequest, NotFound
from hearth.downloads.common import DownloadFailed
from hearth.downloads.hf import HfResolution, pick_files, quant_of, resolve_hf
from hearth.downloads.transfer import download_file

TINY = {
    "README.md": b"# tiny",
    "tiny-Q2_K.gguf": gguf_bytes(3000, 1),
    "tiny-Q4_K_M.gguf": gguf_bytes(5000, 2),
    "tiny-Q8_0.gguf": gguf_bytes(9000, 3),
    "mmproj-tiny-Q8_0.gguf": gguf_bytes(700, 4),
    "mmproj-tiny-f16.gguf": gguf_bytes(800, 5),
}
SPLIT = {
    "Q4_K_M/big-Q4_K_M-00002-of-00003.gguf": gguf_bytes(2000, 6),
    "Q4_K_M/big-Q4_K_M-00001-of-00003.gguf": gguf_bytes(2000, 7),
    "Q4_K_M/big-Q4_K_M-00003-of-00003.gguf": gguf_bytes(1000, 8),
    "big-Q8_0.gguf": gguf_bytes(4000, 9),
}
NO_DEFAULT = {f"m.{q}.gguf": gguf_bytes(100, i) for i, q in enumerate(["Q3_K_M", "Q5_K_M", "Q8_0"])}


@pytest.fixture
def hub() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        srv.add_hf_repo("acme/tiny-GGUF", TINY)
        srv.add_hf_repo("acme/big-GGUF", SPLIT)
        srv.add_hf_repo("acme/odd-GGUF", NO_DEFAULT)
        srv.add_hf_repo("acme/plain", {"config.json": b"{}"})
        yield srv


def resolve(hub: FaultServer, ref: str, token: str | None = "") -> HfResolution:
    return asyncio.run(resolve_hf(ref, endpoint=hub.base, token=token))


def test_default_quant_and_preferred_mmproj(hub: FaultServer) -> None:
    res = resolve(hub, "acme/tiny-GGUF")
    assert res.quant == "Q4_K_M" and res.note is None
    assert [f.filename for f in res.files] == ["tiny-Q4_K_M.gguf", "mmproj-tiny-f16.gguf"]
    model = res.files[0]
    assert model.size == 5000 and model.sha256 == sha256(TINY["tiny-Q4_K_M.gguf"])
    assert model.url == f"{hub.base}/acme/tiny-GGUF/resolve/{res.revision}/tiny-Q4_K_M.gguf"
    assert model.headers is None


def test_explicit_quant_is_case_insensitive(hub: FaultServer) -> None:
    res = resolve(hub, "hf.co/acme/tiny-GGUF:q8_0")
    assert res.quant == "Q8_0"
    assert [f.filename for f in res.files] == ["tiny-Q8_0.gguf", "mmproj-tiny-f16.gguf"]


def test_missing_quant_lists_the_available_ones(hub: FaultServer) -> None:
    with pytest.raises(
        NotFound, match=r"'Q6_K' is not in acme/tiny-GGUF; available: Q2_K, Q4_K_M, Q8_0"
    ):
        resolve(hub, "acme/tiny-GGUF:Q6_K")


def test_closest_quant_when_the_default_is_missing(hub: FaultServer) -> None:
    res = resolve(hub, "huggingface.co/acme/odd-GGUF")
    assert res.quant == "Q5_K_M" and "closest" in (res.note or "")


def test_split_model_includes_every_part_in_order(hub: FaultServer) -> None:
    res = resolve(hub, "acme/big-GGUF")
    assert [f.filename for f in res.files] == [
        "big-Q4_K_M-00001-of-00003.gguf",
        "big-Q4_K_M-00002-of-00003.gguf",
        "big-Q4_K_M-00003-of-00003.gguf",
    ]
    assert res.files[0].url.endswith(
        "/resolve/" + res.revision + "/Q4_K_M/big-Q4_K_M-00001-of-00003.gguf"
    )


def test_split_model_with_a_missing_part_is_refused() -> None:
    paths = ["x-Q4_K_M-00001-of-00003.gguf", "x-Q4_K_M-00003-of-00003.gguf"]
    with pytest.raises(NotFound, match="missing parts"):
        pick_files("a/b", paths, None)


def test_repos_without_gguf_or_unknown_are_clear_errors(hub: FaultServer) -> None:
    with pytest.raises(NotFound, match=r"no \.gguf files"):
        resolve(hub, "acme/plain")
    with pytest.raises(NotFound, match="was not found"):
        resolve(hub, "acme/missing")
    with pytest.raises(InvalidRequest, match="not a Hugging Face reference"):
        resolve(hub, "https://example.com/x.gguf")


def test_quant_names_are_read_from_file_names() -> None:
    assert quant_of("Llama-3.2-1B-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_of("model.iq4_xs.gguf") == "IQ4_XS"
    assert quant_of("Qwen3-8B-UD-Q4_K_XL.gguf") == "Q4_K_XL"
    assert quant_of("gemma-3-4b-it-bf16.gguf") == "BF16"
    assert quant_of("Qwen2.5-0.5B.gguf") is None


def test_hf_endpoint_and_token_from_the_environment(
    hub: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "hf_TOPsecret987"
    monkeypatch.setenv("HF_ENDPOINT", hub.base)
    monkeypatch.setenv("HF_TOKEN", secret)
    res = asyncio.run(resolve_hf("acme/tiny-GGUF:Q2_K"))
    spec = res.files[0]
    assert spec.headers == {"Authorization": f"Bearer {secret}"}
    assert secret not in repr(spec) and secret not in str(spec.to_source())
    result = asyncio.run(
        download_file(
            spec.url, tmp_path, spec.filename, expected_size=spec.size,
            expected_sha256=spec.sha256, headers=spec.headers,
        )
    )  # fmt: skip
    assert result.sha256 == sha256(TINY["tiny-Q2_K.gguf"])
    downloads = hub.requests_for(hub.hf_path("acme/tiny-GGUF", "tiny-Q2_K.gguf"))
    assert [r.authorization for r in downloads] == [f"Bearer {secret}"]
    assert secret not in caplog.text and secret not in repr(result)


# ---- a hostile or broken Hub (raw asyncio servers on loopback) ------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def json_reply(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
    return (
        head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )


def replying(payload: bytes) -> Handler:
    """A handler that reads one request head and answers `payload` (a whole HTTP response)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(payload)
        await writer.drain()
        writer.close()

    return handle


async def with_hub(handler: Handler, ref: str = "acme/x-GGUF", **kwargs: Any) -> HfResolution:
    """Resolve `ref` against a raw Hub; every test is bounded so a hang fails instead of waiting.
    Each connection's writer is closed when its handler ends (or is cancelled as the loop ends):
    an unclosed one is a ResourceWarning, and the suite makes those errors."""

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        call = resolve_hf(ref, endpoint=f"http://127.0.0.1:{port}", token="", **kwargs)
        return await asyncio.wait_for(call, 30)
    finally:
        server.close()


def listing(sha: str = "a" * 40, **fields: object) -> bytes:
    info: dict[str, object] = {"id": "acme/x-GGUF", "sha": sha, "siblings": [
        {"rfilename": "x-Q4_K_M.gguf", "size": 10, "lfs": {"size": 10, "sha256": "b" * 64}},
    ]}  # fmt: skip
    info.update(fields)
    return json.dumps({k: v for k, v in info.items() if v is not None}).encode()


def test_a_hub_that_never_answers_fails_within_the_timeout() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # never answers; returns when the client gives up

    with pytest.raises(DownloadFailed, match=r"did not answer for acme/x-GGUF within 0\.3 s"):
        asyncio.run(with_hub(stall, timeout=0.3))


@pytest.mark.slow
def test_a_hub_that_drips_headers_hits_the_total_deadline() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):  # a header line every 0.1 s: no single read times out
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    with pytest.raises(DownloadFailed, match="did not answer"):
        asyncio.run(with_hub(drip, timeout=0.5))


def test_a_stalled_listing_can_be_cancelled() -> None:
    """Cancelling a pull (SIGTERM, a client gone) ends the Hub call at once: no thread holds it."""
    started = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started.set()
        await reader.read(-1)

    async def main() -> None:
        task = asyncio.create_task(with_hub(stall, timeout=600))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_an_oversized_listing_is_refused_before_parsing() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):  # 640 MiB if nobody stopped reading
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()

    with pytest.raises(DownloadFailed, match="larger than 1 MiB"):
        asyncio.run(with_hub(endless, max_listing_bytes=1024 * 1024))
    stated = json_reply(b"", extra="X-Pad: 1\r\n").replace(
        b"Content-Length: 0", b"Content-Length: 999999999999"
    )
    with pytest.raises(DownloadFailed, match="larger than 1 MiB"):
        asyncio.run(with_hub(replying(stated), max_listing_bytes=1024 * 1024))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\xff\xfe not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (listing(id=None), "no 'id'"),
        (listing(sha=None), "commit 'sha'"),
        (listing(sha="a" * 40 + "\r\nX-Evil: 1"), "commit 'sha'"),
        (listing(sha="../../etc/passwd"), "commit 'sha'"),
        (listing(siblings=None), "no 'siblings'"),
        (listing(siblings={"x": 1}), "no 'siblings'"),
        (listing(siblings=[{"size": 3}]), "entry 0 of 'siblings'"),
        (listing(siblings=[{"rfilename": "a.gguf", "size": -5}]), "entry 0"),
        (listing(siblings=[{"rfilename": "a", "lfs": {"size": 1, "sha256": "z"}}]), "entry 0"),
    ],
)  # fmt: skip
def test_malformed_listings_are_clear_errors(body: bytes, problem: str) -> None:
    with pytest.raises(DownloadFailed, match=re.escape(problem)) as caught:
        asyncio.run(with_hub(replying(json_reply(body))))
    assert "malformed" in caught.value.message and "X-Evil" not in caught.value.message


def test_hub_error_statuses_do_not_quote_the_server() -> None:
    evil = (
        b"HTTP/1.1 500 [link=https://evil.example]click[/link]\x1b[31m\r\nContent-Length: 0\r\n\r\n"
    )
    with pytest.raises(DownloadFailed, match="answered HTTP 500") as caught:
        asyncio.run(with_hub(replying(evil)))
    assert "evil" not in caught.value.message and "\x1b" not in caught.value.message
    gated = json_reply(b"{}", "403 Forbidden", "X-Error-Code: GatedRepo\r\n")
    with pytest.raises(Forbidden, match="gated"):
        asyncio.run(with_hub(replying(gated)))


@pytest.mark.slow
def test_a_hundred_thousand_file_listing_gives_a_short_error() -> None:
    siblings = [{"rfilename": f"shard-{i:06d}.gguf", "size": 1} for i in range(100_000)]
    body = listing(siblings=siblings)
    with pytest.raises(InvalidRequest, match="and 99,992 more") as caught:
        asyncio.run(with_hub(replying(json_reply(body))))
    assert len(caught.value.message) < 1000


def test_hostile_names_in_a_listing_are_refused_and_shown_escaped() -> None:
    sibling = {"rfilename": "evil\u202egguf.Q4_K_M.gguf", "size": 1}
    with pytest.raises(InvalidRequest, match="bidirectional") as caught:
        asyncio.run(with_hub(replying(json_reply(listing(siblings=[sibling])))))
    assert "\u202e" not in caught.value.message and "\\u202e" in caught.value.message
    for path in ("a/../x-Q4_K_M.gguf", "a//x-Q4_K_M.gguf"):
        with pytest.raises(DownloadFailed, match="unsafe path"):
            asyncio.run(with_hub(replying(json_reply(listing(siblings=[{"rfilename": path}])))))


def test_the_token_goes_to_the_hub_origin_only(hub: FaultServer) -> None:
    res = resolve(hub, "acme/tiny-GGUF:Q2_K", token="hf_secret")
    assert res.files[0].headers == {"Authorization": "Bearer hf_secret"}  # a loopback test Hub
    listed = [r for r in hub.requests if r.path.startswith("/api/models/")]
    assert [r.authorization for r in listed] == ["Bearer hf_secret"]
