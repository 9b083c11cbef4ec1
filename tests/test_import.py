"""Importing models: drop-in (watcher + start-up scan), CLI and API, many-file models, bad files."""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import CliRunner
from support.gguf_factory import raw_gguf, write_gguf
from support.server import ThreadedServer
from support.smollm import smollm2_path
from support.waiting import wait_for

from hearth.cli.main import main as cli_app
from hearth.core.config import load_settings
from hearth.models.ids import id_from_filename, unique_id
from hearth.models.importer import _copy_with_progress, split_name
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml


@pytest.fixture
def drop(tmp_path: Path, home: Path) -> Callable[..., Path]:
    """Write a file beside models/ and move it in whole, as a file manager's drag-and-drop does."""
    staging = tmp_path / "staging"
    staging.mkdir()

    def _drop(filename: str, data: bytes | None = None, **gguf: Any) -> Path:
        src = staging / filename
        if data is None:
            write_gguf(src, **gguf)
        else:
            src.write_bytes(data)
        target = home / "models" / filename
        os.rename(src, target)
        return target

    return _drop


@pytest.fixture
def live(home: Path) -> Iterator[ThreadedServer]:
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as srv:
        yield srv


def model(srv: ThreadedServer, model_id: str) -> dict[str, Any] | None:
    with srv.http() as http:
        r = http.get(f"/v1/models/{model_id}")
    return r.json() if r.status_code == 200 else None


def import_errors(srv: ThreadedServer) -> list[dict[str, Any]]:
    with srv.http() as http:
        return http.get("/v1/models/import/errors").json()["data"]


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Mistral-7B-Instruct-v0.2.Q4_K_M.gguf", "mistral-7b-instruct-v0.2.q4_k_m"),
        ("my model (1).gguf", "my-model-1"),
        ("ÜBER modell.GGUF", "ber-modell"),
        ("...hidden.gguf", "hidden"),
        ("a" * 300 + ".gguf", "a" * 128),
        ("weights.bin", "weights"),
        ("!!!.gguf", "model"),
    ],
)
def test_id_from_file_name(filename: str, expected: str) -> None:
    assert id_from_filename(filename) == expected


def test_unique_id_counts_up() -> None:
    taken = {"m", "m-2"}
    assert unique_id("m", taken.__contains__) == "m-3"
    assert unique_id("x", taken.__contains__) == "x"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama-00001-of-00003.gguf", ("llama", 1, 3)),
        ("a-b-00003-of-00003.GGUF", ("a-b", 3, 3)),
        ("llama-00004-of-00003.gguf", None),
        ("llama-1-of-3.gguf", None),
    ],
)
def test_split_names(name: str, expected: tuple[str, int, int] | None) -> None:
    got = split_name(name)
    assert (None if got is None else (got.prefix, got.number, got.count)) == expected


def test_drop_in_imports_with_header_metadata(
    live: ThreadedServer, drop: Callable[..., Path], home: Path
) -> None:
    dropped = drop(
        "Cool Model 7B.Q4_1.gguf",
        name="Cool Model",
        context_length=32768,
        chat_template="{% for m in messages %}{{ m.content }}{% endfor %}",
        file_type=3,
        tensor_type="Q4_1",
        tensor_shape=(4, 32),
    )
    mtime = int(os.stat(home / "models" / dropped.name).st_mtime) if dropped.exists() else None
    item = wait_for(lambda: model(live, "cool-model-7b.q4_1"), what="the import")
    folder = home / "models" / "cool-model-7b.q4_1"
    assert (folder / "Cool Model 7B.Q4_1.gguf").is_file() and not dropped.exists()
    assert item["status"] == "ready"
    assert item["name"] == "Cool Model"
    assert item["format"] == "ggufv3" and item["engine"] == "llama-cpp"
    assert item["engine_parameters"] == {"ctx_len": 8192}  # min(trained 32768, 8192)
    meta = item["metadata"]
    assert meta["architecture"] == "llama" and meta["quantization"] == "Q4_1"
    assert meta["context_length"] == 32768 and meta["parameter_count"] == 256
    assert meta["chat_template"].startswith("{% for m in messages %}")
    assert (meta["bos_token"], meta["eos_token"]) == ("<s>", "</s>")
    assert item["model_parameters"] == {"stop": ["</s>"]}
    assert item["sources"][0]["filename"] == "Cool Model 7B.Q4_1.gguf"
    assert meta["size"] == item["size"] == (folder / "Cool Model 7B.Q4_1.gguf").stat().st_size
    assert mtime is None or item["created"] == mtime
    # generated model.json is editable afterwards, like any other
    with live.http() as http:
        r = http.patch(
            "/v1/models/cool-model-7b.q4_1", json={"engine_parameters": {"ctx_len": 16384}}
        )
        assert r.json()["engine_parameters"]["ctx_len"] == 16384


