"""`hearth.core.atomic`, the one atomic-write helper, and the sites that use it (no server).

Failures in the middle of a write are real: a child process with a small RLIMIT_FSIZE gets EFBIG
from the kernel part way through the bytes, and a small tmpfs fills up (ENOSPC; the suite runs
as root, as CI does).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hearth.core import atomic
from hearth.core.errors import InsufficientStorage
from hearth.downloads.state import PartState, load_state, save_state
from hearth.models.store import sweep_temp_files, write_json_atomic
from hearth.threads import jsonl

SRC = Path(atomic.__file__).resolve().parents[1]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_bytes_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    atomic.write_bytes(target, b"new bytes")
    assert target.read_bytes() == b"new bytes"
    assert _leftovers(tmp_path) == []


def test_a_failure_mid_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    """The kernel refuses bytes past RLIMIT_FSIZE (EFBIG) after the first 4 KiB were written."""
    target = tmp_path / "model.json"
    target.write_text('{"old": true}\n')
    os.chmod(target, 0o640)
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(SRC)!r})
        from hearth.core import atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            atomic.write_bytes({str(target)!r}, b"x" * 100_000)
        except OSError as exc:
            print(exc.errno)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(errno.EFBIG)
    assert target.read_text() == '{"old": true}\n'
    assert _mode(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_a_full_disk_is_insufficient_storage_and_leaves_no_temp(tmp_path: Path) -> None:
    """A real full disk: a small tmpfs (the suite runs as root, as CI does)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        target = mount / "model.json"
        target.write_text("{}\n")
        with open(mount / "filler", "wb", buffering=0) as fh, pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 4096)
        with pytest.raises(InsufficientStorage) as caught:
            write_json_atomic(target, {"new": "x" * 50_000})
        assert "is full" in caught.value.message and "model.json" in caught.value.message
        with pytest.raises(InsufficientStorage):
            jsonl.write_atomic(mount / "messages.jsonl", b"y" * 50_000)
        with pytest.raises(OSError) as bare:  # without storage_error: the OSError itself
            atomic.write_bytes(target, b"z" * 50_000)
        assert bare.value.errno == errno.ENOSPC
        assert target.read_text() == "{}\n"
        assert _leftovers(mount) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_value_json_cannot_hold_touches_nothing(tmp_path: Path) -> None:
    target = tmp_path / "cache.json"
    with pytest.raises(TypeError):
        atomic.write_json(target, {"x": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_the_mode_asked_for_is_kept_over_an_existing_file(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "secret.json"
    target.write_text("old")
    os.chmod(target, 0o666)
    old = os.umask(0)
    try:
        atomic.write_text(target, "new", mode=mode)
    finally:
        os.umask(old)
    assert _mode(target) == mode
    assert target.read_text() == "new"


def test_the_sites_keep_their_modes_and_bytes(tmp_path: Path) -> None:
    """The download sidecar stays 0600 and ASCII-escaped; a thread file 0644; model.json is
    indented UTF-8 with a final newline, as each wrote it by hand before."""
    old = os.umask(0)
    try:
        sidecar = tmp_path / "m.gguf.part.json"
        state = PartState.fresh("https://example.com/é.gguf", None, None, 10, 1)
        save_state(sidecar, state)
        messages = tmp_path / "messages.jsonl"
        jsonl.write_atomic(messages, b'{"a":1}\n')
        model_json = tmp_path / "model.json"
        write_json_atomic(model_json, {"name": "é"})
    finally:
        os.umask(old)
    assert _mode(sidecar) == 0o600
    assert sidecar.read_text() == json.dumps(state.to_json())
    assert load_state(sidecar) is not None
    assert _mode(messages) == 0o644
    assert model_json.read_text(encoding="utf-8") == '{\n  "name": "é"\n}\n'
    assert _leftovers(tmp_path) == []


def test_a_link_at_the_target_is_replaced_never_written_through(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    target = tmp_path / "thread.json"
    target.symlink_to(elsewhere)
    atomic.write_text(target, "{}")
    assert not target.is_symlink() and target.read_text() == "{}"
    assert elsewhere.read_text() == "keep me"


def test_a_planted_file_at_a_temp_name_is_never_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_EXCL: a link planted at the exact temp name fails the write instead of following it."""
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    (tmp_path / ".t.json.1.00000000.tmp").symlink_to(elsewhere)
    monkeypatch.setattr(atomic, "temp_name", lambda target: f".{target}.1.00000000.tmp")
    with pytest.raises(FileExistsError):
        atomic.write_text(tmp_path / "t.json", "new")
    assert elsewhere.read_text() == "keep me"


def test_a_long_name_gets_a_short_temp_name_its_sweep_still_knows(tmp_path: Path) -> None:
    """`<name>.part.json` may be 245 bytes: `.<that>.<pid>.<hex>.tmp` would pass 255 bytes."""
    long = "m" * 235 + ".part.json"
    name = atomic.temp_name(long)
    assert len(name.encode()) <= 255 and name.startswith(".") and name.endswith(".tmp")
    assert atomic.is_temp_of(name, long)
    assert not atomic.is_temp_of(name, "other.json")
    short = atomic.temp_name("thread.json")
    assert short.startswith(".thread.json.") and atomic.is_temp_of(short, "thread.json")
    hashed_short = f".{name.split('.')[1]}.1.0123abcd.tmp"  # the hash form of a short name
    assert not atomic.is_temp_of(hashed_short, "thread.json")
    save_state(tmp_path / long, PartState.fresh("https://example.com/x", None, None, 1, 1))
    assert (tmp_path / long).exists() and _leftovers(tmp_path) == []


def test_the_model_store_sweep_takes_only_dead_writers_json_temps(tmp_path: Path) -> None:
    dead = tmp_path / ".model.json.999999999.0123abcd.tmp"  # no such pid
    live = tmp_path / f".model.json.{os.getpid()}.0123abcd.tmp"
    other = tmp_path / ".notes.txt.999999999.0123abcd.tmp"  # not a .json's temp
    for path in (dead, live, other):
        path.write_text("x")
    sweep_temp_files([tmp_path])
    assert not dead.exists() and live.exists() and other.exists()


def test_durable_writes_fsync_the_file_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.write_text(tmp_path / "a.json", "{}")
    assert synced == [False, True]
    synced.clear()
    atomic.write_text(tmp_path / "b.json", "{}", durable=False)
    assert synced == []
