"""A model whose record has no GGUF facts (a model Jan keeps, a model.json written by hand:
only an import records them) shows the same facts a Hearth import does, read from the GGUF
header: in its record (`/v1/models`, what the page and `hearth show` read), in Ollama's
`/api/show` and `/api/tags`, and in `hearth show`. A file that is not a GGUF shows none.

Small GGUFs from the factory; no engine starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from conftest import make_model
from support.cli import CliRunner
from support.gguf_factory import write_gguf
from support.janfolder import add_downloaded_model, make_jan_folder
from support.server import ThreadedServer

from hearth.cli.main import main
from hearth.core.config import load_settings
from hearth.services import Services

JAN = "someone/Tiny-Chat-GGUF"  # a nested id, as Jan keeps a download
BROKEN = "someone/Not-A-Gguf"
Q4_K_M = 15  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M
TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"


def _tiny(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(
        path, arch="llama", context_length=4096, embedding_length=64, file_type=Q4_K_M,
        size_label="135M", chat_template=TEMPLATE,
    )  # fmt: skip


@pytest.fixture(scope="module")
def jan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jan")
    data = make_jan_folder(root / "data")
    add_downloaded_model(data, JAN, _tiny(root / "src" / "tiny.gguf"))  # no ctx_size
    junk = root / "src" / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 60)
    add_downloaded_model(data, BROKEN, junk)
    return data


@pytest.fixture(scope="module")
def jan_srv(jan: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=jan, env={}))) as server:
        yield server


def _assert_record_facts(model: dict[str, object]) -> None:
    meta = model["metadata"]
    assert isinstance(meta, dict)
    assert meta["architecture"] == "llama"
    assert meta["context_length"] == 4096
    assert meta["quantization"] == "Q4_K_M"
    assert meta["size_label"] == "135M"
    assert meta["chat_template"] == TEMPLATE
    assert "completion" in model["capabilities"]  # type: ignore[operator]


def _ollama(srv: ThreadedServer) -> ollama.Client:
    return srv.keep(ollama.Client(host=srv.url, timeout=60, trust_env=False))


def _assert_ollama_facts(client: ollama.Client, name: str) -> None:
    shown = client.show(name)
    assert shown.details is not None and shown.modelinfo is not None
    assert shown.details.family == "llama"
    assert shown.details.quantization_level == "Q4_K_M"
    assert shown.details.parameter_size == "135M"
    assert shown.modelinfo["llama.context_length"] == 4096
    tags = {m.model: m for m in client.list().models}
    details = (tags.get(name) or tags[f"{name}:latest"]).details
    assert details is not None and details.quantization_level == "Q4_K_M"
    assert details.family == "llama"


def test_a_jan_model_without_ctx_size_shows_its_gguf_facts(
    jan_srv: ThreadedServer, jan: Path
) -> None:
    with jan_srv.http(trust_env=False) as http:
        one = http.get(f"/v1/models/{JAN}").json()
        listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    _assert_record_facts(one)
    _assert_record_facts(listed[JAN])
    weights = jan / "llamacpp" / "models" / JAN / "model.gguf"
    assert one["metadata"]["size_bytes"] == weights.stat().st_size  # Jan's own keys stay
    _assert_ollama_facts(_ollama(jan_srv), JAN)


def test_a_jan_model_whose_file_is_not_a_gguf_shows_no_facts(jan_srv: ThreadedServer) -> None:
    with jan_srv.http(trust_env=False) as http:
        r = http.get(f"/v1/models/{BROKEN}")
    assert r.status_code == 200, r.text
    meta = r.json().get("metadata") or {}
    assert not {"architecture", "context_length", "quantization"} & set(meta)


def test_hearth_show_jan_prints_the_facts(jan: Path, jan_srv: ThreadedServer) -> None:
    env = {
        "HOME": str(jan.parent),
        "XDG_DATA_HOME": str(jan.parent / "xdg"),
        "JAN_DATA_FOLDER": str(jan),
        "HEARTH_HOME": None,
    }
    for port in (None, str(jan_srv.port)):  # the folder itself, then through the server
        result = CliRunner().invoke(main, ["show", JAN, "--jan"], env={**env, "HEARTH_PORT": port})
        assert result.exit_code == 0, result.output
        out = result.output
        assert "(no details recorded)" not in out
        assert "architecture" in out and "llama" in out
        assert "context length" in out and "4096" in out
        assert "quantization" in out and "Q4_K_M" in out
        assert "135M" in out


def test_a_hand_written_model_json_shows_its_gguf_facts(home: Path, tmp_path: Path) -> None:
    gguf = _tiny(tmp_path / "tiny.gguf")
    make_model(home, "hand", {"name": "By hand"}, {"hand.gguf": gguf.read_bytes()})
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        with srv.http(trust_env=False) as http:
            record = http.get("/v1/models/hand").json()
        _assert_record_facts(record)
        _assert_ollama_facts(_ollama(srv), "hand")
        result = CliRunner().invoke(main, ["--home", str(home), "show", "hand"],
                                    env={"HEARTH_PORT": str(srv.port)})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4096" in result.output and "Q4_K_M" in result.output
    assert "(no details recorded)" not in result.output


def test_what_the_record_says_wins_over_the_header(home: Path, tmp_path: Path) -> None:
    gguf = _tiny(tmp_path / "tiny.gguf")
    make_model(home, "said", {"metadata": {"context_length": 1024, "note": "mine"}},
               {"said.gguf": gguf.read_bytes()})  # fmt: skip
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv:
        record = httpx.get(f"{srv.url}/v1/models/said", trust_env=False).json()
    assert record["metadata"]["context_length"] == 1024  # its own, not the header's 4096
    assert record["metadata"]["note"] == "mine"
    assert record["metadata"]["architecture"] == "llama"  # missing: from the header
