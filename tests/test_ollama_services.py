"""The service side of the Ollama face (`services/ollama_names.py`, `loading.py`,
`model_info.py`): names, capabilities and model cards, on a real home and store, no server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import FAKE_GGUF, make_model
from support.gguf_factory import write_gguf

from hearth.core.errors import InvalidRequest
from hearth.models.store import ModelEntry
from hearth.services import Services, loading, model_info, ollama_names

THINKING = "{% for m in messages %}{{ m.content }}{% endfor %}<think>"


def _entry(services: Services, model_id: str) -> ModelEntry:
    return services.store.get(model_id)


def test_names_resolve_by_id_latest_ollama_name_and_recorded_name(
    home: Path, services: Services
) -> None:
    make_model(home, "plain", {}, {"plain.gguf": FAKE_GGUF})
    make_model(home, "qwen2.5-0.5b", {}, {"q.gguf": FAKE_GGUF})
    hand = {"metadata": {"ollama": {"name": "hf.co/someone/hand:Q4"}}}
    make_model(home, "hand", hand, {"h.gguf": FAKE_GGUF})
    copied = {"metadata": {"ollama": {"name": "qwen2.5:0.5b"}}}  # its source's, kept by a copy
    make_model(home, "copy", copied, {"c.gguf": FAKE_GGUF})

    def find(name: str) -> str | None:
        entry = asyncio.run(ollama_names.find(services, name))
        return None if entry is None else entry.id

    assert find("plain") == find("plain:latest") == find("PLAIN:LATEST".lower()) == "plain"
    assert find("qwen2.5:0.5b") == "qwen2.5-0.5b"
    assert find("hf.co/someone/hand:Q4") == find("HF.CO/someone/hand:q4") == "hand"
    assert find("nothing") is None and find("../plain") is None
    names = {e.id: ollama_names.ollama_name(_entry(services, e.id)) for e in services.store.list()}
    assert names == {
        "plain": "plain:latest",
        "qwen2.5-0.5b": "qwen2.5-0.5b:latest",
        "hand": "hf.co/someone/hand:Q4",
        "copy": "copy:latest",  # a copy's recorded name is its source's: not its own
    }
    assert ollama_names.new_id("mine:latest") == "mine"
    assert ollama_names.new_id("qwen2.5:0.5b") == "qwen2.5-0.5b"


def test_a_pulled_name_is_recorded_only_when_it_is_no_library_name(
    home: Path, services: Services
) -> None:
    make_model(home, "repo", {}, {"r.gguf": FAKE_GGUF})
    try:
        asyncio.run(ollama_names.record_name(services, "repo", "llama3.2"))  # a library name
        assert _entry(services, "repo").info.metadata.get("ollama") is None  # type: ignore[union-attr]
        asyncio.run(ollama_names.record_name(services, "repo", "hf.co/o/repo:Q8_0"))
        assert asyncio.run(ollama_names.find(services, "hf.co/o/repo:Q8_0")) is not None
    finally:
        asyncio.run(services.stop())


def test_capabilities_are_checked_before_anything_loads(home: Path, services: Services) -> None:
    folder = make_model(home, "thinker", {"metadata": {"system_prompt": "Be brief."}})
    write_gguf(folder / "thinker.gguf", arch="qwen3", chat_template=THINKING)
    folder = make_model(home, "plain", {})
    write_gguf(folder / "plain.gguf", chat_template="{{ messages }}")
    thinker, plain = _entry(services, "thinker"), _entry(services, "plain")

    def check(entry: ModelEntry, *, images: bool = False, think: bool | str | None = None) -> bool:
        return asyncio.run(
            loading.check_capabilities(entry, "name:tag", images=images, think=think)
        )

    assert check(thinker, think="high") is True
    assert check(plain) is False and check(plain, think=False) is False
    with pytest.raises(InvalidRequest, match='"name:tag" does not support thinking') as info:
        check(plain, think=True)
    assert info.value.param == "think"
    with pytest.raises(InvalidRequest, match="no vision projector") as info:
        check(thinker, images=True)
    assert info.value.param == "images"
    assert loading.system_prompt(thinker) == "Be brief." and loading.system_prompt(plain) is None


def test_a_models_card_reads_its_files(home: Path, services: Services) -> None:
    folder = make_model(home, "m", {})
    write_gguf(folder / "m.gguf", arch="llama", chat_template="{{ messages }}", size_label="1M")
    card = asyncio.run(model_info.card_off_loop(_entry(services, "m"), header=True))
    assert card.facts.architecture == "llama" and card.facts.size_label == "1M"
    assert card.facts.header and card.capabilities() == ["completion", "tools"]
    assert card.tool_format() == "hearth"  # the template has no place for tools
    assert card.changed_at == (folder / "model.json").stat().st_mtime
    assert len(card.digest) == 64 and card.digest == model_info.digest(_entry(services, "m"))
    os.utime(folder / "m.gguf", ns=(1, 1))  # another version of the file: another digest
    assert model_info.digest(_entry(services, "m")) != card.digest
    try:
        assert asyncio.run(model_info.running_cards(services)) == []  # nothing loaded
    finally:
        asyncio.run(services.stop())
