"""Attacks from the hardening issue, replayed against the real server: only the user's own files
(engine.json, settings, the CLI) may name a program, a flag, a secret's destination or a file
outside a model's folder. Every attack checks that nothing ran, nothing was sent, nothing was
written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import FAKE_GGUF, make_model
from support.gguf_factory import gguf_bytes
from support.server import ThreadedServer
from support.waiting import job_done, wait_for

from hearth.core.config import load_settings
from hearth.services import Services


def evil_program(tmp_path: Path) -> tuple[str, Path]:
    """A 'binary' that would leave a marker file if it ever ran."""
    marker = tmp_path / "it-ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    script.chmod(0o755)
    return str(script), marker


class Capture:
    """A loopback HTTP server that records every request it gets (headers and path)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen.append({"path": self.path, "headers": dict(self.headers),
                             "body": self.rfile.read(length)})  # fmt: skip
                body = b'{"object": "list", "data": []}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    cap = Capture()
    yield cap
    cap.close()


def status(server: ThreadedServer, model_id: str) -> dict[str, Any]:
    with server.http() as http:
        return http.get(f"/v1/models/{model_id}").json()


# ---- 1. No request and no model folder names a program ---------------------------------------


@pytest.mark.slow
def test_a_program_named_over_the_api_never_runs(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    program, marker = evil_program(tmp_path)
    folder = make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    before = (folder / "model.json").read_bytes()
    attacks: list[dict[str, Any]] = [
        {"binary": program},
        {"extra_args": ["--host", "0.0.0.0"]},
        {"extra_args": f"--log-file {tmp_path / 'x'}"},
        {"extra_args": ["--api-key", "mine"]},
    ]
    with server.http() as http:
        for params in attacks:
            r = http.patch("/v1/models/m", json={"engine_parameters": params})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"].startswith("engine_parameters.")
            r = http.post("/v1/models/m/start", json=params)
            assert r.status_code == 400, r.text
            assert "engine.json" in r.json()["error"]["message"] or "Hearth sets" in r.text
            r = http.post("/v1/chat/completions", json={"model": "m", "messages": [],
                                                        "binary": program})  # fmt: skip
            assert r.status_code != 200
    assert (folder / "model.json").read_bytes() == before
    assert not marker.exists()


@pytest.mark.slow
def test_a_shared_model_json_that_names_a_program_is_listed_invalid(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    program, marker = evil_program(tmp_path)
    make_model(home, "jan-style", {"settings": {"binary": program}}, {"m.gguf": FAKE_GGUF})
    make_model(home, "flags", {"engine_parameters": {"extra_args": ["--path", "/"]}},
               {"m.gguf": FAKE_GGUF})  # fmt: skip
    for model_id in ("jan-style", "flags"):
        item = status(server, model_id)
        assert item["status"] == "invalid"
        assert "engine.json" in item["error"] or "Hearth sets" in item["error"]
        with server.http() as http:
            r = http.post(f"/v1/models/{model_id}/start")
            assert r.status_code == 400 and r.json()["error"]["code"] == "model_invalid"
    assert not marker.exists()


def test_only_the_users_engine_json_may_name_a_program(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    """The one place a binary is honoured: the user's own engines/llama-cpp/engine.json."""
    program, marker = evil_program(tmp_path)
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    engine_json = home / "engines" / "llama-cpp" / "engine.json"
    engine_json.parent.mkdir(parents=True, exist_ok=True)
    engine_json.write_text(json.dumps({"binary": program, "ctx_len": 256}))
    with server.http() as http:
        r = http.post("/v1/models/m/start")
    assert r.status_code == 502  # the program ran and exited 1
    assert marker.exists()


# ---- 2. Secrets go only where the user's engine.json sends them ------------------------------


@pytest.mark.slow
def test_a_model_json_cannot_choose_where_a_secret_goes(
    server: ThreadedServer, home: Path, capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123")
    steal = {"base_url": f"{capture.url}/v1", "api_key_env": "HF_TOKEN"}
    make_model(home, "thief", {"engine": "openai-compatible", "format": "api",
                               "engine_parameters": steal})  # fmt: skip
    make_model(home, "groq-model", {"engine": "groq", "format": "api"})
    item = status(server, "thief")
    assert item["status"] == "invalid" and "engines/openai-compatible/engine.json" in item["error"]
    with server.http() as http:
        r = http.patch("/v1/models/groq-model", json={"engine_parameters": steal})
        assert r.status_code == 400 and "engine.json" in r.json()["error"]["message"]
        r = http.patch("/v1/models/groq-model", json={"engine": "../../etc"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "engine"
        r = http.patch("/v1/models/groq-model", json={"engine": "not-configured"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_engine"
        for model_id in ("thief", "groq-model"):
            http.post("/v1/chat/completions", json={"model": model_id, "messages": []})
            http.post(f"/v1/models/{model_id}/start")
    assert capture.requests == []


@pytest.mark.slow
def test_a_secret_goes_to_the_url_configured_beside_it(
    server: ThreadedServer, home: Path, capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOX_KEY", "box-secret-456")
    engine_json = home / "engines" / "box" / "engine.json"
    engine_json.parent.mkdir(parents=True)
    box = {"type": "openai-compatible", "base_url": f"{capture.url}/v1", "api_key_env": "BOX_KEY"}
    engine_json.write_text(json.dumps(box))
    make_model(home, "remote", {"engine": "box", "engine_parameters": {"model": "up"}})
    with server.http() as http:
        r = http.post("/v1/chat/completions", json={"model": "remote", "messages": []})
    assert r.status_code == 200
    [seen] = capture.requests
    assert seen["headers"]["Authorization"] == "Bearer box-secret-456"
    assert json.loads(seen["body"])["model"] == "up"


@pytest.mark.slow
def test_a_model_json_naming_its_profiles_own_url_changes_nothing(
    server: ThreadedServer, home: Path, capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jan's remote files carry `"base_url": "https://api.openai.com/v1"` beside `"engine":
    "openai"`. Such a file loads, and its requests still go where the user configured the
    engine (here their own engines/openai/engine.json), with that key; a near miss is refused."""
    monkeypatch.setenv("MY_OPENAI_KEY", "sk-mine-789")
    engine_json = home / "engines" / "openai" / "engine.json"
    engine_json.parent.mkdir(parents=True)
    mine = {"base_url": f"{capture.url}/v1", "api_key_env": "MY_OPENAI_KEY"}
    engine_json.write_text(json.dumps(mine))
    make_model(home, "jan-gpt", {"engine": "openai", "format": "api",
                                 "settings": {"base_url": "https://api.openai.com/v1",
                                              "model": "gpt-4o"}})  # fmt: skip
    assert status(server, "jan-gpt")["status"] != "invalid"
    with server.http() as http:
        r = http.post("/v1/chat/completions", json={"model": "jan-gpt", "messages": []})
        assert r.status_code == 200, r.text
        for near in (f"{capture.url}/v1", "https://api.openai.com/v1/x",
                     "http://api.openai.com/v1", "https://u@api.openai.com/v1"):  # fmt: skip
            r = http.patch("/v1/models/jan-gpt", json={"engine_parameters": {"base_url": near}})
            assert r.status_code == 400, near
            assert r.json()["error"]["param"] == "engine_parameters.base_url"
    [seen] = capture.requests
    assert seen["headers"]["Authorization"] == "Bearer sk-mine-789"
    assert json.loads(seen["body"])["model"] == "gpt-4o"


# ---- 3. Every file a model uses lies in its folder --------------------------------------------


def test_files_outside_the_models_folder_are_refused(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "secret.gguf"
    outside.parent.mkdir()
    outside.write_bytes(b"GGUF" + b"TOP-SECRET" * 10)
    folder = make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    before = (folder / "model.json").read_bytes()
    patches: list[dict[str, Any]] = [
        {"sources": [{"filename": "m.gguf", "url": outside.as_uri()}]},
        {"sources": [{"filename": "x.gguf", "url": "file:///etc/passwd"}]},
        {"sources": [{"filename": "../../settings.json"}]},
        {"sources": [{"filename": "a\x00b.gguf"}]},
        {"sources": [{"filename": "x" * 100_000}]},
        {"sources": [{"filename": "m.gguf", "url": "https://x/" + "y" * 100_000}]},
        {"engine_parameters": {"llama_model_path": str(outside)}},
        {"engine_parameters": {"llama_model_path": "../../../elsewhere/secret.gguf"}},
        {"engine_parameters": {"mmproj": str(outside)}},
        {"engine_parameters": {"mmproj": "../x.gguf"}},
    ]
    with server.http() as http:
        for patch in patches:
            r = http.patch("/v1/models/m", json=patch)
            assert r.status_code == 400, (patch, r.text)
            assert "TOP-SECRET" not in r.text
    assert (folder / "model.json").read_bytes() == before
    # The same, written into a shared folder by hand: listed invalid, never opened.
    make_model(home, "shared", {"sources": [{"filename": "m.gguf", "url": outside.as_uri()}]})
    linked = make_model(home, "symlinked", {})
    (linked / "model.gguf").symlink_to(outside)
    projected = make_model(home, "projector", {"engine_parameters": {"mmproj": "p.gguf"}},
                           {"m.gguf": FAKE_GGUF})  # fmt: skip
    (projected / "p.gguf").symlink_to(outside)
    for model_id in ("shared", "symlinked", "projector"):
        item = status(server, model_id)
        assert item["status"] == "invalid" and "outside the model's folder" in item["error"]
        assert item["size"] == 0


@pytest.mark.slow
def test_files_under_import_dirs_and_cli_links_may_be_used(home: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "a.gguf").write_bytes(FAKE_GGUF)
    source = {"filename": "a.gguf", "url": (library / "a.gguf").as_uri()}
    make_model(home, "from-library", {"sources": [source]})
    settings = load_settings(home=home, flags={"import_dirs": [str(library)]}, env={})
    with ThreadedServer(Services.create(settings)) as srv:
        assert status(srv, "from-library")["status"] == "ready"
    elsewhere = tmp_path / "downloads" / "b.gguf"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(gguf_bytes())
    out = subprocess.run(
        [sys.executable, "-m", "hearth", "--home", str(home), "models", "import",
         str(elsewhere), "--mode", "link", "--id", "linked"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        assert status(srv, "linked")["status"] == "ready"
        assert status(srv, "from-library")["status"] == "invalid"  # import_dirs no longer has it


# ---- 4. An edit writes only what could load --------------------------------------------------


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"engine_parameters": {"ctx_len": -1}}, "engine_parameters.ctx_len"),
        ({"engine_parameters": {"ctx_lenn": 2048}}, "engine_parameters.ctx_lenn"),
        ({"engine_parameters": {"n_parallel": "many"}}, "engine_parameters.n_parallel"),
        ({"format": "exe"}, "format"),
        ({"engine": "../../etc"}, "engine"),
        ({"engine": "nope", "format": "api"}, "engine"),
        ({"model_parameters": {"temperature": "hot"}}, "model_parameters.temperature"),
    ],
)
def test_an_edit_that_could_never_load_writes_nothing(
    server: ThreadedServer, home: Path, patch: dict[str, Any], param: str
) -> None:
    folder = make_model(home, "m", {"settings": {"ctx_len": 2048}, "x-other-tool": 1},
                        {"m.gguf": FAKE_GGUF})  # fmt: skip
    before = (folder / "model.json").read_bytes()
    with server.http() as http:
        r = http.patch("/v1/models/m", json=patch)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param
        assert (folder / "model.json").read_bytes() == before
        ok = http.patch("/v1/models/m", json={"engine_parameters": {"ctx_len": 4096}})
        assert ok.status_code == 200
    after = json.loads((folder / "model.json").read_text())
    assert after == {"settings": {"ctx_len": 4096}, "x-other-tool": 1}


def test_a_full_disk_is_a_507_and_the_file_is_intact(tmp_path: Path) -> None:
    """A real full disk: a small tmpfs (the suite runs as root, as CI does)."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        home = mount / "home"
        folder = make_model(home, "m", {"description": "before"}, {"m.gguf": FAKE_GGUF})
        before = (folder / "model.json").read_bytes()
        with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
            filler = mount / "filler"
            with open(filler, "wb", buffering=0) as fh, pytest.raises(OSError):
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
            with srv.http() as http:
                r = http.patch("/v1/models/m", json={"description": "x" * 20_000})
            assert r.status_code == 507, r.text
            assert "full" in r.json()["error"]["message"]
        assert (folder / "model.json").read_bytes() == before
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# ---- 5. Clean-up: leftovers and files that are not files -------------------------------------


def test_temp_files_of_a_killed_writer_are_swept_at_start(home: Path) -> None:
    folder = make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    leftover = folder / f".model.json.{dead}.0123abcd.tmp"
    leftover.write_text("{half")
    live = folder / ".model.json.1.0123abcd.tmp"  # pid 1 is alive: a writer still at work
    live.write_text("{")
    Services.create(load_settings(home=home, env={}))
    assert not leftover.exists() and live.exists()


def test_a_fifo_or_folder_named_gguf_is_not_a_ready_model(
    server: ThreadedServer, home: Path
) -> None:
    fifo_folder = make_model(home, "fifo", {})
    os.mkfifo(fifo_folder / "model.gguf")
    dir_folder = make_model(home, "dir", {})
    (dir_folder / "model.gguf").mkdir()
    assert status(server, "fifo")["status"] == "missing"
    assert status(server, "dir")["status"] == "missing"


def test_things_named_gguf_that_are_not_files_are_import_errors(home: Path) -> None:
    models = home / "models"
    os.mkfifo(models / "pipe.gguf")
    (models / "folder.gguf").mkdir()
    os.symlink(models / "gone.bin", models / "dangling.gguf")
    os.symlink("/dev/null", models / "device.gguf")
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as srv, srv.http() as http:

        def all_four() -> dict[str, str] | None:  # the first scan runs beside the server
            found = http.get("/v1/models/import/errors").json()["data"]
            errors = {Path(e["path"]).name: e["error"] for e in found}
            return errors if len(errors) == 4 else None

        errors = wait_for(all_four, 15, "the four import errors")
        assert http.get("/health").status_code == 200  # the FIFO never blocked the watcher
    assert "named pipe (FIFO)" in errors["pipe.gguf"]
    assert "is a folder" in errors["folder.gguf"]
    assert "does not exist" in errors["dangling.gguf"]
    assert "character device" in errors["device.gguf"]


@pytest.mark.slow
def test_a_shared_model_json_cannot_paint_the_terminal(home: Path) -> None:
    """Names and errors in `hearth models list` come from model.json: shown as text, never as
    Rich markup or terminal escape codes."""
    make_model(home, "painted", {"name": "[link=http://evil.example]click[/link]\x1b]8;;x\x07"},
               {"m.gguf": FAKE_GGUF})  # fmt: skip
    make_model(home, "broken", {"settings": {"binary": "[bold]\x1b[31mred"}})
    out = subprocess.run(
        [sys.executable, "-m", "hearth", "--home", str(home), "models", "list"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "\x1b" not in text and "\x07" not in text
    assert "[link=http://evil.example]click[/link]" in text


# ---- 6. Links planted in a shared folder are never followed ----------------------------------


def test_a_planted_part_link_never_makes_a_download_write_elsewhere(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    from support.fault_server import FaultServer, gguf_bytes

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    body = gguf_bytes(300_000, 5)
    with FaultServer() as files:
        url = files.add("/m.gguf", body)
        folder = make_model(home, "shared", {"sources": [{"filename": "m.gguf", "url": url}]})
        (folder / "m.gguf.part").symlink_to(victim)
        sidecar = {"version": 1, "url": url, "total": len(body), "segments": [[0, len(body), 8]]}
        (folder / "m.gguf.part.json").write_text(json.dumps(sidecar))
        with server.http() as http:
            job = job_done(server.url, http.post("/v1/models/shared/download").json()["id"])
    assert victim.read_text() == "precious"
    assert job["state"] == "completed", job
    assert (folder / "m.gguf").read_bytes() == body and not (folder / "m.gguf").is_symlink()


def test_links_out_of_a_model_folder_are_refused(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"api_token": "SECRET-TOKEN"}))
    linked_json = home / "models" / "json-link"
    linked_json.mkdir(parents=True)
    (linked_json / "model.json").symlink_to(secret)
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(FAKE_GGUF)
    folder = make_model(home, "projector", {}, {"m.gguf": FAKE_GGUF})
    (folder / "d").symlink_to(tmp_path)
    drop = home / "drop"
    drop.mkdir()
    (drop / "m-00001-of-00002.gguf").write_bytes(gguf_bytes())
    (drop / "m-00002-of-00002.gguf").symlink_to(outside)
    with server.http() as http:
        item = http.get("/v1/models/json-link").json()
        assert item["status"] == "invalid" and "SECRET-TOKEN" not in json.dumps(item)
        r = http.post("/v1/models/projector/start", json={"mmproj": "d/outside.gguf"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "file_outside_folder"
        before = (folder / "model.json").read_bytes()
        r = http.patch("/v1/models/projector", json={"engine_parameters": {"mmproj": "d/x.gguf"}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "engine_parameters.mmproj"
        assert (folder / "model.json").read_bytes() == before
        first_part = str(drop / "m-00001-of-00002.gguf")
        r = http.post("/v1/models/import", json={"path": first_part, "mode": "link"})
        assert r.status_code == 403, r.text  # its second part is a link to outside the home
    links = home / "linked-files.json"
    assert not links.exists() or str(outside) not in links.read_text()
