"""Scaling out: a Hearth model served by another OpenAI-compatible server process.

The upstream here is a second, separate `hearth serve` process with an API key (standing in for
a vLLM/SGLang cluster or a bigger machine); the front Hearth relays to it through the
`openai-compatible` engine, the key read from an environment variable at request time.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from conftest import make_model
from support.engines import add_smol
from support.server import HearthProcess, ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

HI = [{"role": "user", "content": "Say hi"}]


def test_relay_to_a_second_server_process(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream_home = tmp_path / "upstream"
    pinned = {"max_tokens": 4, "temperature": 0, "seed": 42}  # the same answer every run
    add_smol(upstream_home, "big-model", model_parameters=pinned)
    with HearthProcess(upstream_home, "--api-key", "upstream-key") as upstream:
        monkeypatch.setenv("UPSTREAM_KEY", "upstream-key")
        # The upstream's URL and the variable holding its key live together in the user's
        # engines/<name>/engine.json; the model.json names the engine and the upstream model.
        engine_json = home / "engines" / "gpu-box" / "engine.json"
        engine_json.parent.mkdir(parents=True)
        engine_json.write_text(
            json.dumps(
                {
                    "type": "openai-compatible",
                    "base_url": f"{upstream.url}/v1",
                    "api_key_env": "UPSTREAM_KEY",
                }
            )
        )
        make_model(
            home,
            "cluster",
            {"engine": "gpu-box", "format": "api", "engine_parameters": {"model": "big-model"}},
        )
        with ThreadedServer(Services.create(load_settings(home=home, env={}))) as front:
            client = front.openai()
            reply = client.chat.completions.create(model="cluster", messages=HI, max_tokens=3)
            assert reply.choices[0].message.content
            chunks = list(
                client.chat.completions.create(
                    model="cluster", messages=HI, max_tokens=3, stream=True
                )
            )
            assert any(c.choices and c.choices[0].delta.content for c in chunks)
            text = client.completions.create(model="cluster", prompt="Once", max_tokens=3)
            assert text.choices[0].text is not None
            monkeypatch.setenv("UPSTREAM_KEY", "wrong")
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(model="cluster", messages=HI, max_tokens=3)
            _refusals_pass_through_on_v1_and_are_translated_elsewhere(front, upstream)
            with front.http() as http:
                models = http.get("/v1/models").json()["data"]
            assert [(m["id"], m["status"]) for m in models] == [("cluster", "ready")]


def _refusals_pass_through_on_v1_and_are_translated_elsewhere(
    front: ThreadedServer, upstream: HearthProcess
) -> None:
    """A remote's refusal is already in OpenAI's shape, with its own words: OpenAI's face
    passes it through byte for byte; the Ollama and Anthropic faces write it in their own
    shape, as any engine refusal."""
    body = {"messages": HI, "max_tokens": 3}
    with httpx.Client(base_url=upstream.url, timeout=60) as direct:
        own = direct.post(
            "/v1/chat/completions",
            json={**body, "model": "big-model"},
            headers={"Authorization": "Bearer wrong"},
        )
    assert own.status_code == 401
    said = own.json()["error"]["message"]
    with front.http() as http:
        v1 = http.post("/v1/chat/completions", json={**body, "model": "cluster"})
        assert (v1.status_code, v1.content) == (401, own.content)
        ollama = http.post(
            "/api/chat", json={"model": "cluster", "messages": HI, "stream": False}
        )
        assert ollama.status_code == 401
        assert ollama.json() == {"error": f"The engine answered: {said}"}
        anthropic = http.post(
            "/v1/messages",
            json={"model": "cluster", "messages": HI, "max_tokens": 3},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert anthropic.status_code == 401
        error = anthropic.json()
        assert error["type"] == "error"
        assert error["error"]["message"] == f"The engine answered: {said}"
