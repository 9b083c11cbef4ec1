"""Writes Jan can read, end to end on the real model (issue 25, point 3): SmolLM2 pulled into a
Jan data folder from a Hugging Face repo and from an Ollama registry (both fakes on loopback),
listed and chatted with under Jan's id through the openai and ollama clients, its model.yml
compared key by key with what Jan's own download writes; the starter model on a first
`hearth serve` of an empty Jan folder lands in Jan's layout too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import ollama
import pytest
from support.fault_server import FaultServer
from support.janfolder import add_imported_model, make_jan_folder, read_model_yml
from support.ollama_registry import publish
from support.server import HearthProcess, ThreadedServer
from support.smollm import smollm2_path
from test_starter import build_index

from hearth.core.config import load_settings
from hearth.services import Services
from hearth.services.starter import SHA256, SIZE, STARTER_ID

pytestmark = pytest.mark.slow  # SmolLM2 engines and `hearth serve`: see pyproject.toml

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
JAN_ID = "HuggingFaceTB/SmolLM2-135M-Instruct_Q4_1"  # Jan's `${author}/${sanitizeModelId(stem)}`
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def smol() -> bytes:
    return smollm2_path().read_bytes()


@pytest.fixture
def hub(smol: bytes) -> Iterator[FaultServer]:
    with FaultServer() as srv:
        srv.add_hf_repo(REPO, {FILE: smol})
        publish(srv, "smollm2", "135m", [("model", smol), ("params", b'{"temperature": 0.4}')])
        yield srv


def test_hub_and_ollama_pulls_land_in_jans_layout_and_chat(
    tmp_path: Path, hub: FaultServer, smol: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_jan_folder(tmp_path / "data")
    monkeypatch.setenv("HF_ENDPOINT", hub.base)
    settings = load_settings(home=data, env={"HEARTH_OLLAMA_REGISTRY": hub.base})
    with ThreadedServer(Services.create(settings)) as live:
        client = ollama.Client(host=live.url)
        lines = list(client.pull(f"hf.co/{REPO}:Q4_1", stream=True))
        assert lines[-1].status == "success", lines[-1]
        assert client.pull("smollm2:135m").status == "success"
        ids = [m.id for m in live.openai().models.list().data]
        assert ids == [JAN_ID, "smollm2-135m"]
        for model in ids:
            reply = live.openai().chat.completions.create(
                model=model,
                messages=HELLO,
                temperature=0,
                seed=7,
                max_tokens=8,  # type: ignore[arg-type]
            )
            assert reply.model == model and reply.choices[0].message.content
        # Ollama's clients reach it by Jan's id (model.yml has no place for the hf.co name)
        chat = client.chat(
            model=JAN_ID, messages=HELLO, options={"temperature": 0, "seed": 7, "num_predict": 8}
        )
        assert chat.message.content
        client._client.close()
    yml = read_model_yml(data / "llamacpp/models" / JAN_ID)
    assert yml == {  # Jan's download: index.ts import(), keys in its order
        "model_path": f"llamacpp/models/{JAN_ID}/model.gguf",
        "name": "Smollm2-135M-8k-Lc100K-Mix1-Ep2",  # its general.name, whitespace -> '-'
        "size_bytes": len(smol),
        "model_sha256": hashlib.sha256(smol).hexdigest(),
        "model_size_bytes": len(smol),
        "embedding": False,
        "embedding_check_v": 3,
    }
    assert list(yml) == ["model_path", "name", "size_bytes", "model_sha256", "model_size_bytes",
                         "embedding", "embedding_check_v"]  # fmt: skip
    ollama_yml = read_model_yml(data / "llamacpp/models/smollm2-135m")
    assert ollama_yml["model_path"] == "llamacpp/models/smollm2-135m/model.gguf"
    assert ollama_yml["temperature"] == 0.4  # Ollama's params, under Jan's key
    assert not (data / "models").exists() or not list((data / "models").iterdir())
    assert not (data / "llamacpp/settings.json").exists()
    assert not (data / "llamacpp/router.preset.ini").exists()


def test_the_starter_on_an_empty_jan_folder_lands_in_jans_layout(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "data")
    jans_settings = (data / "settings.json").read_bytes()
    env = {**build_index(tmp_path / "index", smollm2_path()), "HEARTH_STARTER": "1"}
    with HearthProcess(data, env=env) as proc, httpx.Client(base_url=proc.url, timeout=120) as http:
        models = http.get("/v1/models").json()["data"]
        assert [(m["id"], m["status"]) for m in models] == [(STARTER_ID, "ready")]
        reply = http.post(
            "/v1/chat/completions",
            json={"model": STARTER_ID, "messages": HELLO, "max_tokens": 4, "temperature": 0,
                  "seed": 7},
        )  # fmt: skip
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    folder = data / "llamacpp/models" / STARTER_ID
    assert sorted(p.name for p in folder.iterdir()) == ["model.gguf", "model.yml"]
    yml = read_model_yml(folder)
    assert yml["model_path"] == f"llamacpp/models/{STARTER_ID}/model.gguf"
    assert (yml["size_bytes"], yml["model_sha256"], yml["model_size_bytes"]) == (SIZE, SHA256, SIZE)
    assert yml["ctx_size"] == 4096 and yml["temperature"] == 0.2
    assert yml["name"] == "SmolLM2-135M-Instruct-Q4_1"  # not its GGUF's training-run name
    assert list(yml)[:2] == ["model_path", "name"]  # Jan's key order kept
    assert not (data / "models").exists() or not list((data / "models").iterdir())
    assert (data / "settings.json").read_bytes() == jans_settings
    assert not (data / "llamacpp/settings.json").exists()
    assert not (data / "llamacpp/router.preset.ini").exists()


def test_deleting_a_running_jan_import_stops_it_and_keeps_the_users_file(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "data")
    mine = tmp_path / "gguf" / "SmolLM2.gguf"  # the user's file, where Jan's import left it
    mine.parent.mkdir()
    shutil.copyfile(smollm2_path(), mine)
    add_imported_model(data, "bartowski/Smol", mine, name="Smol", extra_key="kept")
    settings = load_settings(home=data, env={})
    with ThreadedServer(Services.create(settings)) as live, live.http() as http:
        started = http.post("/v1/models/bartowski/Smol/start", json={})
        assert started.status_code == 200, started.text
        assert [m["id"] for m in http.get("/v1/running").json()["data"]] == ["bartowski/Smol"]
        gone = http.delete(f"/v1/models/{quote('bartowski/Smol', safe='')}")  # as the page
        assert gone.status_code == 200, gone.text
        assert http.get("/v1/running").json()["data"] == []
        assert http.get("/v1/models").json()["data"] == []
    assert mine.stat().st_size == smollm2_path().stat().st_size
    assert os.listdir(data / "llamacpp/models") == []
