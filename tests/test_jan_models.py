"""Jan's models read where Jan keeps them (`llamacpp/models/**/model.yml`), with Jan's ids
(issue 25, point 2): the walk, the mapping of model.yml and Jan's llama.cpp settings onto
model.json's terms, broken files beside good ones, the older tree's duplicates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth.core.config import load_settings
from hearth.core.errors import InvalidModelId, ModelNotFound
from hearth.models.ids import is_valid_jan_id
from hearth.models.janyml import read_model_yml
from hearth.services.core import Services
from tests.support.gguf_factory import write_gguf
from tests.support.janfolder import (
    add_downloaded_model,
    add_imported_model,
    fifo_feeding,
    make_jan_folder,
    write_llamacpp_settings,
    write_model_yml,
)

NESTED = "unsloth/Tiny-Instruct-Q4_K_M"


def _gguf(path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(path, **kwargs)  # type: ignore[arg-type]
    return path


def jan_folder(tmp_path: Path) -> Path:
    """Jan's folder from the spec: a nested download, an import outside the folder, an
    embedding model, a vision model, broken ones, a duplicate in the older tree."""
    data = make_jan_folder(tmp_path / "data")
    tiny = _gguf(tmp_path / "src" / "tiny.gguf")
    add_downloaded_model(
        data, NESTED, tiny, ctx_size=1536, n_gpu_layers=0, temperature=0.2, top_k=20,
        model_sha256="ab" * 32, chat_template="{{ messages[0].content }}",
    )  # fmt: skip
    mine = _gguf(tmp_path / "home" / "alice" / "gguf" / "Mistral-7B.gguf")
    add_imported_model(data, "Mistral-7B-Instruct-v0_3-Q4_K_M", mine)
    add_downloaded_model(
        data, "nomic/embed", tiny, embedding=True, pooling="mean", batch_size=2048,
        ubatch_size=2048, ctx_size=0,
    )  # fmt: skip
    add_downloaded_model(data, "ggml-org/vision", tiny, mmproj=_gguf(tmp_path / "src" / "p.gguf"))
    bad = data / "llamacpp" / "models" / "broken" / "yaml"
    bad.mkdir(parents=True)
    (bad / "model.yml").write_text("model_path: [unclosed\n")
    add_imported_model(data, "broken/device", Path("/dev/zero"))
    text = tmp_path / "notes.gguf"
    text.write_text("secret-bytes-never-quoted\n")
    add_imported_model(data, "broken/not-gguf", text)
    missing = data / "llamacpp" / "models" / "broken" / "missing"
    missing.mkdir(parents=True)
    write_model_yml(missing, {"model_path": "llamacpp/models/broken/missing/model.gguf"})
    older = data / "models" / "Mistral-7B-Instruct-v0_3-Q4_K_M"
    older.mkdir(parents=True)
    (older / "model.json").write_text('{"name": "older copy"}')
    write_llamacpp_settings(
        data,
        {
            "llamacpp_env": "LD_PRELOAD=/tmp/evil.so",
            "device": "Vulkan0",
            "threads": 2,
            "flash_attn": "off",
            "ubatch_size": 256,
            "cont_batching": "yes please",  # not a bool: left out, not fatal
            "version_backend": "b1/../../bin",
        },
    )
    return data


def services(data: Path) -> Services:
    return Services.create(load_settings(home=data, env={}))


def test_every_model_jan_keeps_is_listed_with_its_id_and_broken_ones_beside(
    tmp_path: Path,
) -> None:
    data = jan_folder(tmp_path)
    entries = services(data).store.list()
    by_id = {e.id: e for e in entries if e.jan_file is not None}
    assert sorted(by_id) == [
        "Mistral-7B-Instruct-v0_3-Q4_K_M",
        "broken/device",
        "broken/missing",
        "broken/not-gguf",
        "broken/yaml",
        "ggml-org/vision",
        "nomic/embed",
        NESTED,
    ]
    ready = {i for i, e in by_id.items() if e.status == "ready"}
    assert ready == {"Mistral-7B-Instruct-v0_3-Q4_K_M", "ggml-org/vision", "nomic/embed", NESTED}
    errors = {i: str(e.error) for i, e in by_id.items() if e.status == "invalid"}
    assert "llamacpp/models/broken/yaml/model.yml is not valid YAML" in errors["broken/yaml"]
    assert (
        "'model_path'" in errors["broken/device"]
        and "not a regular file" in errors["broken/device"]
    )
    assert "not a GGUF model" in errors["broken/not-gguf"]
    assert "secret-bytes" not in errors["broken/not-gguf"]
    assert "does not exist" in errors["broken/missing"]
    older = [e for e in entries if e.jan_file is None]
    assert [e.status for e in older] == ["invalid"]
    assert "models/Mistral-7B-Instruct-v0_3-Q4_K_M" in str(older[0].error)
    assert "Jan's is used" in str(older[0].error)


def test_model_yml_means_what_model_json_means(tmp_path: Path) -> None:
    data = jan_folder(tmp_path)
    store = services(data).store
    nested = store.get(NESTED)
    assert nested.info is not None and nested.jan_file is not None
    params = nested.info.engine_parameters
    assert params["ctx_len"] == 1536 and params["ngl"] == 0
    assert params["chat_template"] == "{{ messages[0].content }}"
    assert nested.info.model_parameters == {"temperature": 0.2, "top_k": 20}
    assert nested.info.metadata["model_sha256"] == "ab" * 32
    assert nested.model_path == data / "llamacpp" / "models" / NESTED / "model.gguf"
    # Jan's llama.cpp settings, whitelisted: never llamacpp_env, a device or a version path
    assert params["cpu_threads"] == 2 and params["flash_attn"] == "off"
    assert params["extra_args"] == ["--ubatch-size", "256"]
    assert not {"llamacpp_env", "device", "version_backend", "cont_batching"} & set(params)
    embed = store.get("nomic/embed")
    assert embed.info is not None
    eparams = embed.info.engine_parameters
    assert eparams["embedding"] is True and eparams["pooling"] == "mean"
    assert "ctx_len" not in eparams  # 0: the model's own (Hearth's default, grown on demand)
    assert eparams["extra_args"] == [
        "--ubatch-size", "256", "--batch-size", "2048", "--ubatch-size", "2048",
    ]  # fmt: skip
    vision = store.get("ggml-org/vision")
    assert vision.info is not None and vision.info.engine_parameters["mmproj"] == "mmproj.gguf"
    imported = store.get("Mistral-7B-Instruct-v0_3-Q4_K_M")
    assert imported.model_path == tmp_path / "home" / "alice" / "gguf" / "Mistral-7B.gguf"
    assert imported.info is not None and imported.info.name == "Mistral-7B"
    store.check_launch(imported, [])  # the user's own file, used where it is


def test_a_bad_settings_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    data = jan_folder(tmp_path)
    (data / "llamacpp" / "settings.json").write_text("{not json")
    entry = services(data).store.get(NESTED)
    assert entry.status == "ready" and entry.info is not None
    assert "cpu_threads" not in entry.info.engine_parameters


def test_a_fifo_for_llamacpp_settings_is_refused_not_read(tmp_path: Path) -> None:
    """A FIFO would block the listing (on the event loop) until some writer came: refused."""
    data = jan_folder(tmp_path)
    settings = data / "llamacpp" / "settings.json"
    settings.unlink(missing_ok=True)
    good = '[{"key": "threads", "controllerProps": {"value": 3}}]'
    with fifo_feeding(settings, good):
        entry = services(data).store.get(NESTED)
    assert entry.status == "ready" and entry.info is not None
    assert "cpu_threads" not in entry.info.engine_parameters


def test_jan_walk_stops_at_a_model_folder_and_skips_hidden_and_linked_folders(
    tmp_path: Path,
) -> None:
    data = jan_folder(tmp_path)
    inner = data / "llamacpp" / "models" / NESTED / "inner"
    add_downloaded_model(data, f"{NESTED}/inner", _gguf(tmp_path / "i.gguf"))
    assert (inner / "model.yml").exists()
    hidden = data / "llamacpp" / "models" / ".trash"
    hidden.mkdir()
    (hidden / "model.yml").write_text("model_path: x")
    os.symlink(data / "llamacpp" / "models" / "nomic", data / "llamacpp" / "models" / "link")
    store = services(data).store
    ids = {e.id for e in store.list()}
    assert f"{NESTED}/inner" not in ids and ".trash" not in ids and "link/embed" not in ids
    for hidden_id in (f"{NESTED}/inner", "link/embed"):
        with pytest.raises(ModelNotFound):
            store.get(hidden_id)


@pytest.mark.parametrize(
    "bad", ["../x", "a/../b", "/etc/passwd", "a//b", "a/", ".hidden/x", "a/./b", "a\\b", ""]
)
def test_jan_ids_never_leave_llamacpp_models(tmp_path: Path, bad: str) -> None:
    assert not is_valid_jan_id(bad)
    with pytest.raises(InvalidModelId):
        services(jan_folder(tmp_path)).store.get(bad)


def test_a_jan_id_never_names_a_hearth_folder(tmp_path: Path) -> None:
    """`models/foo/model.json` is the older tree's `foo`, never the Jan id `models/foo`."""
    data = jan_folder(tmp_path)
    (data / "models" / "foo").mkdir()
    (data / "models" / "foo" / "model.json").write_text("{}")
    store = services(data).store
    with pytest.raises(ModelNotFound):
        store.get("models/foo")
    with pytest.raises(ModelNotFound):
        store.get("../../models/foo".replace("../", "x/"))


