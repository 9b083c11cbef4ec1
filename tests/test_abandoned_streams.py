"""A client that leaves in the instant after the engine answered, before the first byte.

Such a client must not keep the model's lease (`active_requests` stuck at 1, a model that never
unloads), leave the engine writing for nobody, or leave a thread run's answer `pending`. It
holds today because Starlette starts a streamed body even when its client is already gone (the
body's first step runs before the first point where the cancellation lands, so the generator's
`finally` closes the engine's stream); this guards that against a change in the stack. The
client is scripted at the ASGI level, on the app's own event loop, so the moment it leaves is
exact: it sends its body, stays silent while the engine opens, and has left when the response
begins. A real SmolLM2 engine answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import add_smol

from hearth.core.config import load_settings
from hearth.server.app import create_app
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

PINNED = {"temperature": 0, "seed": 42}
LONG = {"max_tokens": 400, "ignore_eos": True}  # the engine would write on for a while


async def _leave_before_the_first_byte(app: Any, path: str, body: dict[str, Any]) -> list[Any]:
    """POST `body` as a client that is gone by the time the response starts; what was sent."""
    raw = json.dumps(body).encode()
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": raw, "more_body": False}
        if calls == 2:  # Hearth watching the client while the engine opens: silence
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}  # ... and gone when the answer begins

    sent: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:1337"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 1337),
    }
    await app(scope, receive, send)
    assert calls == 3, "the script must reach the moment it means to test"
    return sent


async def _until(check: Any, limit: float = 60.0) -> bool:
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return bool(await check())


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/api/chat"])
def test_a_stream_left_before_its_first_byte_releases_the_model(home: Path, path: str) -> None:
    add_smol(home, "smol", {"n_parallel": 1}, model_parameters=PINNED)
    app = create_app(Services.create(load_settings(home=home, env={})))
    ask = [{"role": "user", "content": "Tell me a long story."}]
    body: dict[str, Any] = {"model": "smol", "messages": ask, "stream": True, **LONG}
    if path == "/api/chat":
        body = {"model": "smol", "messages": ask, "options": {"num_predict": 400}}

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as h:

                async def idle() -> bool:
                    data = (await h.get("/v1/running")).json()["data"]
                    return bool(data) and data[0]["active_requests"] == 0

                await _leave_before_the_first_byte(app, path, body)
                assert await _until(idle), "the model's lease was never released"
                small = {"model": "smol", "messages": ask, "max_tokens": 2}
                answer = await h.post("/v1/chat/completions", json=small, timeout=120)
                assert answer.status_code == 200

    asyncio.run(scenario())


def test_a_thread_run_left_before_its_first_byte_is_stopped_not_pending(home: Path) -> None:
    add_smol(home, "smol", {"n_parallel": 1}, model_parameters=PINNED)
    app = create_app(Services.create(load_settings(home=home, env={})))

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as h:
                made = await h.post(
                    "/v1/threads",
                    json={"model": "smol", "messages": [{"role": "user", "content": "Hi"}]},
                )
                thread = made.json()["id"]
                run = {"stream": True, "parameters": LONG}
                await _leave_before_the_first_byte(app, f"/v1/threads/{thread}/runs", run)

                async def answer() -> dict[str, Any]:
                    listed = (await h.get(f"/v1/threads/{thread}/messages")).json()["data"]
                    return next(m for m in listed if m["role"] == "assistant")

                async def ended() -> bool:
                    return (await answer())["status"] != "pending"

                assert await _until(ended), "the answer was left pending"
                assert (await answer())["status"] == "stopped"
                data = (await h.get("/v1/running")).json()["data"]
                assert data[0]["active_requests"] == 0

    asyncio.run(scenario())
