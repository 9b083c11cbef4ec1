"""Finding models: the Hub's GGUF search through a fake Hub, and the shipped Ollama catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources

import pytest
from support.ollama_registry import HubModel, HubSearch
from support.server import free_port
from support.silent_server import SilentServer

from hearth.core.errors import DownloadFailed
from hearth.downloads.search import search_hub, search_library
from hearth.models.names import parse_ollama_ref

MODELS = [
    HubModel(
        "acme/Llama-3.2-1B-GGUF",
        1200,
        40,
        [
            "README.md",
            "Llama-3.2-1B.Q8_0.gguf",
            "Llama-3.2-1B.Q4_K_M.gguf",
            "sub/Llama-3.2-1B.IQ2_XS.gguf",
            "mmproj-Llama-3.2-1B-f16.gguf",
        ],
    ),
    HubModel("bob/llama-3.2-3b-GGUF", 9000, 3, ["big-Q5_K_M-00001-of-00002.gguf",
                                                 "big-Q5_K_M-00002-of-00002.gguf"]),
    HubModel("carol/llama-safetensors", 10**6, 500, ["model.safetensors"]),
    HubModel("dave/Qwen2.5-GGUF", 50, 1, ["qwen-Q4_0.gguf"]),
]  # fmt: skip


@pytest.mark.slow
def test_search_hub_lists_gguf_repos_by_downloads_with_their_quants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with HubSearch(MODELS) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.base)  # read at call time
        rows = search_hub("llama", limit=5, token="hf_test")
        (query,) = hub.queries
    assert rows == [
        {
            "id": "bob/llama-3.2-3b-GGUF",
            "downloads": 9000,
            "likes": 3,
            "quantizations": ["Q5_K_M"],
            "vision": False,
            "source": "bob/llama-3.2-3b-GGUF",
        },
        {
            "id": "acme/Llama-3.2-1B-GGUF",
            "downloads": 1200,
            "likes": 40,
            "quantizations": ["IQ2_XS", "Q4_K_M", "Q8_0"],
            "vision": True,
            "source": "acme/Llama-3.2-1B-GGUF",
        },
    ]
    assert query["search"] == ["llama"] and query["filter"] == ["gguf"]
    assert query["sort"] == ["downloads"] and query["limit"] == ["5"]
    assert {"downloads", "likes", "siblings"} <= set(query["expand"])  # one call, no per-repo


@pytest.mark.slow
def test_search_hub_takes_an_explicit_endpoint_and_caps_the_limit() -> None:
    with HubSearch(MODELS) as hub:
        rows = search_hub("qwen", limit=10_000, endpoint=hub.base + "/")
        (query,) = hub.queries
    assert [r["id"] for r in rows] == ["dave/Qwen2.5-GGUF"] and query["limit"] == ["100"]


@pytest.mark.slow
def test_a_hub_that_answers_an_error_is_a_clear_error() -> None:
    with HubSearch(MODELS) as hub, pytest.raises(DownloadFailed) as caught:
        search_hub("llama", endpoint=f"{hub.base}/not-a-hub")
    message = caught.value.message
    assert message.startswith("Could not search the Hugging Face Hub") and "HF_ENDPOINT" in message


def test_search_library_ranks_names_before_descriptions() -> None:
    rows = search_library("qwen")
    names = [r["name"] for r in rows]
    assert names[:2] == ["qwen2.5", "qwen2.5-coder"] and "qwq" in names  # described as Qwen's
    assert names.index("qwq") > names.index("qwen3")
    first = rows[0]
    assert first["sizes"][:2] == ["0.5b", "1.5b"] and first["source"] == "qwen2.5"
    assert search_library("LLAMA3.2")[0]["name"] == "llama3.2"  # the exact name first
    assert [r["name"] for r in search_library("embedding", limit=2)] == [
        "nomic-embed-text",
        "mxbai-embed-large",
    ]
    assert search_library("no-such-model-anywhere") == []


def test_the_catalog_is_shipped_and_every_entry_is_pullable() -> None:
    text = resources.files("hearth.downloads").joinpath("ollama_library.json").read_text()
    catalog = json.loads(text)["models"]
    everything = search_library()
    assert len(everything) == len(catalog) >= 35
    names = {r["name"] for r in everything}
    assert {"llama3.2", "qwen2.5", "gemma3", "phi4", "mistral", "deepseek-r1", "llava"} <= names
    for row in everything:
        assert parse_ollama_ref(row["source"]) is not None, row
        for size in row["sizes"]:
            assert parse_ollama_ref(f"{row['name']}:{size}") is not None, (row, size)
        assert row["description"] and "\n" not in row["description"]


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://127.0.0.1:{port}", "the connection was refused"),
        ("http://nonexistent.invalid", "the name 'nonexistent.invalid' does not resolve"),
    ],
)
def test_an_unreachable_hub_is_one_clear_line_at_once(endpoint: str, reason: str) -> None:
    """No retries: huggingface_hub's client printed five 'Retrying in 8s' pairs over ~25 s."""
    url = endpoint.format(port=free_port())  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "hearth", "search", "qwen"],
        capture_output=True, text=True, timeout=20, env={**os.environ, "HF_ENDPOINT": url},
    )  # fmt: skip
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"Error: Could not search the Hugging Face Hub at {url}: {reason}")
    assert "HF_ENDPOINT" in lines[0] and "Retry" not in lines[0]


def _answering(body: bytes) -> SilentServer:
    """A Hub that answers every request 200 with `body`."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return SilentServer(reply=head.encode() + b"\r\nConnection: close\r\n\r\n" + body)


def test_a_hub_that_answers_nonsense_is_a_clear_error() -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b"not json", b'{"id": "x"}'):
        with _answering(body) as hub, pytest.raises(DownloadFailed) as caught:
            search_hub("llama", endpoint=hub.base)
        assert caught.value.message.endswith("not a list of models. Check HF_ENDPOINT.")
    odd = [{"id": 5}, "x", {"id": "a/b", "downloads": True, "siblings": 3}]
    with _answering(json.dumps(odd).encode()) as hub:
        assert search_hub("llama", endpoint=hub.base) == [
            {"id": "a/b", "downloads": None, "likes": None, "quantizations": [], "vision": False,
             "source": "a/b"},
        ]  # fmt: skip
