"""`hearth models list` with no server, from the list cache (cli/listcache.py): never different.

Each step changes the home the way a person would (an edit of the same size, a dropped file, a
broken model.json, a deleted folder, a setting, the environment) and checks that the next list
misses the cache written before the change, prints exactly what the validated path prints
(HEARTH_NO_LIST_CACHE=1), then that a fresh cache is written and hit with the same output.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_GGUF, make_model
from support.cli import CliRunner

from hearth.cli import listcache
from hearth.cli.main import main as app

runner = CliRunner()
MARGIN_NS = 50_000_000  # the racy margin in these tests: edits age past it in a 0.1 s sleep


class Spy:
    """Which way each list went: a cache hit, a miss, a cache written."""

    def __init__(self) -> None:
        self.loads: list[bool] = []
        self.saves: list[bool] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    seen = Spy()
    load, save = listcache.load, listcache.save

    def loading(home: str) -> Any:
        result = load(home)
        seen.loads.append(result is not None)
        return result

    def saving(*args: Any) -> bool:
        written = save(*args)
        seen.saves.append(written)
        return written

    monkeypatch.setattr(listcache, "RACY_MARGIN_NS", MARGIN_NS)
    monkeypatch.setattr(listcache, "load", loading)
    monkeypatch.setattr(listcache, "save", saving)
    yield seen


def ls(home: Path, env: dict[str, str | None] | None = None) -> str:
    result = runner.invoke(app, ["--home", str(home), "models", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def check(home: Path, spy: Spy, *, changed: bool = True, env: dict[str, str] | None = None) -> str:
    """The list after a change: a miss equal to the slow path, then a written and a hit cache."""
    env = dict(env or {})
    first = ls(home, env)
    slow = ls(home, {**env, listcache.DISABLE_ENV: "1"})
    assert first == slow
    if changed:
        assert spy.loads[-1] is False, "a stale cache was trusted"
    time.sleep(0.1)  # older than the racy margin now
    assert ls(home, env) == slow
    assert spy.saves[-1] is True
    assert ls(home, env) == slow
    assert spy.loads[-1] is True
    return slow


@pytest.mark.slow
def test_the_cache_never_changes_what_is_printed(home: Path, spy: Spy, tmp_path: Path) -> None:
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    make_model(home, "beta", {"name": "Beta"}, {"beta.gguf": FAKE_GGUF})
    make_model(home, "gamma", {}, {"gamma.gguf": FAKE_GGUF})
    outside = tmp_path / "shared"
    outside.mkdir()
    (outside / "ext.gguf").write_bytes(FAKE_GGUF * 3)
    source = {"filename": "ext.gguf", "url": (outside / "ext.gguf").as_uri()}
    make_model(home, "linked", {"sources": [source]})
    time.sleep(0.1)
    out = check(home, spy, changed=False)
    assert "Alpha" in out and "linked" in out and "invalid" in out  # linked: not allowed yet

    alpha = home / "models" / "alpha" / "model.json"
    before = alpha.stat().st_size
    alpha.write_text(json.dumps({"name": "Alphb"}), encoding="utf-8")  # same size, same inode
    assert alpha.stat().st_size == before
    assert "Alphb" in check(home, spy)

    make_model(home, "dropped", None, {"dropped.Q4_0.gguf": FAKE_GGUF})  # a drop-in folder
    assert "dropped" in check(home, spy)
    (home / "models" / "alpha" / "alpha.gguf").write_bytes(FAKE_GGUF * 50)  # grown in place
    assert "1.2 KB" in check(home, spy)

    (home / "models" / "beta" / "model.json").write_text("{nope", encoding="utf-8")
    assert "not valid JSON" in check(home, spy)

    shutil.rmtree(home / "models" / "gamma")
    assert "gamma" not in check(home, spy)

    (home / "settings.json").write_text(json.dumps({"import_dirs": [str(outside)]}))
    out = check(home, spy)
    assert "outside the model's folder" not in out  # the linked file is allowed now
    (outside / "ext.gguf").write_bytes(FAKE_GGUF * 90)  # a file outside the home changes
    assert "2.2 KB" in check(home, spy)

    check(home, spy, env={"HEARTH_MAX_LOADED_MODELS": "2"})  # the environment is part of it


def test_import_errors_come_and_go_with_their_files(home: Path, spy: Spy) -> None:
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    junk = home / "models" / "junk.gguf"
    junk.write_bytes(b"not a model")
    (home / "logs").mkdir()
    record = {"path": str(junk), "error": "not a model file", "state": "failed", "time": 1}
    (home / "logs" / "import-errors.json").write_text(json.dumps([record]))
    time.sleep(0.1)
    assert "not imported" in check(home, spy, changed=False)
    junk.unlink()
    assert "not imported" not in check(home, spy)


def test_right_after_a_change_no_cache_is_written(
    home: Path, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Racy: a file as new as the listing may change again within its timestamp's tick."""
    monkeypatch.setattr(listcache, "RACY_MARGIN_NS", 2_000_000_000)  # the real one
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    ls(home)
    assert spy.saves == [False]
    assert not os.path.exists(listcache.cache_path(str(home)))


