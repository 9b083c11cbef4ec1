"""The Ollama API version Hearth reports, and the request fields Ollama added up to it.

Codex CLI's `--oss` mode reads /api/version and refuses anything older than 0.13.4 ("Ollama
0.12.0 is too old. Codex requires Ollama 0.13.4 or newer"), because it talks to Ollama's
/v1/responses. Hearth serves that route, so it reports the release whose API it answers
(`manage.OLLAMA_API_VERSION`), and the fields that release added are read, or refused clearly
where Hearth cannot answer them (logprobs). A real server with one model that never loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.core.errors import InvalidParameter
from hearth.server.ollama import translate
from hearth.services import Services

CODEX_MINIMUM = (0, 13, 4)  # codex-rs/ollama: the first Ollama with /v1/responses


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home: Path = tmp_path_factory.mktemp("ollama-version") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol")  # linked in, listing no sources (as an imported model); never loaded
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv, srv.http() as h:
        yield h


def test_version_is_new_enough_for_codex_oss(http: httpx.Client) -> None:
    reply = http.get("/api/version")
    assert reply.status_code == 200
    version = tuple(int(part) for part in reply.json()["version"].split("."))
    assert len(version) == 3 and version >= CODEX_MINIMUM


def test_what_codex_oss_calls_before_its_first_turn(http: httpx.Client) -> None:
    """--oss lists /api/tags and pulls the model unless a tag is exactly the name it was given
    (`-m smol` is listed as "smol:latest"), then talks to /v1/responses. Pulling a model that
    is here and whole answers "success", as Ollama does for a model it has: before, a model
    listing no sources (imported, linked) was an error line, and Codex stopped."""
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert names == ["smol:latest"]
    lines = http.post("/api/pull", json={"model": "smol", "stream": True}).text.splitlines()
    assert [json.loads(line) for line in lines][-1] == {"status": "success"}
    once = http.post("/api/pull", json={"model": "smol", "stream": False})
    assert once.status_code == 200 and once.json() == {"status": "success"}
    missing = http.post("/v1/responses", json={"model": "nope", "input": "hi"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "extra", [{"truncate": True}, {"truncate": False, "shift": False}, {"top_logprobs": 0}]
)
def test_fields_since_0_12_are_read(extra: dict[str, Any]) -> None:
    call = translate.chat_call({**CHAT, **extra}, "m")
    assert not {"truncate", "shift", "logprobs", "top_logprobs"} & call.body.keys()


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"truncate": "yes"}, "truncate"),
        ({"shift": 1}, "shift"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
    ],
)
def test_fields_since_0_12_refused_clearly(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        translate.generate_call({"model": "m", "prompt": "hi", **extra}, "m")
    assert caught.value.param == param
