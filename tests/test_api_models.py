"""The OpenAI Models API on a real server over HTTP, with the official openai client."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import FAKE_GGUF, make_model
from support.server import ThreadedServer

from hearth.models.links import FileRoots


def test_openai_client_lists_retrieves_and_deletes(server: ThreadedServer, home: Path) -> None:
    make_model(home, "alpha", {}, {"alpha.gguf": FAKE_GGUF})
    make_model(
        home,
        "beta",
        {"name": "Beta", "sources": [{"filename": "b.gguf", "url": "https://x/b.gguf"}]},
    )
    client = server.openai()
    page = client.models.list()
    assert [m.id for m in page.data] == ["alpha", "beta"]
    alpha = client.models.retrieve("alpha")
    assert (alpha.object, alpha.owned_by) == ("model", "you")
    assert isinstance(alpha.created, int)
    extra = alpha.model_extra or {}
    assert extra["status"] == "ready" and extra["size"] == len(FAKE_GGUF)
    assert client.models.retrieve("beta").model_extra["status"] == "missing"
    deleted = client.models.delete("alpha")
    assert (deleted.id, deleted.deleted, deleted.object) == ("alpha", True, "model")
    assert not (home / "models" / "alpha").exists()
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("alpha")
    assert info.value.body["code"] == "model_not_found"


def test_list_shape_and_every_spec_field(server: ThreadedServer, home: Path) -> None:
    make_model(home, "m1", {}, {"m1.gguf": FAKE_GGUF})
    with server.http() as http:
        body = http.get("/v1/models").json()
    assert body["object"] == "list"
    (item,) = body["data"]
    for key in (
        "id",
        "object",
        "created",
        "owned_by",
        "name",
        "version",
        "description",
        "format",
        "engine",
        "engine_parameters",
        "model_parameters",
        "metadata",
        "assets",
        "sources",
        "status",
        "size",
    ):
        assert key in item, key
    assert item["format"] == "ggufv3" and item["engine"] == "llama-cpp" and item["version"] == "1"


def test_broken_folders_never_break_the_list(server: ThreadedServer, home: Path) -> None:
    make_model(home, "good", {}, {"good.gguf": FAKE_GGUF})
    make_model(home, "badjson", "{not json", {"x.gguf": FAKE_GGUF})
    make_model(home, "badtype", {"settings": {"ctx_len": "huge"}})
    make_model(home, "array", "[1, 2]")
    make_model(home, "one", {"id": "shared"})
    make_model(home, "two", {"id": "shared"})
    (home / "models" / "dirjson" / "model.json").mkdir(parents=True)
    (home / "models" / "empty").mkdir()
    (home / "models" / "loose.txt").write_text("hello")
    (home / "models" / ".hidden").mkdir()
    with server.http() as http:
        response = http.get("/v1/models")
        assert response.status_code == 200
        by_id = {m["id"]: m for m in response.json()["data"]}
        assert set(by_id) == {"good", "badjson", "badtype", "array", "one", "two", "dirjson"}
        assert by_id["good"]["status"] == "ready"
        for bad in ("badjson", "badtype", "array", "one", "two", "dirjson"):
            assert by_id[bad]["status"] == "invalid", bad
        assert "models/badjson/model.json is not valid JSON" in by_id["badjson"]["error"]
        assert "engine_parameters.ctx_len" in by_id["badtype"]["error"]
        assert "whole number" in by_id["badtype"]["error"]
        assert "both claim the id 'shared'" in by_id["one"]["error"]
        assert "models/two/model.json" in by_id["one"]["error"]
        # an invalid model is retrievable (to see why) and deletable by its folder name
        assert http.get("/v1/models/badjson").json()["status"] == "invalid"
        assert http.delete("/v1/models/two").json()["deleted"] is True
        assert http.get("/v1/models/shared").json()["status"] == "missing"  # valid again, no files


def test_changes_on_disk_show_in_the_next_list(server: ThreadedServer, home: Path) -> None:
    with server.http() as http:
        assert http.get("/v1/models").json()["data"] == []
        folder = make_model(home, "fresh", {"name": "First"})
        assert http.get("/v1/models").json()["data"][0]["name"] == "First"
        (folder / "model.json").write_text(json.dumps({"name": "Second"}))
        assert http.get("/v1/models").json()["data"][0]["name"] == "Second"
        (folder / "model.json").write_text("{oops")
        assert http.get("/v1/models").json()["data"][0]["status"] == "invalid"
        (folder / "model.json").write_text("{}")
        (folder / "fresh.gguf").write_bytes(FAKE_GGUF)
        item = http.get("/v1/models/fresh").json()
        assert (item["status"], item["size"]) == ("ready", len(FAKE_GGUF))


def test_patch_merges_validates_and_keeps_unknown_fields(
    server: ThreadedServer, home: Path
) -> None:
    folder = make_model(
        home, "m", {"settings": {"ctx_len": 2048, "prompt_template": "{prompt}"}, "x_tool": [1]}
    )
    with server.http() as http:
        r = http.patch("/v1/models/m", json={"engine_parameters": {"ngl": 20}, "description": "hi"})
        assert r.status_code == 200, r.text
        assert r.json()["engine_parameters"] == {
            "ctx_len": 2048,
            "prompt_template": "{prompt}",
            "ngl": 20,
        }
        on_disk = json.loads((folder / "model.json").read_text())
        assert on_disk == {
            "settings": {"ctx_len": 2048, "prompt_template": "{prompt}", "ngl": 20},
            "x_tool": [1],
            "description": "hi",
        }
        r = http.patch("/v1/models/m", json={"engine_parameters": {"ctx_len": "big"}})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "engine_parameters.ctx_len"
        assert json.loads((folder / "model.json").read_text()) == on_disk  # untouched
        r = http.patch("/v1/models/m", json={"id": "other"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "id"
        r = http.patch("/v1/models/m", content=b"[1]", headers={"content-type": "application/json"})
        assert r.status_code == 400 and set(r.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        assert http.patch("/v1/models/nope", json={}).json()["error"]["code"] == "model_not_found"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("patch", "field", "fragment"),
    [
        ({"engine_parameters": {"ctx_len": 10**30}}, "engine_parameters.ctx_len",
         "from 1 to 16,777,216"),
        ({"engine_parameters": {"n_parallel": 10**9}}, "engine_parameters.n_parallel",
         "from 1 to 256"),
        ({"created": 10**40}, "created", "from 0 to 253,402,300,799,999"),
        ({"sources": "x"}, "sources", "not a URL"),
        ({"model_parameters": {"temperature": 1e300}}, "model_parameters.temperature",
         "from 0 to 100"),
        ({"model_parameters": {"max_tokens": 10**20}}, "model_parameters.max_tokens",
         "from -1 to 16,777,216"),
        ({"model_parameters": {"top_p": "high"}}, "model_parameters.top_p", "a number"),
    ],
)  # fmt: skip
def test_patch_refuses_absurd_values_and_writes_nothing(
    server: ThreadedServer, home: Path, patch: dict[str, Any], field: str, fragment: str
) -> None:
    """Every known field has a type and every known number a range: a 400 names the field,
    the range and the fix, and model.json stays as it was."""
    folder = make_model(home, "m", {"settings": {"ctx_len": 2048}}, {"m.gguf": FAKE_GGUF})
    before = (folder / "model.json").read_bytes()
    with server.http() as http:
        r = http.patch("/v1/models/m", json=patch)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == field and fragment in error["message"], error
        assert http.get("/v1/models/m").json()["status"] == "ready"
    assert (folder / "model.json").read_bytes() == before


def test_a_file_with_absurd_values_is_listed_invalid_with_the_reason(
    server: ThreadedServer, home: Path
) -> None:
    make_model(home, "huge", {"settings": {"ctx_len": 10**30}}, {"huge.gguf": FAKE_GGUF})
    make_model(home, "ancient", {"created": 10**40}, {"ancient.gguf": FAKE_GGUF})
    make_model(home, "nan", '{"parameters": {"temperature": NaN}}', {"nan.gguf": FAKE_GGUF})
    with server.http() as http:
        r = http.get("/v1/models")
        assert r.status_code == 200
        by_id = {m["id"]: m for m in r.json()["data"]}
        tags = http.get("/api/tags")
    assert tags.status_code == 200
    assert by_id["huge"]["status"] == "invalid"
    assert "engine_parameters.ctx_len" in by_id["huge"]["error"]
    assert "from 1 to 16,777,216" in by_id["huge"]["error"]
    assert by_id["ancient"]["status"] == "invalid" and "'created'" in by_id["ancient"]["error"]
    assert by_id["nan"]["status"] == "invalid" and "finite" in by_id["nan"]["error"]


def test_jans_placeholder_sources_and_profile_urls_load(server: ThreadedServer, home: Path) -> None:
    """Shapes Jan itself shipped: a source meaning "no file yet", and a remote model naming
    its built-in profile's own URL. They load (not `invalid`) as they did before issue 8."""
    make_model(home, "placeholder", {"sources": [{"url": "", "filename": ""}], "engine": "nitro"})
    make_model(home, "placeholder-url", {"source_url": "", "engine": "nitro"})
    remote = {"engine": "openai", "format": "api"}
    make_model(home, "gpt-4o", {**remote, "settings": {"base_url": "https://api.openai.com/v1"}})
    make_model(home, "near-miss", {**remote, "settings": {"base_url": "https://api.openai.com/v"}})
    with server.http() as http:
        by_id = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert by_id["placeholder"]["status"] == "missing", by_id["placeholder"]
    assert by_id["placeholder-url"]["status"] == "missing", by_id["placeholder-url"]
    assert by_id["gpt-4o"]["status"] != "invalid", by_id["gpt-4o"]
    assert by_id["near-miss"]["status"] == "invalid"
    assert "engines/openai/engine.json" in by_id["near-miss"]["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/%2E%2E",
        "/v1/models/.hidden",
        "/v1/models/a%2F..%2Fb",
        "/v1/models/a%2F%2Fb",
        "/v1/models/.hidden%2Fb",
        "/v1/models/a%5Cb",
        "/v1/models/a%00b",
        "/v1/models/" + "x" * 129,
        "/v1/models/%2Fetc%2Fpasswd",
        "/v1/models/..%2F..%2Fetc",
    ],
)
def test_bad_ids_are_rejected_before_touching_disk(server: ThreadedServer, path: str) -> None:
    with server.http() as http:
        for method in ("GET", "DELETE", "PATCH"):
            r = http.request(method, path, json={} if method == "PATCH" else None)
            assert r.status_code == 400, (method, path, r.text)
            assert r.json()["error"]["code"] == "invalid_model_id"