@pytest.mark.parametrize(
    "content",
    [
        b"garbage",
        b"",
        b"[]",
        b'{"fingerprint": 1, "outside": "x", "models": {}, "problems": null}',
        b'{"fingerprint": [], "outside": [], "models": [{"id": 5}], "problems": []}',
        b'{"fingerprint": [], "outside": [7], "models": [], "problems": []}',
        b'{"outside": [], "models": [{"id": "x", "size": true}], "problems": []}',
        b"[" * 100_000,
        b'{"models": "' + b"x" * (9 << 20) + b'"}',
    ],
    ids=["garbage", "empty", "list", "types", "id", "outside", "bool", "deep", "huge"],
)
def test_a_bad_cache_is_ignored(home: Path, spy: Spy, content: bytes) -> None:
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    time.sleep(0.1)
    good = check(home, spy, changed=False)
    Path(listcache.cache_path(str(home))).write_bytes(content)
    assert ls(home) == good
    assert spy.loads[-1] is False
    assert spy.saves[-1] is True  # and the slow path put a good one back
    assert ls(home) == good and spy.loads[-1] is True


def test_a_hostile_cache_with_the_right_fingerprint_prints_inert_text(home: Path, spy: Spy) -> None:
    """A cache is the user's own file, but its text still goes through the cleaner."""
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    time.sleep(0.1)
    check(home, spy, changed=False)
    path = Path(listcache.cache_path(str(home)))
    data = json.loads(path.read_text())
    data["models"][0]["name"] = "evil\x1b]0;pwned\x07"
    path.write_text(json.dumps(data))
    out = ls(home)
    assert spy.loads[-1] is True and "\x1b" not in out and "evil" in out


def test_a_cache_that_is_not_a_file_is_ignored(home: Path, spy: Spy) -> None:
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    time.sleep(0.1)
    good = check(home, spy, changed=False)
    path = Path(listcache.cache_path(str(home)))
    path.unlink()
    os.mkfifo(path)  # reading a FIFO would block forever
    assert ls(home) == good and spy.loads[-1] is False
    path.unlink()
    path.symlink_to("/dev/zero")  # a device never ends
    assert ls(home) == good and spy.loads[-1] is False


def test_another_home_or_version_misses(
    home: Path, spy: Spy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    time.sleep(0.1)
    good = check(home, spy, changed=False)
    other = tmp_path / "other"
    shutil.copytree(home, other, symlinks=True)  # the same cache, in another home
    assert "alpha" in ls(other) and spy.loads[-1] is False
    monkeypatch.setattr(listcache, "__version__", "0.0.0-other")
    assert ls(home) == good and spy.loads[-1] is False


def test_json_output_is_never_cached(home: Path, spy: Spy) -> None:
    make_model(home, "alpha", {"name": "Alpha"}, {"alpha.gguf": FAKE_GGUF})
    time.sleep(0.1)
    check(home, spy, changed=False)
    result = runner.invoke(app, ["--home", str(home), "models", "list", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["name"] == "Alpha"
