"""No route holds the event loop (issue 22, point 1): the server runs on asyncio's loop in debug
mode, which logs every callback longer than 100 ms, while clients list a few thousand model
folders written by hand (a model.json without the GGUF's facts, so every model's header must be
read) through /api/tags, /v1/models, /api/show, /api/ps and the checks of inference routes.

Before the fix /api/tags read every header on the event loop, one list holding it for seconds.
Behaviour, not timings: the test fails on any slow callback the loop itself reports.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.debug_server import DebugLoopServer
from support.gguf_factory import gguf_bytes

pytestmark = pytest.mark.slow  # takes seconds (thousands of model folders): see pyproject

MODELS = 2000
#: A real (small) GGUF whose template renders tools: its capabilities come from the header only.
GGUF = gguf_bytes(
    name="Tiny",
    context_length=4096,
    embedding_length=64,
    chat_template="{% for m in messages %}{{ m.content }}{% endfor %}{{ tools }}",
)


def _populate(home: Path) -> list[str]:
    """MODELS folders, each a hand-written model.json and its own copy of the GGUF (one file
    per model: nothing is shared between two models' headers)."""
    ids = [f"hand-{i:04d}" for i in range(MODELS)]
    for model_id in ids:
        folder = home / "models" / model_id
        folder.mkdir(parents=True)
        raw = {"name": f"Hand {model_id}", "description": "written by hand, no metadata"}
        (folder / "model.json").write_text(json.dumps(raw), encoding="utf-8")
        (folder / "model.gguf").write_bytes(GGUF)
    named = home / "models" / ids[7] / "model.json"  # one model known by an Ollama name
    raw = {"name": "Named", "metadata": {"ollama": {"name": "hf.co/someone/hand:Q4"}}}
    named.write_text(json.dumps(raw), encoding="utf-8")
    return ids


def _lists(url: str, path: str, rounds: int) -> list[bytes]:
    with httpx.Client(base_url=url, timeout=120) as http:
        return [http.get(path).raise_for_status().content for _ in range(rounds)]


def _management(url: str, ids: list[str]) -> None:
    """/api/show (by id and by a recorded name), /api/ps, and a 404 that scans for names;
    the inference routes' capability checks, refused before any engine loads."""
    with httpx.Client(base_url=url, timeout=120) as http:
        shown = http.post("/api/show", json={"model": ids[3]}).raise_for_status().json()
        assert shown["details"]["family"] == "llama"
        assert "tools" in shown["capabilities"]
        named = http.post("/api/show", json={"model": "hf.co/someone/hand:Q4"})
        assert named.raise_for_status().json()["details"]["family"] == "llama"
        missing = http.post("/api/show", json={"model": "nobody:latest"})
        assert missing.status_code == 404
        assert http.get("/api/ps").raise_for_status().json() == {"models": []}
        image = {"role": "user", "content": "hi", "images": ["aGk="]}
        refused = http.post("/api/chat", json={"model": ids[5], "messages": [image]})
        assert refused.status_code == 400 and "images" in refused.text
        parts = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}]
        body = {"model": ids[6], "messages": [{"role": "user", "content": parts}]}
        refused = http.post("/v1/chat/completions", json=body)
        assert refused.status_code == 400 and "images" in refused.text
        # an id no folder has: the engines look through every model for a renamed one
        plain = {"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(5):
            assert http.post("/v1/chat/completions", json=plain).status_code == 404
            assert http.post("/v1/models/nobody/start").status_code == 404
            assert http.post("/v1/models/nobody/stop").status_code == 404


def test_lists_and_model_routes_never_hold_the_event_loop(home: Path) -> None:
    """Three clients on /api/tags, three on /v1/models (cold, then warm), and the other model
    routes at once: every list is whole, every header fact is there, no slow callback."""
    ids = _populate(home)
    with DebugLoopServer(home) as server, ThreadPoolExecutor(8) as pool:
        tags = [pool.submit(_lists, server.url, "/api/tags", 3) for _ in range(3)]
        models = [pool.submit(_lists, server.url, "/v1/models", 3) for _ in range(3)]
        checks = [pool.submit(_management, server.url, ids) for _ in range(2)]
        for future in checks:
            future.result()
        for future in tags:
            for content in future.result():
                listed = json.loads(content)["models"]
                assert len(listed) == MODELS
                assert {m["details"]["family"] for m in listed} == {"llama"}
        for future in models:
            for content in future.result():
                data = json.loads(content)["data"]
                assert [m["id"] for m in data] == ids
                assert all("tools" in m["capabilities"] for m in data)
    slow = server.slow_callbacks()
    assert not slow, "\n".join(slow)