def test_edits_and_deletes_of_jan_models_write_jans_files(tmp_path: Path) -> None:
    """Once refused (issue 25's reader); now written as Jan would (tests/test_jan_writes.py)."""
    store = services(jan_folder(tmp_path)).store
    folder = tmp_path / "data" / "llamacpp" / "models" / NESTED
    assert store.update(NESTED, {"name": "x"}).info.name == "x"  # type: ignore[union-attr]
    assert read_model_yml(folder / "model.yml")["name"] == "x"
    store.delete(NESTED)
    assert not folder.exists()


def test_a_changed_model_yml_is_read_again_an_unchanged_one_is_not(tmp_path: Path) -> None:
    data = jan_folder(tmp_path)
    store = services(data).store
    first = store.get(NESTED)
    assert store.get(NESTED) is first
    folder = data / "llamacpp" / "models" / NESTED
    text = (folder / "model.yml").read_text().replace("ctx_size: 1536", "ctx_size: 2048")
    (folder / "model.yml").write_text(text)
    again = store.get(NESTED)
    assert again is not first and again.info is not None
    assert again.info.engine_parameters["ctx_len"] == 2048
    write_llamacpp_settings(data, {"threads": 3})
    third = store.get(NESTED)
    assert third.info is not None and third.info.engine_parameters["cpu_threads"] == 3


