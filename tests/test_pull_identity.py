"""Who a pull is: same file name from another source never reuses (or trusts) another model.

Also how pulls end badly: a full disk, a failed job with a kept `.part`, pulls that do not fit
together, a server that never answers (and SIGTERM meanwhile), and server text in `hearth pull`.
Every server here is real, on loopback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import make_model
from support.fault_server import FaultServer, sha256
from support.gguf_factory import gguf_bytes
from support.server import HearthProcess, ThreadedServer, free_port
from support.silent_server import SilentServer
from support.waiting import job_done, wait_for

from hearth.cli.render import SHOWN_MAX, shown
from hearth.core.config import load_settings
from hearth.downloads import common, pulls
from hearth.downloads.common import DownloadFailed
from hearth.downloads.jobs import DownloadManager
from hearth.downloads.pulls import Pulls, source_key
from hearth.models.store import ModelStore
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

MODEL = gguf_bytes(name="First", context_length=2048, n_tensors=4, tensor_shape=(256, 256))
OTHER = gguf_bytes(name="Second", context_length=4096, n_tensors=4, tensor_shape=(256, 256))
NAME = "/m/model-Q4_K_M.gguf"


@pytest.fixture
def live(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        yield srv


@pytest.fixture
def two() -> Iterator[tuple[FaultServer, FaultServer]]:
    with FaultServer() as a, FaultServer() as b:
        a.add(NAME, MODEL)
        b.add(NAME, OTHER)
        yield a, b


def pull(live: ThreadedServer, source: str, model_id: str | None = None) -> httpx.Response:
    with live.http() as http:
        return http.post("/v1/models/pull", json={"source": source, "id": model_id})


def finished(live: ThreadedServer, job_id: str) -> dict[str, Any]:
    return job_done(live.url, job_id)


def model(live: ThreadedServer, model_id: str) -> dict[str, Any]:
    with live.http() as http:
        return http.get(f"/v1/models/{model_id}").json()


def test_same_file_name_from_another_url_makes_a_new_model(
    live: ThreadedServer, two: tuple[FaultServer, FaultServer], home: Path
) -> None:
    a, b = two
    first = pull(live, a.url(NAME)).json()
    assert finished(live, first["id"])["state"] == "completed"
    second = pull(live, b.url(NAME))
    assert second.status_code == 202, second.text
    assert second.json()["model_id"] == "model-q4_k_m-2"
    assert finished(live, second.json()["id"])["state"] == "completed"
    assert (home / "models" / "model-q4_k_m" / "model-Q4_K_M.gguf").read_bytes() == MODEL
    assert (home / "models" / "model-q4_k_m-2" / "model-Q4_K_M.gguf").read_bytes() == OTHER
    assert model(live, "model-q4_k_m")["sources"][0]["url"] == a.url(NAME)
    assert model(live, "model-q4_k_m-2")["sources"][0]["sha256"] == sha256(OTHER)
    assert len(a.requests_for(NAME)) == 1  # never fetched from the other model's saved URL


def test_an_explicit_id_of_another_source_answers_409_naming_it(
    live: ThreadedServer, two: tuple[FaultServer, FaultServer]
) -> None:
    a, b = two
    first = pull(live, a.url(NAME), "mine").json()
    assert finished(live, first["id"])["state"] == "completed"
    r = pull(live, b.url(NAME), "mine")
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "'mine'" in message and a.url(NAME) in message and b.url(NAME) in message
    assert b.requests == [] and len(a.requests_for(NAME)) == 1


def test_the_same_source_again_says_complete_and_fetches_nothing(
    live: ThreadedServer, two: tuple[FaultServer, FaultServer]
) -> None:
    a, _ = two
    first = pull(live, a.url(NAME)).json()
    assert finished(live, first["id"])["state"] == "completed"
    again = pull(live, a.url(NAME))
    assert again.status_code == 200, again.text
    assert again.json()["model_id"] == "model-q4_k_m" and again.json()["state"] == "completed"
    assert len(a.requests_for(NAME)) == 1


def test_a_model_with_the_name_but_no_source_is_not_trusted(
    live: ThreadedServer, two: tuple[FaultServer, FaultServer], home: Path
) -> None:
    a, _ = two
    make_model(home, "model-q4_k_m", {"sources": [{"filename": "model-Q4_K_M.gguf"}]})
    r = pull(live, a.url(NAME))
    assert r.status_code == 202 and r.json()["model_id"] == "model-q4_k_m-2"
    assert finished(live, r.json()["id"])["state"] == "completed"


def test_hub_repos_sharing_a_file_name_get_their_own_models(
    live: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer() as hub:
        hub.add_hf_repo("acme/One-GGUF", {"cool-Q4_K_M.gguf": MODEL})
        hub.add_hf_repo("other/Two-GGUF", {"cool-Q4_K_M.gguf": OTHER})
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        one = pull(live, "acme/One-GGUF").json()
        assert finished(live, one["id"])["state"] == "completed"
        two = pull(live, "other/Two-GGUF").json()
        assert two["model_id"] == f"{one['model_id']}-2"
        assert finished(live, two["id"])["state"] == "completed"
        assert pull(live, "acme/One-GGUF").json()["model_id"] == one["model_id"]
    assert model(live, two["model_id"])["sources"][0]["sha256"] == sha256(OTHER)


@pytest.mark.parametrize(
    ("left", "right", "same"),
    [
        ("https://h/a/resolve/main/x.gguf", "https://h/a/resolve/0123abc/x.gguf", True),
        ("https://h/a/x.gguf?sig=1", "https://h/a/x.gguf?sig=2", True),
        ("https://h/a/resolve/main/x.gguf", "https://h/b/resolve/main/x.gguf", False),
        ("https://h/a/x.gguf", "https://h:8443/a/x.gguf", False),
        ("http://h/a/x.gguf", "https://h/a/x.gguf", False),
    ],
)
def test_source_identity(left: str, right: str, same: bool) -> None:
    assert (source_key(left) == source_key(right)) is same


def test_a_full_disk_fails_the_job_removes_the_part_and_the_next_pull_works(
    live: ThreadedServer,
    two: tuple[FaultServer, FaultServer],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = two
    a.fault(NAME, trickle=0.005, trickle_chunk=16 * 1024)
    job = pull(live, a.url(NAME), "full").json()
    with live.http() as http:  # leave a .part behind, then find the disk full on resume
        wait_for(lambda: http.get(f"/v1/downloads/{job['id']}").json()["done"] > 100_000)
        http.delete(f"/v1/downloads/{job['id']}")
    part = home / "models" / "full" / "model-Q4_K_M.gguf.part"
    assert part.exists()
    monkeypatch.setattr(common, "disk_free", lambda path: 1000)
    with live.http() as http:
        r = http.post("/v1/models/full/download")
    assert r.status_code == 202, r.text
    done = finished(live, r.json()["id"])
    assert done["state"] == "failed" and "disk space" in done["error"]
    assert not part.exists() and not part.with_name(part.name + ".json").exists()
    assert model(live, "full")["status"] == "failed"  # not stuck in `downloading`
    monkeypatch.undo()
    with live.http() as http:
        again = http.post("/v1/models/full/download")
    assert again.status_code == 202, again.text
    assert finished(live, again.json()["id"])["state"] == "completed"
    assert model(live, "full")["status"] == "ready"


def test_a_failed_pull_that_keeps_its_part_shows_failed_not_downloading(
    live: ThreadedServer, two: tuple[FaultServer, FaultServer], home: Path
) -> None:
    a, _ = two
    a.fault(NAME, close_after=300_000)
    a.fault(NAME, status=403)  # the retry is refused: final, the .part stays for a resume
    r = pull(live, a.url(NAME), "broken")
    done = finished(live, r.json()["id"])
    assert done["state"] == "failed" and "403" in done["error"]
    assert (home / "models" / "broken" / "model-Q4_K_M.gguf.part").exists()
    item = model(live, "broken")
    assert item["status"] == "failed" and "403" in item["error"]
    again = pull(live, a.url(NAME), "broken")
    assert again.status_code == 202, again.text
    assert finished(live, again.json()["id"])["state"] == "completed"
    assert model(live, "broken")["status"] == "ready"


def test_pulls_that_only_fit_one_at_a_time_are_refused_together(
    live: ThreadedServer,
    two: tuple[FaultServer, FaultServer],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _ = two
    a.fault(NAME, trickle=0.01, trickle_chunk=8 * 1024)
    for name in ("one", "two"):
        source = {"filename": "w.gguf", "url": a.url(NAME), "size": len(MODEL)}
        make_model(home, name, {"sources": [source]})
    room = live.services.pulls.reserve_bytes + len(MODEL) * 3 // 2  # one fits, two do not
    monkeypatch.setattr(pulls, "disk_free", lambda path: room)
    with live.http() as http:
        first = http.post("/v1/models/one/download")
        second = http.post("/v1/models/two/download")
        assert first.status_code == 202, first.text
        assert second.status_code == 507, second.text
        assert "promised to running downloads" in second.json()["error"]["message"]
        http.delete(f"/v1/downloads/{first.json()['id']}")


def test_a_hub_that_never_answers_fails_the_pull_at_its_deadline(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SilentServer() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.base)

        async def main() -> None:
            puller = Pulls(ModelStore(home / "models"), hub_deadline=0.5)
            try:
                with pytest.raises(DownloadFailed, match="did not answer"):
                    await puller.pull_model("acme/Cool-GGUF")
            finally:
                hub.close()  # wakes the Hub client's blocked read
                puller.close()

        asyncio.run(main())
    assert list((home / "models").iterdir()) == []


def test_sigterm_stops_the_server_while_a_pull_waits_on_a_silent_server(home: Path) -> None:
    with SilentServer() as silent:
        server = HearthProcess(home).start()
        try:
            r = httpx.post(
                f"{server.url}/v1/models/pull",
                json={"source": silent.url("/x.gguf"), "id": "stuck"},
                timeout=30,
            )
            assert r.status_code == 202, r.text
            wait_for(lambda: silent.accepted > 0, what="the download to connect")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=20)  # raises TimeoutExpired if it hangs
        finally:
            server.stop(signal.SIGKILL)
    assert code == 0, server.output


def test_sigterm_stops_the_server_while_a_pull_waits_on_a_silent_hub(home: Path) -> None:
    """The POST itself is stuck in the Hub listing: no job to cancel, the server must still go."""
    with SilentServer() as hub:
        server = HearthProcess(home, env={"HF_ENDPOINT": hub.base}).start()
        answers: list[int | str] = []

        def post() -> None:
            try:
                r = httpx.post(
                    f"{server.url}/v1/models/pull", json={"source": "acme/Cool-GGUF"}, timeout=120
                )
                answers.append(r.status_code)
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)

        thread = threading.Thread(target=post)
        thread.start()
        try:
            wait_for(lambda: hub.accepted > 0, what="the Hub listing to connect")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=30)  # raises TimeoutExpired if it hangs
        finally:
            server.stop(signal.SIGKILL)
            thread.join(timeout=60)
    assert code == 0, server.output
    assert answers and answers[0] != 202  # the pull never started


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[link=http://evil]x[/link]", "\\[link=http://evil]x\\[/link]"),
        ("a\x1b]8;;http://evil\x07b", "a ]8;;http://evil b"),
        ("red\x1b[31m", "red [31m"),
        ("over\u202eride\u200b", "over ride "),
        ("\x9bC1", " C1"),
    ],
)
def test_shown_makes_server_text_inert(text: str, expected: str) -> None:
    assert shown(text) == expected


def test_shown_cuts_long_text() -> None:
    assert len(shown("x" * 100_000)) == SHOWN_MAX


def test_cli_pull_prints_a_hostile_reason_phrase_as_plain_text(home: Path) -> None:
    reason = b"Nope [link=http://evil]x[/link] \x1b]8;;http://evil\x07click\x1b]8;;\x07 [bold red]"
    reply = b"HTTP/1.1 404 " + reason + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with SilentServer(reply=reply) as hostile:
        env = {**os.environ, "HEARTH_PORT": str(free_port()), "COLUMNS": "200"}
        env.pop("HF_TOKEN", None)
        result = subprocess.run(
            [sys.executable, "-m", "hearth", "--home", str(home), "pull", hostile.url("/x.gguf")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Error:" in output and "404" in output
    assert "\x1b" not in output and "\x07" not in output
    if "evil" in output:  # the reason phrase is shown: then as literal text, not as markup
        assert "[link=http://evil]x[/link]" in output
    assert all(len(line) <= SHOWN_MAX + 20 for line in output.splitlines())


def test_hf_token_goes_to_the_hub_origin_only_not_another_port_on_its_host(
    live: ThreadedServer, two: tuple[FaultServer, FaultServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, elsewhere = two  # both on 127.0.0.1, different ports
    monkeypatch.setenv("HF_ENDPOINT", hub.base)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_456")
    for server, model_id in ((elsewhere, "other-port"), (hub, "the-hub")):
        r = pull(live, server.url(NAME), model_id)
        assert finished(live, r.json()["id"])["state"] == "completed"
    assert [r.authorization for r in elsewhere.requests_for(NAME)] == [None]
    assert [r.authorization for r in hub.requests_for(NAME)] == ["Bearer hf_secret_token_456"]


@pytest.mark.parametrize("body", [MODEL[: len(MODEL) // 50], b"GGUF" + b"\0" * 4096])
def test_a_file_whose_header_fails_is_never_listed_ready(home: Path, body: bytes) -> None:
    """Even with the transfer's own GGUF check off, the header fill refuses the file."""
    with FaultServer() as files:
        url = files.add("/bad-Q4_K_M.gguf", body)

        async def main() -> tuple[str, str | None, str, str | None]:
            puller = Pulls(ModelStore(home / "models"), DownloadManager(require_gguf=False))
            try:
                model_id, job = await puller.pull_model(url, "bad")
                assert job is not None
                snap = await job.wait()
                entry = puller.store.get(model_id)
                status, why = puller.status(entry) or (entry.status, None)
                return snap.state, snap.error, status, why
            finally:
                puller.close()

        state, error, status, why = asyncio.run(main())
    assert state == "failed" and error and "GGUF" in error
    assert status == "failed" and why and "GGUF" in why
    assert not (home / "models" / "bad" / "bad-Q4_K_M.gguf").exists()