def test_an_encoded_slash_is_a_nested_id_like_jans(server: ThreadedServer) -> None:
    """`a%2Fb` is the id `a/b` (Jan's ids nest; clients encode the slash): none here."""
    with server.http() as http:
        for method in ("GET", "DELETE", "PATCH"):
            r = http.request(method, "/v1/models/a%2Fb", json={} if method == "PATCH" else None)
            assert r.status_code == 404, (method, r.text)
            assert r.json()["error"]["code"] == "model_not_found"


def test_errors_are_openai_shaped_never_bare(server: ThreadedServer) -> None:
    with server.http() as http:
        for method, path, status in [("GET", "/v1/nope", 404), ("PUT", "/v1/models", 405)]:
            r = http.request(method, path)
            assert r.status_code == status
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_delete_never_touches_files_outside_the_folder(
    server: ThreadedServer, home: Path, tmp_path: Path
) -> None:
    original = tmp_path / "mine" / "precious.gguf"
    original.parent.mkdir()
    original.write_bytes(FAKE_GGUF)
    FileRoots(home).add([original])  # what `hearth models import --mode link` records
    folder = make_model(
        home, "linked", {"sources": [{"filename": "precious.gguf", "url": original.as_uri()}]}
    )
    os.symlink(original, folder / "alias.gguf")
    real_folder = tmp_path / "mine" / "folder-model"
    real_folder.mkdir()
    (real_folder / "model.json").write_text("{}")
    (real_folder / "w.gguf").write_bytes(FAKE_GGUF)
    os.symlink(real_folder, home / "models" / "symlinked")
    with server.http() as http:
        assert http.get("/v1/models/linked").json()["status"] == "ready"
        assert http.delete("/v1/models/linked").status_code == 200
        assert http.delete("/v1/models/symlinked").status_code == 200
    assert original.read_bytes() == FAKE_GGUF
    assert (real_folder / "w.gguf").exists() and (real_folder / "model.json").exists()
    assert (
        not (home / "models" / "linked").exists() and not (home / "models" / "symlinked").exists()
    )


