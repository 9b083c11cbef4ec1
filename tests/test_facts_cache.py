"""GGUF header facts are read once per file version, kept by file identity without a small cap,
and dropped with the models that used them (issue 22, point 1).

Before the fix the cache was an LRU of 64 entries keyed by path: listing 100 hand-written
models read all 100 headers again on every list.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from support.gguf_factory import gguf_bytes

from hearth.models import facts as facts_module
from hearth.models.facts import facts
from hearth.services import Services

GGUF = gguf_bytes(name="Tiny", context_length=4096)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every header read, by path (the real reader does the reading)."""
    seen: list[str] = []
    real = facts_module.read_gguf_header

    def counted(path: Any, **kwargs: Any) -> Any:
        seen.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(facts_module, "read_gguf_header", counted)
    cache = getattr(facts_module, "HEADERS", None)  # (the code before issue 22 had none)
    if cache is not None:
        cache.keep_only(set())  # start empty: other tests share the process
    return seen


def _hand_written(home: Path, count: int) -> list[Path]:
    files = []
    for i in range(count):
        folder = home / "models" / f"hand-{i:03d}"
        folder.mkdir(parents=True)
        (folder / "model.json").write_text(json.dumps({"name": f"Hand {i}"}), encoding="utf-8")
        (folder / "model.gguf").write_bytes(GGUF)
        files.append(folder / "model.gguf")
    return files


def test_each_header_is_read_once_however_many_models(
    services: Services, home: Path, reads: list[str]
) -> None:
    _hand_written(home, 100)
    for _ in range(3):
        entries = services.store.list()
        assert {facts(e).context_length for e in entries} == {4096}
    assert len(reads) == 100 == len(set(reads))


def test_hard_links_share_one_read_and_a_new_version_is_read_again(
    services: Services, home: Path, reads: list[str]
) -> None:
    (first,) = _hand_written(home, 1)
    other = home / "models" / "linked"
    other.mkdir()
    (other / "model.json").write_text("{}", encoding="utf-8")
    os.link(first, other / "model.gguf")
    assert {facts(e).context_length for e in services.store.list()} == {4096}
    assert len(reads) == 1
    time.sleep(0.01)  # a new mtime, whatever the clock's tick
    replaced = first.with_name(".new.gguf")
    replaced.write_bytes(gguf_bytes(name="Tiny", context_length=8192))
    os.replace(replaced, first)
    contexts = {e.id: facts(e).context_length for e in services.store.list()}
    assert contexts == {"hand-000": 8192, "linked": 4096}
    assert len(reads) == 2


def test_headers_of_models_no_longer_listed_are_dropped(
    services: Services, home: Path, reads: list[str]
) -> None:
    files = _hand_written(home, 10)
    asyncio.run(services.models_list_body())
    assert len(facts_module.HEADERS) == 10
    for path in files[:4]:
        for child in path.parent.iterdir():
            child.unlink()
        path.parent.rmdir()
    asyncio.run(services.models_list_body())
    assert len(facts_module.HEADERS) == 6
