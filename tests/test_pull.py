"""Pulling models end to end: the real Hearth server downloads from a real, misbehaving server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_model
from support.cli import CliRunner
from support.fault_server import FaultServer, sha256
from support.gguf_factory import gguf_bytes
from support.server import ThreadedServer
from support.waiting import job_done as wait_job
from support.waiting import wait_for

from hearth.cli.main import main as cli_app
from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

# A real, valid GGUF (about 1 MB) so the header can be read once the file is complete.
MODEL = gguf_bytes(name="Pulled Model", context_length=4096, n_tensors=4, tensor_shape=(256, 256))


@pytest.fixture
def files() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        srv.add("/m/model-Q4_K_M.gguf", MODEL)
        yield srv


@pytest.fixture
def live(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        yield srv


def job_done(live: ThreadedServer, job_id: str) -> dict[str, Any]:
    return wait_job(live.url, job_id)


def get_model(live: ThreadedServer, model_id: str) -> dict[str, Any]:
    with live.http() as http:
        return http.get(f"/v1/models/{model_id}").json()


def test_pull_a_url_lists_downloading_then_ready_with_header_fields(
    live: ThreadedServer, files: FaultServer, home: Path
) -> None:
    # ~0.3 s in all, so the first look surely comes while bytes are still arriving
    files.fault("/m/model-Q4_K_M.gguf", trickle=0.01, trickle_chunk=32 * 1024)
    with live.http() as http:
        r = http.post("/v1/models/pull", json={"source": files.url("/m/model-Q4_K_M.gguf")})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["model_id"] == "model-q4_k_m" and job["object"] == "download"
    folder = home / "models" / "model-q4_k_m"
    seen = set()
    while True:  # never listed ready while any byte is missing
        item = get_model(live, "model-q4_k_m")
        seen.add(item["status"])
        if item["status"] == "ready":
            assert (folder / "model-Q4_K_M.gguf").read_bytes() == MODEL
            assert not list(folder.glob("*.part*"))
            break
        final = folder / "model-Q4_K_M.gguf"
        if final.exists():  # renamed into place only once complete (model.json still filling)
            assert final.read_bytes() == MODEL
        time.sleep(0.01)
    assert "downloading" in seen
    done = job_done(live, job["id"])
    assert done["state"] == "completed" and done["done"] == len(MODEL)
    item = get_model(live, "model-q4_k_m")
    assert item["name"] == "Pulled Model" and item["format"] == "ggufv3"
    assert (
        item["metadata"]["architecture"] == "llama" and item["engine_parameters"]["ctx_len"] == 4096
    )
    (source,) = item["sources"]
    assert source == {
        "filename": "model-Q4_K_M.gguf",
        "url": files.url("/m/model-Q4_K_M.gguf"),
        "size": len(MODEL),
        "sha256": sha256(MODEL),
    }
    with live.http() as http:
        listing = http.get("/v1/downloads").json()
    assert [j["id"] for j in listing["data"]] == [job["id"]]


def test_dropped_connection_is_resumed_automatically(
    live: ThreadedServer, files: FaultServer
) -> None:
    files.fault("/m/model-Q4_K_M.gguf", close_after=300_000)
    with live.http() as http:
        job = http.post(
            "/v1/models/pull", json={"source": files.url("/m/model-Q4_K_M.gguf"), "id": "m"}
        ).json()
    assert job_done(live, job["id"])["state"] == "completed"
    ranges = [r.range for r in files.requests_for("/m/model-Q4_K_M.gguf")]
    assert ranges[0] is None and ranges[1].startswith("bytes=300000-")
    assert files.bytes_sent("/m/model-Q4_K_M.gguf") == len(MODEL)
    assert get_model(live, "m")["sources"][0]["sha256"] == sha256(MODEL)


def test_cancel_keeps_the_part_and_download_resumes(
    live: ThreadedServer, files: FaultServer, home: Path
) -> None:
    files.fault("/m/model-Q4_K_M.gguf", trickle=0.005, trickle_chunk=16 * 1024)
    with live.http() as http:
        job = http.post(
            "/v1/models/pull", json={"source": files.url("/m/model-Q4_K_M.gguf"), "id": "c"}
        ).json()
        wait_for(lambda: http.get(f"/v1/downloads/{job['id']}").json()["done"] > 100_000)
        cancelled = http.delete(f"/v1/downloads/{job['id']}").json()
        assert cancelled["state"] == "cancelled"
        part = home / "models" / "c" / "model-Q4_K_M.gguf.part"
        assert part.exists() and not (home / "models" / "c" / "model-Q4_K_M.gguf").exists()
        assert get_model(live, "c")["status"] in ("downloading", "missing")
        r = http.post("/v1/models/c/download")
        assert r.status_code == 202
    assert job_done(live, r.json()["id"])["state"] == "completed"
    resumed = files.requests_for("/m/model-Q4_K_M.gguf")[-1]
    assert resumed.range is not None and int(resumed.range.split("=")[1].split("-")[0]) > 100_000
    assert (home / "models" / "c" / "model-Q4_K_M.gguf").read_bytes() == MODEL
    assert get_model(live, "c")["status"] == "ready"


def test_progress_streams_as_server_sent_events(live: ThreadedServer, files: FaultServer) -> None:
    files.fault("/m/model-Q4_K_M.gguf", trickle=0.002, trickle_chunk=64 * 1024)
    with live.http() as http:
        job = http.post(
            "/v1/models/pull", json={"source": files.url("/m/model-Q4_K_M.gguf")}
        ).json()
        events = []
        with http.stream(
            "GET", f"/v1/downloads/{job['id']}", headers={"Accept": "text/event-stream"}
        ) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            for line in s.iter_lines():
                if line.startswith("data: {"):
                    events.append(json.loads(line[6:]))
    assert events[-1]["state"] == "completed"
    dones = [e["done"] for e in events]
    assert dones == sorted(dones) and len(set(dones)) > 1


def test_a_catalog_entry_downloads_its_sources_also_jans_route(
    live: ThreadedServer, files: FaultServer, home: Path
) -> None:
    url = files.url("/m/model-Q4_K_M.gguf")
    make_model(
        home, "catalog", {"name": "From catalog", "sources": [{"filename": "w.gguf", "url": url}]}
    )
    make_model(home, "jan", {"source_url": url})
    assert get_model(live, "catalog")["status"] == "missing"
    with live.http() as http:
        first = http.post("/v1/models/catalog/download").json()
        second = http.get("/v1/models/download/jan").json()
    assert job_done(live, first["id"])["state"] == "completed"
    assert job_done(live, second["id"])["state"] == "completed"
    assert get_model(live, "catalog")["status"] == "ready"
    assert get_model(live, "catalog")["name"] == "From catalog"  # what the user wrote is kept
    assert get_model(live, "jan")["status"] == "ready"
    with live.http() as http:  # nothing left to fetch: says so, starts nothing
        again = http.post("/v1/models/catalog/download")
    assert again.status_code == 200 and again.json()["state"] == "completed"


def test_hugging_face_pull_verifies_hashes_and_attaches_mmproj(
    live: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    projector = gguf_bytes(arch="clip", name="proj")
    with FaultServer() as hub:
        hub.add_hf_repo(
            "acme/Cool-GGUF",
            {"cool-Q4_K_M.gguf": MODEL, "cool-Q8_0.gguf": MODEL, "mmproj-cool-f16.gguf": projector},
        )
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        monkeypatch.setenv("HF_TOKEN", "hf_secret_token_123")
        caplog.set_level(logging.DEBUG)
        with live.http() as http:
            r = http.post("/v1/models/pull", json={"source": "hf.co/acme/Cool-GGUF"})
            assert r.status_code == 202, r.text
            job = r.json()
        assert job_done(live, job["id"])["state"] == "completed"
        auth = [r.authorization for r in hub.requests if r.path.endswith(".gguf")]
    item = get_model(live, job["model_id"])
    assert item["status"] == "ready"
    assert [s["filename"] for s in item["sources"]] == ["cool-Q4_K_M.gguf", "mmproj-cool-f16.gguf"]
    assert item["sources"][0]["sha256"] == sha256(MODEL)
    assert item["engine_parameters"]["mmproj"] == "mmproj-cool-f16.gguf"
    assert auth and all(a == "Bearer hf_secret_token_123" for a in auth)
    on_disk = (home / "models" / job["model_id"] / "model.json").read_text()
    assert "hf_secret_token_123" not in on_disk
    assert "hf_secret_token_123" not in caplog.text


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("ftp", "only http:// and https://"),
        ("redirect-file", "file"),
        ("not-gguf", "GGUF"),
        ("sha-mismatch", "expected"),
        ("404", "404"),
    ],
)
def test_bad_pulls_fail_clearly_and_never_list_ready(
    live: ThreadedServer, files: FaultServer, home: Path, setup: str, fragment: str
) -> None:
    files.add("/m/notes.gguf", b"<html>not a model</html>" * 100)
    url = files.url("/m/model-Q4_K_M.gguf")
    with live.http() as http:
        if setup == "ftp":
            r = http.post("/v1/models/pull", json={"source": "ftp://example.com/x.gguf"})
            assert r.status_code == 400 and fragment in r.json()["error"]["message"]
            return
        if setup == "redirect-file":
            files.fault("/m/model-Q4_K_M.gguf", redirect_to="file:///etc/passwd")
            r = http.post("/v1/models/pull", json={"source": url, "id": "bad"})
        elif setup == "not-gguf":
            r = http.post(
                "/v1/models/pull", json={"source": files.url("/m/notes.gguf"), "id": "bad"}
            )
        elif setup == "sha-mismatch":
            make_model(
                home, "bad", {"sources": [{"filename": "w.gguf", "url": url, "sha256": "0" * 64}]}
            )
            r = http.post("/v1/models/bad/download")
        else:
            r = http.post(
                "/v1/models/pull", json={"source": files.url("/m/gone.gguf"), "id": "bad"}
            )
        assert r.status_code == 202, r.text
        done = job_done(live, r.json()["id"])
    assert done["state"] == "failed" and fragment in done["error"]
    folder = home / "models" / "bad"
    if setup != "sha-mismatch":
        # No model data arrived (an HTML page is refused at its first bytes): the model this
        # pull created goes (the job keeps the error), rather than a `missing` model nobody
        # asked for staying in every list.
        wait_for(lambda: not folder.exists(), timeout=10)
        with live.http() as http:
            assert http.get("/v1/models/bad").status_code == 404
            job = http.get(f"/v1/downloads/{done['id']}").json()
        assert job["state"] == "failed" and fragment in job["error"]
        return
    item = get_model(live, "bad")
    assert item["status"] == "failed" and fragment in item["error"]  # the pull failed, and why
    # The model was there before this download: it is kept, with why it failed.
    assert (folder / "model.json").exists()
    assert [p.name for p in folder.iterdir() if p.name.endswith((".gguf", ".part"))] == []


def test_a_pull_that_failed_after_some_bytes_keeps_its_model_to_resume(
    live: ThreadedServer, files: FaultServer, home: Path
) -> None:
    """The other side of removing a model whose pull got nothing: bytes that arrived are kept
    (model.json and the `.part`), so pulling again resumes instead of starting over."""
    path = "/m/model-Q4_K_M.gguf"
    files.fault(path, close_after=300_000, times=1)
    files.fault(path, status=404, times=None)  # then the file is gone: the job fails
    with live.http() as http:
        r = http.post("/v1/models/pull", json={"source": files.url(path), "id": "half"})
        assert r.status_code == 202, r.text
        done = job_done(live, r.json()["id"])
    assert done["state"] == "failed" and "404" in done["error"]
    time.sleep(0.3)  # the removal of an empty pull, were it to happen, runs right after
    folder = home / "models" / "half"
    parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
    assert (folder / "model.json").exists() and parts and parts[0].stat().st_size >= 300_000
    files.clear_faults()
    with live.http() as http:
        again = http.post("/v1/models/pull", json={"source": "half"}).json()
    assert job_done(live, again["id"])["state"] == "completed"
    assert get_model(live, "half")["status"] == "ready"
    assert files.bytes_sent(path) < len(MODEL) + 300_000 + 64 * 1024  # resumed, not restarted


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://hub.invalid"])
def test_an_offline_hub_is_a_clear_error_not_a_bug(
    live: ThreadedServer, home: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """No network (refused, or a name that does not resolve): the error says so, names the
    Hub and HF_ENDPOINT, is not a 500, and leaves no model behind."""
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with live.http() as http:
        r = http.post("/v1/models/pull", json={"source": "someone/Some-Model-GGUF"})
    message = r.json()["error"]["message"]
    assert 400 <= r.status_code < 600 and r.status_code != 500, r.text
    assert "Check the network (or HF_ENDPOINT)" in message and "bug" not in message
    assert not (home / "models").exists() or list((home / "models").iterdir()) == []
    result = CliRunner(env={"HF_ENDPOINT": endpoint}).invoke(
        cli_app, ["--home", str(home / "offline"), "pull", "someone/Some-Model-GGUF"]
    )
    assert result.exit_code == 1 and "Check the network" in result.output, result.output


@pytest.mark.parametrize(
    "source",
    ["a" * 5000, "x/" * 2500, "hf.co/" + "a" * 5000, "https://example.com/" + "a" * 5000,
     "b" * 300, "c/" * 150 + "m.gguf", "owner/re\x00po", "x\ny"],
    ids=["long-name", "long-path", "long-hf", "long-url", "300", "deep", "nul", "newline"],
)  # fmt: skip
def test_a_pull_source_of_any_length_is_a_clear_400(live: ThreadedServer, source: str) -> None:
    """Over 2,048 characters, a control character, or a 300-character name: a 400 that names
    the problem (and does not echo 5,000 characters back), never an OS error's 500."""
    with live.http() as http:
        r = http.post("/v1/models/pull", json={"source": source})
        ollama = http.post("/api/pull", json={"name": source, "stream": False})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["param"] == "source" and len(r.text) < 1000, r.text[:300]
    assert ollama.status_code == 400 and "error" in ollama.json(), ollama.text[:300]
    if len(source) > 2048:
        assert "over the limit of 2048" in r.json()["error"]["message"]


