"""Ollama names: which text is one, and the Hearth id each maps to."""

from __future__ import annotations

import pytest

from hearth.core.errors import InvalidRequest
from hearth.models.ids import is_valid_id
from hearth.models.names import OllamaRef, ollama_model_id, parse_ollama_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llama3.2", OllamaRef("library", "llama3.2", "latest")),
        ("  qwen2.5:0.5b ", OllamaRef("library", "qwen2.5", "0.5b")),
        ("Llama3.2:3b-instruct-q4_K_M", OllamaRef("library", "llama3.2", "3b-instruct-q4_K_M")),
        ("ollama://llama3.2", OllamaRef("library", "llama3.2", "latest", explicit=True)),
        ("ollama.com/library/gemma3:4b", OllamaRef("library", "gemma3", "4b", explicit=True)),
        ("https://ollama.com/jo/tool:7b", OllamaRef("jo", "tool", "7b", explicit=True)),
        ("registry.ollama.ai/Jo/Tool", OllamaRef("jo", "tool", "latest", explicit=True)),
        ("http://www.ollama.com/phi4", OllamaRef("library", "phi4", "latest", explicit=True)),
    ],
)
def test_names_that_are_ollama_names(text: str, expected: OllamaRef) -> None:
    assert parse_ollama_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "owner/repo",  # a Hugging Face reference, as before
        "bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "jo/tool:7b",  # user namespaces need the ollama.com/ or ollama:// prefix
        "hf.co/owner/repo",
        "https://example.com/m.gguf",
        "model.gguf",
        "./llama3.2",
        "",
        ":latest",
        "name:",
        "a..b",
        "ollama.com/a/b/c",
        "-dash",
        "x" * 81,
        "name@sha256:abc",
        "na me",
    ],
)
def test_text_that_is_not_an_ollama_name(text: str) -> None:
    assert parse_ollama_ref(text) is None


@pytest.mark.parametrize(
    ("text", "model_id"),
    [
        ("llama3.2", "llama3.2"),
        ("llama3.2:latest", "llama3.2"),
        ("LLAMA3.2:Latest", "llama3.2"),
        ("qwen2.5:0.5b", "qwen2.5-0.5b"),
        ("llama3.2:3b-instruct-q4_K_M", "llama3.2-3b-instruct-q4_k_m"),
        ("ollama.com/jo/tool:7b", "jo-tool-7b"),
        ("ollama://library/phi4", "phi4"),
        ("mixtral:8x7b", "mixtral-8x7b"),
    ],
)
def test_model_ids(text: str, model_id: str) -> None:
    assert ollama_model_id(text) == model_id
    assert is_valid_id(model_id)


def test_ids_stay_within_the_id_grammar_for_long_names() -> None:
    ref = OllamaRef("a" * 80, "b" * 80, "c" * 128, explicit=True)
    model_id = ollama_model_id(ref)
    assert is_valid_id(model_id) and len(model_id) <= 128 and model_id.startswith("a")


def test_not_a_name_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match="not an Ollama model name"):
        ollama_model_id("owner/repo")
