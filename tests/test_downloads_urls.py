"""Source parsing and validation: URLs, file names, Hugging Face references."""

from __future__ import annotations

import pytest

from hearth.core.errors import InvalidRequest
from hearth.downloads.urls import (
    HfRef,
    classify_source,
    filename_from_url,
    parse_hf_ref,
    redact_url,
    validate_filename,
    validate_url,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
         HfRef("bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M")),
        ("huggingface.co/unsloth/Qwen3-8B-GGUF", HfRef("unsloth/Qwen3-8B-GGUF")),
        ("https://huggingface.co/unsloth/Qwen3-8B-GGUF:q8_0",
         HfRef("unsloth/Qwen3-8B-GGUF", "q8_0")),
        ("TheBloke/Mistral-7B-GGUF:IQ4_XS", HfRef("TheBloke/Mistral-7B-GGUF", "IQ4_XS")),
        ("https://huggingface.co/a/b/resolve/main/x.gguf", None),
        ("https://example.com/a/b", None),
        ("ftp://hf.co/a/b", None),
        ("a/../b", None),
        ("just-a-name", None),
    ],
)  # fmt: skip
def test_parse_hf_ref(text: str, expected: HfRef | None) -> None:
    assert parse_hf_ref(text) == expected


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("owner/repo", "hf"),
        ("hf.co/owner/repo:Q4_K_M", "hf"),
        ("https://example.com/m.gguf", "url"),
        ("https://huggingface.co/o/r/resolve/main/m.gguf", "url"),
        ("./owner/repo", "path"),
        ("/models/m.gguf", "path"),
        ("dir/m.gguf", "path"),
        ("~/m.gguf", "path"),
        ("C:\\models\\m.gguf", "path"),
    ],
)
def test_classify_source(text: str, kind: str) -> None:
    assert classify_source(text) == kind


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "x\x00y", "a..b", " x", "x\n"]
)
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest, match="not a plain file name"):
        validate_filename(name)


def test_file_name_from_url() -> None:
    assert filename_from_url("https://h/x/Model%20Q4.gguf?download=1") == "Model Q4.gguf"
    with pytest.raises(InvalidRequest, match="pass the file name"):
        filename_from_url("https://h/x/")
    with pytest.raises(InvalidRequest, match="not a plain file name"):
        filename_from_url("https://h/x/..%2Fetc%2Fpasswd")


@pytest.mark.parametrize("url", ["ftp://h/x", "file:///etc/passwd", "h/x", "", "http:///x"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_url(url)


def test_redact_url_drops_credentials_and_query() -> None:
    assert redact_url("https://u:p@h.example:8443/a/b.gguf?sig=SECRET#x") == (
        "https://h.example:8443/a/b.gguf?…"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("model.json", "Hearth uses that name itself"),
        ("Model.JSON", "Hearth uses that name itself"),
        ("m.gguf.part", "Hearth uses that name itself"),
        ("m.gguf.PART.json", "Hearth uses that name itself"),
        (".env", "starts with a dot"),
        ("a" * 246, "exceed the file system's 255-byte limit"),
        ("é" * 123 + ".gguf", "exceed"),  # 251 bytes in UTF-8, though 128 characters
        ("evil\u202efpp.gguf", "bidirectional"),
        ("x\u200e.gguf", "bidirectional"),
        ("x\u200f.gguf", "bidirectional"),
        ("x\u2066y\u2069.gguf", "bidirectional"),
        ("x\u200b.gguf", "invisible"),
        ("x\x1b[31m.gguf", "control"),
        ("x\x85.gguf", "control"),  # C1
        ("x\x9b31m.gguf", "control"),  # C1 CSI
        ("x\u2028.gguf", "control"),
    ],
)
def test_reserved_long_and_disguised_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match="not a plain file name") as caught:
        validate_filename(name)
    assert reason in caught.value.message
    assert caught.value.message.isprintable()
    assert len(caught.value.message) < 400


@pytest.mark.parametrize("name", ["a" * 245, "Qwen3-8B.Q4_K_M.gguf", "模型.gguf", "m.json", "part"])
def test_plain_names_pass(name: str) -> None:
    assert validate_filename(name) == name


def test_url_file_names_cannot_be_hearths_own() -> None:
    for url in ("https://h/x/model.json", "https://h/x/m.gguf.part", "https://h/%E2%80%AEx.gguf"):
        with pytest.raises(InvalidRequest, match="not a plain file name"):
            filename_from_url(url)
