"""The soak bench's memory probe is off on a normal server: no SIGUSR1 handler unless the
environment names a folder *and* tracemalloc is tracing (the bench sets both)."""

from __future__ import annotations

import signal
import tracemalloc
from pathlib import Path

import pytest

from hearth.server import memdebug


def test_off_without_the_variable_or_without_tracing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    monkeypatch.delenv(memdebug.ENV, raising=False)
    assert memdebug.install() is False
    monkeypatch.setenv(memdebug.ENV, str(tmp_path / "dumps"))
    assert not tracemalloc.is_tracing()
    assert memdebug.install() is False
    assert signal.getsignal(signal.SIGUSR1) == before
    assert not (tmp_path / "dumps").exists()


@pytest.mark.slow
def test_on_it_writes_the_baseline_then_the_growth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    monkeypatch.setenv(memdebug.ENV, str(tmp_path))
    tracemalloc.start(4)
    try:
        assert memdebug.install() is True
        signal.raise_signal(signal.SIGUSR1)
        kept = [bytearray(1000) for _ in range(100)]
        signal.raise_signal(signal.SIGUSR1)
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, before)
    assert "baseline taken" in (tmp_path / "dump-001.txt").read_text()
    second = (tmp_path / "dump-002.txt").read_text()
    assert "growth since the baseline" in second and "test_memdebug.py" in second
    assert len(kept) == 100
