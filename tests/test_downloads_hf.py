"""Hugging Face resolution against a fake Hub served on loopback (HfApi really talks to it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fault_server import FaultServer, gguf_bytes, sha256

from hearth.downloads.hf import HfResolution, pick_files, quant_of, resolve_hf
from hearth.downloads.transfer import download_file
from hearth.errors import InvalidRequest, NotFound

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