def test_files_in_jans_older_tree_are_never_imported(tmp_path: Path) -> None:
    """models/ in a Jan folder is Jan's older tree: the drop-in watcher stays off there."""
    from tests.support.server import ThreadedServer

    data = jan_folder(tmp_path)
    dropped = _gguf(data / "models" / "dropped.gguf")
    with ThreadedServer(services(data)) as server:
        assert server.services.watcher is None
        with server.http() as http:
            ids = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert dropped.is_file() and not (data / "models" / "dropped").exists()
    assert "dropped" not in ids and NESTED in ids


def test_chat_template_a_body_a_builtin_name_or_a_file_inside_the_folder(tmp_path: Path) -> None:
    data = jan_folder(tmp_path)
    tiny = _gguf(tmp_path / "t.gguf")
    for own in ("file", "relative"):  # a template file in the model's own folder
        inside = data / "llamacpp" / "models" / "t" / own / "chat_template.jinja"
        inside.parent.mkdir(parents=True)
        inside.write_text("{{ 'from a file' }}")
    secret = tmp_path / "secret.jinja"
    secret.write_text("{{ 'outside' }}")
    (data / "settings.json").write_text('{"api_key": "{{ sk-SECRET }}"}')
    own_file = data / "llamacpp/models/t/file/chat_template.jinja"
    add_imported_model(data, "t/file", tiny, chat_template=str(own_file))
    add_imported_model(
        data, "t/relative", tiny, chat_template="llamacpp/models/t/relative/chat_template.jinja"
    )
    add_imported_model(data, "t/builtin", tiny, chat_template="chatml")
    add_imported_model(data, "t/outside", tiny, chat_template=str(secret))
    add_imported_model(data, "t/device", tiny, chat_template="/dev/zero")
    add_imported_model(data, "t/climb", tiny, chat_template="../secret.jinja")
    # inside the data folder but not the model's own folder: Jan's settings.json, a neighbour's
    add_imported_model(data, "t/settings", tiny, chat_template="settings.json")
    add_imported_model(
        data, "t/neighbour", tiny, chat_template="llamacpp/models/t/file/chat_template.jinja"
    )
    store = services(data).store
    for model_id in ("t/file", "t/relative"):
        info = store.get(model_id).info
        assert info is not None and info.engine_parameters["chat_template"] == "{{ 'from a file' }}"
    builtin = store.get("t/builtin").info
    assert builtin is not None and "chat_template" not in builtin.engine_parameters
    for model_id in ("t/outside", "t/device", "t/climb", "t/settings", "t/neighbour"):
        entry = store.get(model_id)
        assert entry.status == "invalid" and "'chat_template'" in str(entry.error), model_id
        assert "{{" not in str(entry.error)  # a file's text is never quoted


