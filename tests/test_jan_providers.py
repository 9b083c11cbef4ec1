"""Jan's remote providers: shown with the engine.json that would enable each, never used on
their own, their keys never read, echoed or logged (issue 25, point 5)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.cli.main import main
from hearth.core.config import load_settings
from hearth.services import Services
from hearth.services.jan_providers import MAX_SETTINGS_BYTES, engine_folder, jan_providers
from tests.support.cli import CliRunner
from tests.support.janfolder import fifo_feeding, make_jan_folder
from tests.support.server import ThreadedServer

SECRET = "sk-live-NEVER-SHOWN-4f9a2c"
HEADER_SECRET = "hdr-NEVER-SHOWN-77"

PROVIDERS: list[Any] = [
    {"provider": "llamacpp", "active": True, "base_url": "", "models": [{"id": "local/x"}]},
    {
        "provider": "openai",
        "active": True,
        "base_url": "https://api.openai.com/v1",
        "api_key": SECRET,
        "api_key_fallbacks": [SECRET + "-2"],
        "custom_header": [],
        "settings": [{"key": "api-key", "controller_props": {"value": SECRET}}],
        "models": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini", "name": "mini"}],
    },
    {
        "provider": "anthropic",
        "active": False,
        "base_url": "https://api.anthropic.com/v1/",
        "models": [{"id": "claude-sonnet-4-5"}],
    },
    {
        "provider": "My Corp/../../LLM",
        "active": True,
        "base_url": f"https://alice:{SECRET}@llm.corp.example:8443/v1?key={SECRET}#{SECRET}",
        "custom_header": [{"header": "X-Org", "value": HEADER_SECRET}],
        "models": [{"id": "corp/m1"}, {"id": 7}, "junk"],
    },
    {"provider": "evil", "base_url": "file:///etc/passwd", "api_key": SECRET},
    {"provider": "ftp", "base_url": "ftp://files.example/v1"},
    {"provider": "..", "base_url": "http://127.0.0.1:9/v1"},
    "not a provider",
    {"provider": 42, "base_url": {"not": "a url"}, "models": "nope"},
]


def _folder(tmp_path: Path, providers: list[Any] | None = None) -> Path:
    return make_jan_folder(
        tmp_path / "data", providers=PROVIDERS if providers is None else providers
    )


def _by_engine(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["engine"]: p for p in answer["data"]}


def test_each_provider_shown_with_the_engine_json_that_would_enable_it(tmp_path: Path) -> None:
    data = _folder(tmp_path)
    answer = jan_providers(load_settings(home=data, env={}))
    shown = _by_engine(answer)
    assert answer["jan"] is True and answer["error"] is None
    assert "llamacpp" not in shown  # Jan's local engine is not a remote provider
    openai = shown["openai"]
    assert openai["engine_json"] == {
        "type": "openai-compatible",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
    }
    assert openai["engine_json_path"] == str(data / "hearth" / "engines" / "openai" / "engine.json")
    assert openai["models"] == ["gpt-4o", "gpt-4o-mini"] and openai["active"] is True
    assert openai["configured"] == "built-in profile"
    assert "a model.json and the key variable are enough" in openai["notes"][0]
    assert openai["model_json"] == {
        "engine": "openai",
        "format": "api",
        "engine_parameters": {"model": "gpt-4o"},
    }
    assert openai["model_json_path"] == str(data / "models" / "openai-gpt-4o" / "model.json")
    anthropic = shown["anthropic"]
    assert anthropic["engine_json"]["base_url"] == "https://api.anthropic.com/v1"
    assert anthropic["api_key_env"] == "ANTHROPIC_API_KEY" and anthropic["configured"] is None
    assert anthropic["active"] is False


def test_keys_and_credentials_in_the_blob_never_come_out(tmp_path: Path) -> None:
    answer = jan_providers(load_settings(home=_folder(tmp_path), env={}))
    text = json.dumps(answer)
    assert SECRET not in text and HEADER_SECRET not in text
    corp = _by_engine(answer)["my-corp-llm"]
    assert corp["engine_json"]["base_url"] == "https://llm.corp.example:8443/v1"
    assert corp["models"] == ["corp/m1"] and corp["models_total"] == 3
    assert any("user info, query or fragment" in n for n in corp["notes"])
    assert any("X-Org" in n for n in corp["notes"])  # the header's name, never its value


def test_non_http_urls_and_odd_names_are_never_suggested(tmp_path: Path) -> None:
    shown = _by_engine(jan_providers(load_settings(home=_folder(tmp_path), env={})))
    for engine in ("evil", "ftp"):
        assert shown[engine]["engine_json"] is None
        assert "not http(s)" in shown[engine]["notes"][0]
    # '..' and a number are no folder names: each gets a plain one, never a path
    assert "jan-provider-7" in shown and shown["jan-provider-7"]["name"] == ".."
    assert shown["provider-9"]["name"] == "provider 9"  # a name that is no string
    for engine in shown:
        assert "/" not in engine and "\\" not in engine and not engine.startswith(".")
    assert engine_folder("../../etc", 0) == "etc" and engine_folder("Ü", 3) == "jan-provider-4"
    assert engine_folder("a..b", 0) == "a-b" and engine_folder("x" * 300, 0) == "x" * 64


def test_a_provider_named_like_a_hearth_engine_kind_gets_its_own_folder(tmp_path: Path) -> None:
    """`llama-cpp` is Hearth's local engine (its engine.json holds llama.cpp's defaults): a Jan
    provider called that must never be told to overwrite it."""
    odd = [
        {"provider": "Llama CPP", "base_url": "https://a.example/v1"},
        {"provider": "openai-compatible", "base_url": "https://b.example/v1"},
    ]
    shown = jan_providers(load_settings(home=_folder(tmp_path, odd), env={}))["data"]
    assert [p["engine"] for p in shown] == ["jan-llama-cpp", "jan-openai-compatible"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"model-provider": "{broken"}).encode(), "not valid JSON"),
        (
            json.dumps({"model-provider": json.dumps({"state": {"providers": 3}})}).encode(),
            "no providers list",
        ),
        (b"[" * 200_000 + b"]" * 200_000, "not valid JSON"),
        (json.dumps({"model-provider": "[" * 100_000}).encode(), "not valid JSON"),
        (b" " * (MAX_SETTINGS_BYTES + 1), "larger than"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_a_broken_or_huge_settings_json_is_an_error_never_an_exception(
    tmp_path: Path, content: bytes, says: str
) -> None:
    data = _folder(tmp_path, [])
    (data / "settings.json").write_bytes(content)
    answer = jan_providers(load_settings(home=data, env={}))
    assert answer["data"] == [] and says in answer["error"]


def test_the_suggestion_is_an_engine_hearth_accepts(tmp_path: Path) -> None:
    """Written as shown, the engine.json and model.json make a remote model Hearth lists as
    usable (not `invalid`), and the provider then reads as configured."""
    data = _folder(tmp_path)
    settings = load_settings(home=data, env={})
    corp = _by_engine(jan_providers(settings))["my-corp-llm"]
    for key in ("engine_json", "model_json"):
        path = Path(corp[f"{key}_path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(corp[key]))
    services = Services.create(settings)
    model_id = Path(corp["model_json_path"]).parent.name
    record = services.get_model(model_id)
    assert record["status"] != "invalid", record
    remote = services.engines.planner.profile(services.store.get(model_id))
    assert remote.base_url == "https://llm.corp.example:8443/v1"
    assert remote.api_key_env == "MY_CORP_LLM_API_KEY" and remote.upstream_model == "corp/m1"
    assert _by_engine(jan_providers(settings))["my-corp-llm"]["configured"] == "engine.json"


def test_the_route_answers_without_keys_and_logs_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _folder(tmp_path)
    caplog.set_level(logging.DEBUG)
    services = Services.create(load_settings(home=data, env={}))
    with ThreadedServer(services) as server, server.http() as client:
        answer = client.get("/v1/jan/providers")
        schema = client.get("/openapi.json").json()
        (data / "settings.json").write_bytes(b"\x00garbage")
        broken = client.get("/v1/jan/providers")
    assert answer.status_code == 200 and SECRET not in answer.text
    assert {p["engine"] for p in answer.json()["data"]} >= {"openai", "anthropic", "evil"}
    assert "/v1/jan/providers" in schema["paths"]
    assert broken.status_code == 200 and "not valid JSON" in broken.json()["error"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in logged and HEADER_SECRET not in logged


def test_lone_surrogates_in_the_blob_are_never_a_500(tmp_path: Path) -> None:
    odd = [
        {
            "provider": "x\ud800y",
            "base_url": "https://h.example/v\udfff",
            "models": [{"id": "m\ud800"}],
        }
    ]
    data = _folder(tmp_path, odd)
    with ThreadedServer(Services.create(load_settings(home=data, env={}))) as server:
        answer = httpx.get(f"{server.url}/v1/jan/providers")
    assert answer.status_code == 200
    (shown,) = answer.json()["data"]
    assert shown["engine"] == "x-y" and shown["name"] == "x?y" and shown["models"] == ["m?"]


def test_outside_a_jan_folder_there_are_none(tmp_path: Path) -> None:
    services = Services.create(load_settings(home=tmp_path / "home", env={}))
    with ThreadedServer(services) as server:
        answer = httpx.get(f"{server.url}/v1/jan/providers").json()
    assert answer == {"object": "list", "jan": False, "data": [], "error": None}


def test_cli_lists_them_after_the_table_and_json_keeps_its_shape(tmp_path: Path) -> None:
    data = _folder(tmp_path)
    env = {"HEARTH_HOME": None, "NO_COLOR": "1"}
    table = CliRunner().invoke(main, ["--home", str(data), "models", "list"], env=env)
    assert table.exit_code == 0, table.output
    assert "Jan's remote providers" in table.output
    assert '"api_key_env": "OPENAI_API_KEY"' in table.output
    assert "export ANTHROPIC_API_KEY=" in table.output
    assert SECRET not in table.output and HEADER_SECRET not in table.output
    plain = CliRunner().invoke(main, ["--home", str(data), "ls", "--json"], env=env)
    assert json.loads(plain.output) == []  # the bare list, as before
    both = CliRunner().invoke(main, ["--home", str(data), "ls", "--json", "--providers"], env=env)
    parsed = json.loads(both.output)
    assert parsed["models"] == [] and len(parsed["jan_providers"]["data"]) == 7
    assert SECRET not in both.output


def test_a_fifo_for_jans_settings_is_refused_not_read(tmp_path: Path) -> None:
    """A FIFO would block the route until some writer came: named and refused."""
    data = _folder(tmp_path)
    blob = (data / "settings.json").read_text()
    (data / "settings.json").unlink()
    with fifo_feeding(data / "settings.json", blob):
        answer = jan_providers(load_settings(home=data, env={}))
    assert answer["data"] == []
    assert "not a regular file" in (answer["error"] or "")