def test_status_tracks_files_and_partials(server: ThreadedServer, home: Path) -> None:
    src = {"sources": [{"filename": "w.gguf", "url": "https://example.com/w.gguf"}]}
    folder = make_model(home, "dl", src)
    with server.http() as http:
        assert http.get("/v1/models/dl").json()["status"] == "missing"
        (folder / "w.gguf.part").write_bytes(b"GGUF")
        assert http.get("/v1/models/dl").json()["status"] == "downloading"
        os.replace(folder / "w.gguf.part", folder / "w.gguf")
        assert http.get("/v1/models/dl").json()["status"] == "ready"


def test_llama_model_path_that_exists_wins_over_stale_sources(
    server: ThreadedServer, home: Path
) -> None:
    make_model(
        home,
        "jan",
        {
            "sources": [{"filename": "old-name.gguf", "url": "https://x/old-name.gguf"}],
            "settings": {"llama_model_path": "renamed.gguf"},
        },
        {"renamed.gguf": FAKE_GGUF},
    )
    with server.http() as http:
        item = http.get("/v1/models/jan").json()
    assert item["status"] == "ready" and item["size"] == len(FAKE_GGUF)


def _three_models(server: ThreadedServer, home: Path) -> list[str]:
    """Models old, mid, new (1 minute apart): their ids newest first, as Anthropic lists."""
    for i, name in enumerate(["old", "mid", "new"]):
        folder = make_model(home, name, {"name": name.title()}, {f"{name}.gguf": FAKE_GGUF})
        os.utime(folder / "model.json", (1_700_000_000 + i * 60,) * 2)
    with server.http() as http:
        created = {m["id"]: m["created"] for m in http.get("/v1/models").json()["data"]}
    return sorted(created, key=lambda k: (-created[k], k))