def test_a_yaml_alias_bomb_is_refused_not_expanded(tmp_path: Path) -> None:
    """Aliases make a few bytes of model.yml into a huge structure (Jan never writes one):
    that model is invalid, named, and nothing ever walks the expansion."""
    data = jan_folder(tmp_path)
    _gguf(tmp_path / "b.gguf")
    layers = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    layers += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    folder = data / "llamacpp" / "models" / "bomb"
    folder.mkdir()
    text = "\n".join([f"model_path: {tmp_path / 'b.gguf'}", *layers, "size_bytes: *a8"]) + "\n"
    (folder / "model.yml").write_text(text)
    entry = services(data).store.get("bomb")
    assert entry.status == "invalid" and "anchors or aliases" in str(entry.error)
    assert entry.raw is None and len(entry.to_api_json()) < 4096


def test_a_fifo_for_model_yml_and_bad_values_are_named_not_fatal(tmp_path: Path) -> None:
    data = jan_folder(tmp_path)
    fifo = data / "llamacpp" / "models" / "odd" / "fifo"
    fifo.mkdir(parents=True)
    os.mkfifo(fifo / "model.yml")  # never blocks the list
    tiny = _gguf(tmp_path / "v.gguf")
    add_imported_model(data, "odd/ctx", tiny, ctx_size=10**12)
    add_imported_model(data, "odd/temp", tiny, temperature=500)
    add_imported_model(data, "odd/word", tiny, n_gpu_layers="all")
    by_id = {e.id: e for e in services(data).store.list()}
    assert "not a regular file" in str(by_id["odd/fifo"].error)
    assert "'ctx_size' (Hearth's ctx_len)" in str(by_id["odd/ctx"].error)
    assert "'temperature' is 500" in str(by_id["odd/temp"].error)
    assert "'n_gpu_layers' is 'all'" in str(by_id["odd/word"].error)
    assert all(by_id[i].status == "invalid" for i in ("odd/fifo", "odd/ctx", "odd/temp"))
    assert by_id[NESTED].status == "ready"
