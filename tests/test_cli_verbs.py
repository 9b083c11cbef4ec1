"""Ollama's verbs on the `hearth` command line: rm, show, load, cp, create, search; and importing
a file twice.

In this process (support.cli.CliRunner), on the folder or through a real server (ThreadedServer)
as a user's command would find it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAKE_GGUF, make_model
from support.cli import CliRunner
from support.engines import add_smol, running
from support.gguf_factory import write_gguf
from support.ollama_registry import HubModel, HubSearch
from support.server import ThreadedServer

from hearth.cli.main import main as app

RECORD = {
    "name": "Alpha",
    "metadata": {
        "architecture": "llama",
        "size_label": "135M",
        "context_length": 8192,
        "embedding_length": 576,
        "quantization": "Q4_1",
        "license": "apache-2.0\nsecond line",
        "system_prompt": "You are \x1b[31mhelpful\x1b[0m.",
    },
    "model_parameters": {"temperature": 0.2, "max_tokens": 64, "stop": ["<|im_end|>", "</s>"]},
    "engine_parameters": {"ctx_len": 2048, "embedding": True},
}


def cli(home: Path, *args: str, port: int | None = None) -> tuple[int, str]:
    env = {"HEARTH_PORT": str(port)} if port else None
    result = CliRunner().invoke(app, ["--home", str(home), *args], env=env)
    return result.exit_code, result.output


def test_show_like_ollama_then_rm(home: Path) -> None:
    make_model(home, "alpha", RECORD, {"alpha.gguf": FAKE_GGUF})
    code, out = cli(home, "show", "alpha")
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "Model" and "Capabilities" in lines and "License" in lines
    for row in (
        ("architecture", "llama"),
        ("parameters", "135M"),
        ("context length", "8192"),
        ("embedding length", "576"),
        ("quantization", "Q4_1"),
    ):
        assert any(line.split() and line.startswith(row[0]) and row[1] in line for line in lines)
    assert "completion" in lines and "embedding" in lines
    assert any(line.startswith("stop") and '"</s>"' in line for line in lines)
    assert any(line.startswith("ctx_len") and "2048" in line for line in lines)
    assert "\x1b" not in out  # the record's text is made inert
    code, out = cli(home, "show", "alpha", "--modelfile")
    assert code == 0 and "FROM alpha" in out and "PARAMETER num_predict 64" in out
    assert "PARAMETER num_ctx 2048" in out and 'PARAMETER stop "<|im_end|>"' in out
    code, out = cli(home, "show", "alpha", "--license")
    assert out == "apache-2.0\nsecond line\n"
    code, out = cli(home, "show", "alpha", "--template")
    assert code == 0 and "no template recorded" in out

    make_model(home, "plain", {}, {"plain.gguf": FAKE_GGUF})
    code, out = cli(home, "show", "plain")
    # no header to read: what any generative model can do (tools in Hearth's tool prompt)
    assert code == 0 and out.split("Capabilities")[1].split() == ["completion", "tools"]
    code, out = cli(home, "rm", "-y", "alpha", "plain")
    assert code == 0 and "Deleted alpha" in out and "Deleted plain" in out
    assert not (home / "models" / "alpha").exists()
    code, out = cli(home, "show", "alpha")
    assert code == 1 and "does not exist" in out


@pytest.mark.slow
def test_load_needs_a_server_and_loads_into_it(home: Path, server: ThreadedServer) -> None:
    add_smol(home, "smol")
    code, out = cli(home, "load", "smol")  # no HEARTH_PORT: no server for this home
    assert code == 1 and "No Hearth server is running" in out and "hearth serve" in out
    code, out = cli(home, "load", "smol", "--keep-alive", "-1", port=server.port)
    assert code == 0 and "Loaded smol" in out, out
    with server.http() as http:
        loaded = running(http)["smol"]
        assert loaded["status"] == "running" and loaded["keep_alive"] < 0
        assert str(loaded["pid"]) in out
    code, out = cli(home, "load", "nope", port=server.port)
    assert code == 1 and "does not exist" in out


MODELFILE = """FROM alpha
PARAMETER temperature 0.5
PARAMETER num_ctx 1024
SYSTEM \"\"\"Talk like a pirate.\"\"\"
LICENSE MIT
"""


def test_cp_and_create_without_a_server(home: Path, tmp_path: Path) -> None:
    make_model(home, "alpha", RECORD, {"alpha.gguf": FAKE_GGUF})
    code, out = cli(home, "cp", "alpha", "beta")
    assert code == 0 and "Copied alpha to beta" in out, out
    beta = json.loads((home / "models" / "beta" / "model.json").read_text())
    assert beta["metadata"]["derived_from"] == "alpha"
    code, out = cli(home, "cp", "alpha", "beta")
    assert code == 1 and "already exists" in out

    (tmp_path / "Modelfile").write_text(MODELFILE)
    code, out = cli(home, "create", "pirate", "-f", str(tmp_path / "Modelfile"))
    assert code == 0 and "Created pirate" in out, out
    code, out = cli(home, "show", "pirate")
    assert "Talk like a pirate." in out and "MIT" in out
    raw = json.loads((home / "models" / "pirate" / "model.json").read_text())
    assert raw["model_parameters"]["temperature"] == 0.5
    assert raw["engine_parameters"]["ctx_len"] == 1024

    (tmp_path / "weights").mkdir()
    write_gguf(tmp_path / "weights" / "tiny.gguf")
    (tmp_path / "weights" / "Modelfile").write_text('FROM ./tiny.gguf\nSYSTEM "Be brief."\n')
    code, out = cli(home, "create", "tiny", "-f", str(tmp_path / "weights" / "Modelfile"))
    assert code == 0, out
    code, out = cli(home, "show", "tiny", "--system")
    assert out.strip() == "Be brief."


def test_create_reports_modelfile_mistakes_before_doing_anything(
    home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "Modelfile"
    for text, expected in (
        ("FROM alpha\nADAPTER ./lora.gguf\n", "line 2: ADAPTER"),
        ("FROM alpha\nPARAMETER num_gpu 1\n", "unknown parameter 'num_gpu'"),
        ("FROM ./missing.gguf\n", "missing.gguf is not a file"),
    ):
        bad.write_text(text)
        code, out = cli(home, "create", "x", "-f", str(bad))
        assert code == 1 and expected in out, (text, out)
    code, out = cli(home, "create", "x", "-f", str(tmp_path / "absent"))
    assert code == 1 and "Could not read the Modelfile" in out
    assert list((home / "models").iterdir()) == []


def test_cp_and_create_through_the_server(
    home: Path, tmp_path: Path, server: ThreadedServer
) -> None:
    make_model(home, "alpha", RECORD, {"alpha.gguf": FAKE_GGUF})
    code, out = cli(home, "cp", "alpha", "gamma", port=server.port)
    assert code == 0 and "Copied alpha to gamma" in out, out
    with server.http() as http:
        assert http.get("/v1/models/gamma").status_code == 200
    code, out = cli(home, "cp", "nope", "delta", port=server.port)
    assert code == 1 and "nope" in out and "{" not in out  # Ollama's error text, unwrapped

    (tmp_path / "Modelfile").write_text(MODELFILE)
    code, out = cli(home, "create", "pirate", "-f", str(tmp_path / "Modelfile"), port=server.port)
    assert code == 0 and "Created pirate" in out, out
    code, out = cli(home, "show", "pirate", "--system", port=server.port)
    assert out.strip() == "Talk like a pirate."

    # FROM a file: the server reads it where it may (the home, import_dirs), else says so
    write_gguf(tmp_path / "tiny.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./tiny.gguf\nPARAMETER temperature 0.1\n")
    code, out = cli(home, "create", "tiny", "-f", str(tmp_path / "Modelfile"), port=server.port)
    assert code == 1 and "import_dirs" in out and "without a server" in out, out
    (home / "drop").mkdir()
    write_gguf(home / "drop" / "tiny.gguf")
    (home / "drop" / "Modelfile").write_text("FROM tiny.gguf\nPARAMETER temperature 0.1\n")
    code, out = cli(
        home, "create", "tiny", "-f", str(home / "drop" / "Modelfile"), port=server.port
    )
    assert code == 0, out
    raw = json.loads((home / "models" / "tiny" / "model.json").read_text())
    assert raw["model_parameters"]["temperature"] == 0.1


HUB = [
    HubModel("acme/Tiny-GGUF", 12_345, 7, ["tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf", "mmproj.gguf"]),
    HubModel("bob/tiny-2-GGUF", 99, 0, ["t2-Q4_0.gguf"]),
]


@pytest.mark.slow
def test_search_the_hub_and_the_library(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HubSearch(HUB) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        code, out = cli(home, "search", "tiny", "--limit", "5")
        assert hub.queries[0]["limit"] == ["5"]
    assert code == 0, out
    header, first, second = out.splitlines()[:3]
    assert header.split() == ["NAME", "DOWNLOADS", "LIKES", "QUANTIZATIONS"]
    assert first.split()[:3] == ["acme/Tiny-GGUF", "12.3K", "7"]
    assert "Q4_K_M, Q8_0 (+vision)" in first and second.startswith("bob/tiny-2-GGUF")
    assert "hearth pull NAME" in out

    code, out = cli(home, "search", "qwen", "--library", "--limit", "2")
    assert code == 0, out
    rows = out.splitlines()
    assert rows[0].split() == ["NAME", "SIZES", "DESCRIPTION"]
    assert rows[1].startswith("qwen2.5 ") and "0.5b" in rows[1] and len(rows) >= 3
    code, out = cli(home, "search", "no-such-thing-anywhere", "--library")
    assert code == 0 and "Nothing found" in out
    code, out = cli(home, "search", "x", "--limit", "0")
    assert code == 2 and "--limit" in out


def test_importing_a_file_twice_names_the_model(
    home: Path, tmp_path: Path, server: ThreadedServer
) -> None:
    original = tmp_path / "mine" / "tiny.gguf"
    original.parent.mkdir()
    write_gguf(original)
    code, out = cli(home, "models", "import", str(original))
    assert code == 0, out
    code, out = cli(home, "models", "import", str(original))
    assert code == 1 and "already imported as 'tiny'" in out and "--id" in out
    code, out = cli(home, "models", "import", str(original), "--id", "tiny-again")
    assert code == 0, out
    assert sorted(p.name for p in (home / "models").iterdir()) == ["tiny", "tiny-again"]

    # the API goes through the same importer: a file in the home, imported by link, then again
    inside = home / "imports" / "other.gguf"
    inside.parent.mkdir()
    write_gguf(inside, name="Other")
    with server.http() as http:
        body = {"path": str(inside), "mode": "link"}
        assert http.post("/v1/models/import", json=body).status_code == 201
        again = http.post("/v1/models/import", json=body)
        assert again.status_code == 409, again.text
        error = again.json()["error"]
        assert error["code"] == "already_imported" and "'other'" in error["message"]
        again = http.post("/v1/models/import", json={**body, "id": "other-2"})
        assert again.status_code == 201