def test_anthropic_version_gets_anthropics_shape(server: ThreadedServer, home: Path) -> None:
    """With `anthropic-version` (the `anthropic` SDK, Claude Code) /v1/models answers as
    Anthropic's Models API: newest first, paged by limit / after_id / before_id."""
    order = _three_models(server, home)
    with server.http(headers={"anthropic-version": "2023-06-01"}) as http:
        page = http.get("/v1/models", params={"limit": 2}).json()
        rest = http.get("/v1/models", params={"after_id": order[1]}).json()
        before = http.get("/v1/models", params={"before_id": order[2], "limit": 5}).json()
        one = http.get(f"/v1/models/{order[0]}").json()
        for query in ("limit=0", "limit=x", "after_id=nope", "after_id=new&before_id=old"):
            assert http.get(f"/v1/models?{query}").status_code == 400, query
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    assert [m["id"] for m in page["data"]] == order[:2] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (order[0], order[1])
    assert [m["id"] for m in rest["data"]] == order[2:] and rest["has_more"] is False
    assert [m["id"] for m in before["data"]] == order[:2] and before["has_more"] is False
    assert one == page["data"][0]
    assert set(one) == {"type", "id", "display_name", "created_at"} and one["type"] == "model"
    assert one["display_name"] == order[0].title() and one["created_at"].endswith("Z")
    with server.http() as http:  # without the header: OpenAI's shape, as before
        assert http.get("/v1/models").json()["object"] == "list"
        assert http.get("/v1/models/new").json()["object"] == "model"


@pytest.mark.slow  # importing the anthropic SDK takes a second or more
def test_anthropic_client_lists_and_pages_models(server: ThreadedServer, home: Path) -> None:
    import anthropic

    order = _three_models(server, home)
    client = server.keep(anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0))
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == order[:2] and page.has_more is True
    assert [m.id for m in client.models.list(limit=2)] == order  # the SDK follows after_id
    model = client.models.retrieve(order[1])
    assert model.display_name == order[1].title() and model.created_at.year == 2023
