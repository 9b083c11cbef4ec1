"""The plain output of the quick commands (cli/output.py): columns, colour, inert text."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import make_model
from support.cli import CliRunner

from hearth.cli.main import main
from hearth.cli.output import Table, clean, paint, width


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_columns_line_up_by_display_width() -> None:
    table = Table("ID", "NAME", "SIZE", right=["SIZE"])
    table.add_row("a", "模型", "1.0 GB")
    table.add_row("longer-id", "plain", "12 B")
    header, first, second = table.lines(io.StringIO())
    assert header == "ID         NAME     SIZE"
    assert first == "a          模型   1.0 GB"  # two wide characters take four columns
    assert second == "longer-id  plain    12 B"
    assert width("模型") == 4 and width("e\u0301") == 1


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert paint("ready", "green", Tty()) == "\x1b[32mready\x1b[0m"
    assert paint("ready", "green", io.StringIO()) == "ready"
    monkeypatch.setenv("NO_COLOR", "1")
    assert paint("ready", "green", Tty()) == "ready"


def test_a_strangers_text_is_inert() -> None:
    """Escape codes, bidi overrides and line breaks from a model.json never reach the terminal."""
    assert clean("evil\x1b[2J\u202ename\r\n") == "evil [2J name  "
    assert clean("x" * 500, 10) == "x" * 9 + "…"


def test_ls_prints_a_hostile_name_inert_and_json_as_json(home: Path) -> None:
    make_model(home, "alpha", {"name": "A\x1b]0;pwned\x07 \u202egnp.exe"})
    result = CliRunner().invoke(main, ["--home", str(home), "ls"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "alpha" in result.output and "pwned" in result.output
    result = CliRunner().invoke(main, ["ls", "--json", "--home", str(home)])
    assert [m["id"] for m in json.loads(result.output)] == ["alpha"]