def test_a_pull_source_is_never_looked_up_in_the_working_directory(
    live: ThreadedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder `someone/Some-Model-GGUF` where the server was started changes nothing: the
    source is a Hugging Face reference, asked of the Hub (offline here), not a local path."""
    (tmp_path / "cwd" / "someone" / "Some-Model-GGUF").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with live.http() as http:
        r = http.post("/v1/models/pull", json={"source": "someone/Some-Model-GGUF"})
    assert r.status_code != 500 and "Check the network" in r.json()["error"]["message"], r.text


def test_disk_space_is_checked_before_starting(
    live: ThreadedServer, files: FaultServer, home: Path
) -> None:
    url = files.url("/m/model-Q4_K_M.gguf")
    make_model(home, "huge", {"sources": [{"filename": "w.gguf", "url": url, "size": 10**15}]})
    with live.http() as http:
        r = http.post("/v1/models/huge/download")
    assert r.status_code == 507
    assert "needs 1000.0 TB more" in r.json()["error"]["message"]
    assert files.requests == []


def test_cli_pull_offline_then_again(home: Path, files: FaultServer) -> None:
    url = files.url("/m/model-Q4_K_M.gguf")
    result = CliRunner().invoke(cli_app, ["--home", str(home), "pull", url, "--id", "cli-model"])
    assert result.exit_code == 0, result.output
    assert "Pulled cli-model" in result.output
    folder = home / "models" / "cli-model"
    assert (folder / "model-Q4_K_M.gguf").read_bytes() == MODEL
    again = CliRunner().invoke(cli_app, ["--home", str(home), "pull", "cli-model"])
    assert again.exit_code == 0 and "already complete" in again.output
    bad = CliRunner().invoke(cli_app, ["--home", str(home), "pull", "no-such-model"])
    assert bad.exit_code == 1 and "not a model id here" in bad.output


def test_cli_pull_goes_through_a_running_server(
    live: ThreadedServer, home: Path, files: FaultServer
) -> None:
    url = files.url("/m/model-Q4_K_M.gguf")
    result = CliRunner().invoke(
        cli_app, ["--home", str(home), "pull", url], env={"HEARTH_PORT": str(live.port)}
    )
    assert result.exit_code == 0, result.output
    with live.http() as http:  # the server ran the job: it knows about it
        assert [j["model_id"] for j in http.get("/v1/downloads").json()["data"]] == ["model-q4_k_m"]


def test_a_killed_server_resumes_from_the_bytes_it_has(home: Path, files: FaultServer) -> None:
    import signal

    import httpx
    from support.server import HearthProcess

    files.fault("/m/model-Q4_K_M.gguf", trickle=0.02, trickle_chunk=4 * 1024, times=1)
    url = files.url("/m/model-Q4_K_M.gguf")
    part = home / "models" / "k" / "model-Q4_K_M.gguf.part"
    first = HearthProcess(home).start()
    try:
        r = httpx.post(f"{first.url}/v1/models/pull", json={"source": url, "id": "k"})
        assert r.status_code == 202
        wait_for(
            lambda: part.exists() and part.with_name(part.name + ".json").exists(),
            what="a .part with its state",
        )
        time.sleep(2.5)  # the state file is saved about once a second
    finally:
        first.stop(signal.SIGKILL)
    had = json.loads(part.with_name(part.name + ".json").read_text())
    with HearthProcess(home) as second:
        r = httpx.post(f"{second.url}/v1/models/k/download")
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        wait_for(
            lambda: httpx.get(f"{second.url}/v1/downloads/{job}").json()["state"] == "completed",
            what="the resumed download",
        )
        assert httpx.get(f"{second.url}/v1/models/k").json()["status"] == "ready"
    resumed = files.requests_for("/m/model-Q4_K_M.gguf")[-1]
    assert resumed.range is not None and not resumed.range.startswith("bytes=0-"), json.dumps(had)
    assert (home / "models" / "k" / "model-Q4_K_M.gguf").read_bytes() == MODEL