def test_short_context_is_kept_and_clash_gets_a_suffix(
    live: ThreadedServer, drop: Callable[..., Path]
) -> None:
    drop("tiny.gguf", context_length=2048)
    assert wait_for(lambda: model(live, "tiny"))["engine_parameters"]["ctx_len"] == 2048
    drop("TINY.gguf", context_length=1024)
    assert wait_for(lambda: model(live, "tiny-2"))["engine_parameters"]["ctx_len"] == 1024


def test_a_file_still_being_written_waits(live: ThreadedServer, home: Path, tmp_path: Path) -> None:
    full = write_gguf(tmp_path / "whole.gguf", n_tensors=4, tensor_shape=(64, 64)).read_bytes()
    target = home / "models" / "slow.gguf"
    with open(target, "wb") as fh:
        fh.write(full[: len(full) // 2])
        fh.flush()
        for _ in range(6):  # 1.5 s of a half-written file: never imported, never moved
            time.sleep(0.25)
            assert target.exists() and model(live, "slow") is None
        fh.write(full[len(full) // 2 :])
    wait_for(lambda: model(live, "slow"), what="the import after the write finished")
    assert not target.exists()
    assert import_errors(live) == []


def test_partial_downloads_and_hidden_files_are_left_alone(
    live: ThreadedServer, drop: Callable[..., Path], home: Path
) -> None:
    for name in ("a.gguf.part", "b.gguf.download", "c.gguf.crdownload", ".d.gguf"):
        write_gguf(home / "models" / name)
    drop("e.gguf")
    wait_for(lambda: model(live, "e"))
    for name in ("a.gguf.part", "b.gguf.download", "c.gguf.crdownload", ".d.gguf"):
        assert (home / "models" / name).is_file()
    with live.http() as http:
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["e"]


BAD_FILES: dict[str, bytes] = {
    "notes.gguf": b"these are my notes, not a model\n" * 10,
    "empty.gguf": b"",
    "truncated.gguf": b"GGUF\x03\x00\x00\x00\x01\x00",
    "corrupt.gguf": b"GGUF" + os.urandom(200),
    "huge-string.gguf": raw_gguf(
        kvs=[
            b"\x04\x00\x00\x00\x00\x00\x00\x00name"
            + struct.pack("<I", 8)
            + struct.pack("<Q", 2**62)
        ]
    ),
    "many-tensors.gguf": raw_gguf(tensor_count=2**40),
    "pickle.bin": b"\x80\x04\x95" + b"\x00" * 100,
}


def test_bad_files_are_reported_not_moved_and_not_retried(
    live: ThreadedServer, drop: Callable[..., Path], home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hearth.import")
    for name, data in BAD_FILES.items():
        drop(name, data)
    problems = wait_for(
        lambda: (p := import_errors(live)) and len(p) == len(BAD_FILES) and p, what="errors"
    )
    by_name = {Path(p["path"]).name: p for p in problems}
    assert "is not a GGUF model" in by_name["notes.gguf"]["error"]
    assert "(a text file)" in by_name["notes.gguf"]["error"]
    assert "neither a GGUF nor a GGML header" in by_name["pickle.bin"]["error"]
    assert "16777216-byte limit" in by_name["huge-string.gguf"]["error"]
    assert "empty (0 bytes)" in by_name["empty.gguf"]["error"]
    assert "truncated" in by_name["truncated.gguf"]["error"]
    for name, data in BAD_FILES.items():  # nothing moved, nothing deleted, bytes intact
        assert (home / "models" / name).read_bytes() == data
    # more activity in models/ does not make the watcher retry the same bad bytes
    drop("fine.gguf")
    wait_for(lambda: model(live, "fine"))
    time.sleep(1.5)
    warnings = [r for r in caplog.records if "not importing" in r.getMessage()]
    assert sorted(r.getMessage().split(":")[0] for r in warnings) == sorted(
        f"not importing {home / 'models' / n}" for n in by_name
    )
    # the CLI shows them too, offline
    out = CliRunner().invoke(cli_app, ["--home", str(home), "models", "list"]).output
    assert "not imported" in out and "truncated.gguf" in out


def test_dropped_while_off_imported_at_next_start(home: Path, tmp_path: Path) -> None:
    write_gguf(home / "models" / "offline.gguf")
    old = time.time() - 60
    os.utime(home / "models" / "offline.gguf", (old, old))
    folder = home / "models" / "had-no-json"
    folder.mkdir()
    write_gguf(folder / "weights.gguf", name="Foldered")
    os.utime(folder / "weights.gguf", (old, old))
    inode = (folder / "weights.gguf").stat().st_ino
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as srv:
        assert wait_for(lambda: model(srv, "offline"))["status"] == "ready"
        item = wait_for(lambda: model(srv, "had-no-json"))
        assert item["name"] == "Foldered" and item["status"] == "ready"
    assert (folder / "weights.gguf").stat().st_ino == inode  # untouched
    assert (
        json.loads((folder / "model.json").read_text())["sources"][0]["filename"] == "weights.gguf"
    )


def test_split_model_waits_for_every_part(live: ThreadedServer, tmp_path: Path, home: Path) -> None:
    parts = [
        write_gguf(tmp_path / f"big-0000{n}-of-00003.gguf", split=(n - 1, 3)) for n in (1, 2, 3)
    ]
    os.rename(parts[0], home / "models" / parts[0].name)
    os.rename(parts[2], home / "models" / parts[2].name)
    problems = wait_for(lambda: import_errors(live), what="a waiting record")
    assert any(
        "big-00002-of-00003.gguf" in p["error"] and p["state"] == "waiting" for p in problems
    )
    assert model(live, "big") is None
    os.rename(parts[1], home / "models" / parts[1].name)
    item = wait_for(lambda: model(live, "big"), what="the split import")
    assert [s["filename"] for s in item["sources"]] == [p.name for p in parts]
    assert item["status"] == "ready"
    assert sorted(p.name for p in (home / "models" / "big").glob("*.gguf")) == [
        p.name for p in parts
    ]
    assert wait_for(lambda: import_errors(live) == [], what="waiting record to clear")


def test_projector_is_attached_not_imported(
    live: ThreadedServer, drop: Callable[..., Path], home: Path
) -> None:
    drop("llava-v1.5-7b-Q4_K_M.gguf")
    wait_for(lambda: model(live, "llava-v1.5-7b-q4_k_m"))
    drop("llava-v1.5-7b-mmproj-f16.gguf", arch="clip")
    item = wait_for(
        lambda: (
            (m := model(live, "llava-v1.5-7b-q4_k_m"))
            and m["engine_parameters"].get("mmproj")
            and m
        )
    )
    assert item["engine_parameters"]["mmproj"] == "llava-v1.5-7b-mmproj-f16.gguf"
    assert (home / "models" / "llava-v1.5-7b-q4_k_m" / "llava-v1.5-7b-mmproj-f16.gguf").is_file()
    with live.http() as http:
        assert len(http.get("/v1/models").json()["data"]) == 1
    # dropped *into* a model folder
    drop("other.gguf")
    wait_for(lambda: model(live, "other"))
    write_gguf(home / "models" / "other" / "mmproj-model-f16.gguf", arch="clip")
    item = wait_for(
        lambda: (m := model(live, "other")) and m["engine_parameters"].get("mmproj") and m
    )
    assert item["engine_parameters"]["mmproj"] == "mmproj-model-f16.gguf"


def test_hundred_files_at_once_each_imported_once(
    live: ThreadedServer, tmp_path: Path, home: Path
) -> None:
    staging = tmp_path / "batch"
    staging.mkdir()
    for i in range(100):
        write_gguf(staging / f"batch-{i:03d}.gguf")
    for i in range(100):
        os.rename(staging / f"batch-{i:03d}.gguf", home / "models" / f"batch-{i:03d}.gguf")

    def all_in() -> list[dict[str, Any]]:
        with live.http() as http:
            data = http.get("/v1/models").json()["data"]
        return data if len(data) >= 100 else []

    data = wait_for(all_in, timeout=60, what="100 imports")
    assert sorted(m["id"] for m in data) == [f"batch-{i:03d}" for i in range(100)]
    assert not list((home / "models").glob("*.gguf"))
    for i in range(100):
        files = list((home / "models" / f"batch-{i:03d}").iterdir())
        assert sorted(f.name for f in files) == sorted([f"batch-{i:03d}.gguf", "model.json"])


def test_real_model_drop_in(live: ThreadedServer, home: Path, tmp_path: Path) -> None:
    src = smollm2_path()
    staging = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    try:
        os.link(src, staging)
    except OSError:
        staging.write_bytes(src.read_bytes())
    os.rename(staging, home / "models" / staging.name)
    item = wait_for(lambda: model(live, "smollm2-135m-instruct.q4_1"))
    meta = item["metadata"]
    assert (meta["architecture"], meta["quantization"], meta["context_length"]) == (
        "llama",
        "Q4_1",
        8192,
    )
    assert item["engine_parameters"]["ctx_len"] == 8192
    assert "<|im_start|>" in meta["chat_template"]
    assert item["model_parameters"]["stop"] == ["<|im_end|>"]
    assert 130e6 < meta["parameter_count"] < 140e6


def cli(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, ["--home", str(home), *args])
    return result.exit_code, result.output


def test_cli_import_modes(home: Path, tmp_path: Path) -> None:
    originals = tmp_path / "mine"
    originals.mkdir()
    for name in ("a.gguf", "b.gguf", "c.gguf"):
        write_gguf(originals / name)
    code, out = cli(home, "models", "import", str(originals / "a.gguf"))
    assert code == 0, out
    assert (originals / "a.gguf").exists() and (home / "models" / "a" / "a.gguf").exists()
    code, out = cli(
        home, "models", "import", str(originals / "b.gguf"), "--mode", "move", "--id", "bee"
    )
    assert code == 0, out
    assert not (originals / "b.gguf").exists() and (home / "models" / "bee" / "b.gguf").exists()
    code, out = cli(home, "models", "import", str(originals / "c.gguf"), "--mode", "link")
    assert code == 0, out
    assert sorted(p.name for p in (home / "models" / "c").iterdir()) == ["model.json"]
    src = json.loads((home / "models" / "c" / "model.json").read_text())["sources"][0]
    assert src["url"] == (originals / "c.gguf").resolve().as_uri()
    code, out = cli(home, "models", "list")
    assert "c" in out and "ready" in out
    code, out = cli(home, "models", "rm", "-y", "c")
    assert code == 0 and (originals / "c.gguf").read_bytes()[:4] == b"GGUF"
    code, out = cli(home, "models", "import", str(originals / "a.gguf"), "--id", "bee")
    assert code == 1 and "already exists" in out
    (originals / "notes.gguf").write_text("hello")
    code, out = cli(home, "models", "import", str(originals / "notes.gguf"))
    assert code == 1 and "notes.gguf" in out
    assert (originals / "notes.gguf").read_text() == "hello"
    code, out = cli(home, "models", "import", str(originals / "x.gguf"), "--mode", "teleport")
    assert code == 2 and "invalid choice: 'teleport'" in out  # a usage error, before any work


def test_copy_reports_progress_and_leaves_no_half_file(tmp_path: Path) -> None:
    src = write_gguf(tmp_path / "src.gguf", n_tensors=8, tensor_shape=(512, 512))
    seen: list[tuple[int, int]] = []
    target = tmp_path / "out" / "src.gguf"
    target.parent.mkdir()
    _copy_with_progress(src, target, lambda d, t: seen.append((d, t)))
    assert target.read_bytes() == src.read_bytes()
    assert seen[-1] == (src.stat().st_size, src.stat().st_size)
    assert [p.name for p in target.parent.iterdir()] == ["src.gguf"]


def test_api_import_reads_only_allowed_paths(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write_gguf(outside / "o.gguf")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    write_gguf(allowed / "ok.gguf")
    os.symlink(outside / "o.gguf", allowed / "sneaky.gguf")
    write_gguf(home / "inbox.gguf")
    settings = load_settings(home=home, flags={"import_dirs": [str(allowed)]}, env={})
    with ThreadedServer(Services.create(settings)) as srv, srv.http() as http:
        r = http.post("/v1/models/import", json={"path": str(outside / "o.gguf")})
        assert r.status_code == 403 and "import_dirs" in r.json()["error"]["message"]
        r = http.post("/v1/models/import", json={"path": str(allowed / "sneaky.gguf")})
        assert r.status_code == 403  # a symlink out of an allowed folder is still outside
        r = http.post("/v1/models/import", json={"path": str(allowed / "ok.gguf"), "mode": "link"})
        assert r.status_code == 201, r.text
        assert r.json()["id"] == "ok" and r.json()["status"] == "ready"
        r = http.post(
            "/v1/models/import",
            json={"path": str(home / "inbox.gguf"), "id": "inbox", "mode": "move"},
        )
        assert r.status_code == 201 and not (home / "inbox.gguf").exists()
        r = http.post("/v1/models/import", json={"path": str(allowed / "ok.gguf"), "id": "inbox"})
        assert r.status_code == 409
        r = http.post("/v1/models/import", json={"path": str(allowed), "id": "d"})
        assert r.status_code == 400 and "not a file" in r.json()["error"]["message"]
        r = http.post("/v1/models/import", json={"path": str(allowed / "ok.gguf"), "id": "../x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_model_id"
        r = http.post(
            "/v1/models/import", json={"path": str(allowed / "ok.gguf"), "mode": "teleport"}
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "mode"
        (allowed / "bad.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
        r = http.post("/v1/models/import", json={"path": str(allowed / "bad.gguf")})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_model_file"
    assert (outside / "o.gguf").exists() and (allowed / "bad.gguf").exists()


def test_a_crash_mid_import_loses_nothing(home: Path) -> None:
    """A half-built import folder (Hearth killed mid-import) gives the user's file back."""
    staging = home / "models" / ".importing-mine-1a2b3c4d"
    staging.mkdir(parents=True)
    write_gguf(staging / "mine.gguf")
    (staging / "model.json").write_text("{}")
    services = Services.create(load_settings(home=home, env={}))
    assert not staging.exists()
    assert (home / "models" / "mine.gguf").is_file()  # back where the watcher imports it
    assert services.store.list() == []


def test_legacy_ggml_bin_is_imported_and_labelled(
    live: ThreadedServer, drop: Callable[..., Path]
) -> None:
    """A .bin carrying a GGML/GGJT magic is a model (an old one): imported, format "ggml"."""
    drop("old-llama.bin", b"tjgg" + b"\x03\x00\x00\x00" + b"\x00" * 4096)
    item = wait_for(lambda: model(live, "old-llama"), what="the legacy import")
    assert item["format"] == "ggml" and item["status"] == "ready"
    assert item["metadata"] == {"format": "ggml", "size": 4104}
    with live.http() as http:  # llama.cpp cannot run it: say so before starting anything
        r = http.post("/v1/chat/completions", json={"model": "old-llama", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_format"
    assert "convert_llama_ggml_to_gguf.py" in r.json()["error"]["message"]
