from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.server import HearthProcess, ThreadedServer

from hearth.core.config import Settings, load_settings
from hearth.services import Services


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test gets its own home; no test ever reads a developer's ~/hearth or settings."""
    for name in list(__import__("os").environ):
        if name.startswith("HEARTH_") and name != "HEARTH_TEST_CACHE":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HEARTH_STARTER", "0")  # `hearth serve` children: no starter download
    # a bare name that is no model id is an Ollama name: never ask the real registry
    monkeypatch.setenv("HEARTH_OLLAMA_REGISTRY", "http://127.0.0.1:9")


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """A `hearth serve` child a test started and did not stop (one it killed, one expected to
    exit whose output it read) is stopped and its pipe closed as the test ends. Those of wider
    fixtures (started before this one) are their fixtures' to close."""
    before = len(HearthProcess.started)
    yield
    while len(HearthProcess.started) > before:
        HearthProcess.started.pop().close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    (path / "models").mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    return load_settings(home=home, env={})


@pytest.fixture
def services(settings: Settings) -> Services:
    return Services.create(settings)


@pytest.fixture
def server(services: Services) -> Iterator[ThreadedServer]:
    with ThreadedServer(services) as srv:
        yield srv


def make_model(
    home: Path,
    folder: str,
    raw: dict[str, Any] | str | None = None,
    files: dict[str, bytes] | None = None,
) -> Path:
    """Write models/<folder>/ with a model.json (a dict, or raw text) and files."""
    path = home / "models" / folder
    path.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        text = raw if isinstance(raw, str) else json.dumps(raw)
        (path / "model.json").write_text(text, encoding="utf-8")
    for name, data in (files or {}).items():
        (path / name).write_bytes(data)
    return path


FAKE_GGUF = b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 16
