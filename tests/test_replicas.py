"""Replicas: routing rules (pure logic) and two real llama.cpp processes behind one model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import CliRunner
from support.engines import add_smol, gone, running, until
from support.server import ThreadedServer
from support.smollm import cache_dir

from hearth.cli.main import main as app
from hearth.core.config import load_settings
from hearth.engines.replicas import Prefix, Replica, Router, prefix_of
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

SYSTEM = {"role": "system", "content": "You are terse."}


def _turns(*contents: str) -> list[dict[str, str]]:
    roles = ["user", "assistant"]
    return [SYSTEM, *({"role": roles[i % 2], "content": c} for i, c in enumerate(contents))]


def _replicas(*active: int) -> list[Replica]:
    return [Replica(i, status="running", active=a) for i, a in enumerate(active)]


def test_prefix_hashes_grow_with_the_conversation() -> None:
    first = prefix_of({"messages": _turns("hi")})
    follow = prefix_of({"messages": _turns("hi", "hello", "more")})
    other = prefix_of({"messages": _turns("bye")})
    assert len(first.hashes) == 2 and len(follow.hashes) == 4
    assert follow.hashes[:2] == first.hashes and other.hashes[1] != first.hashes[1]
    assert not first.remember_all
    prompt = prefix_of({"prompt": "x" * 600})
    assert len(prompt.hashes) == 3 and prompt.remember_all
    assert prefix_of({"input": "embed me"}).hashes == []


def test_a_follow_up_goes_where_its_prefix_is_cached_unless_that_replica_is_busier() -> None:
    router = Router("prefix")
    replicas = _replicas(0, 0)
    turn1 = prefix_of({"messages": _turns("hi")})
    served = router.choose(replicas, turn1)
    turn2 = prefix_of({"messages": _turns("hi", "hello", "more")})
    for _ in range(5):  # ties would rotate; affinity wins every time
        assert router.choose(replicas, turn2) is served
    other = replicas[1 - served.index]
    served.active = 1  # busier than the other: least busy wins over the cache
    assert router.choose(replicas, turn2) is other
    other.active = 1  # as busy as each other: the replica that saw this prefix last wins
    assert router.choose(replicas, turn2) is other
    branch = prefix_of({"messages": _turns("hi", "hello", "other question")})
    assert router.choose(replicas, branch) is served  # its longest known prefix is turn 1


def test_least_busy_ignores_history_and_rotates_ties() -> None:
    router = Router("least-busy")
    replicas = _replicas(0, 0, 0)
    conversation = prefix_of({"messages": _turns("hi")})
    picks = [router.choose(replicas, conversation).index for _ in range(6)]
    assert sorted(set(picks)) == [0, 1, 2]
    replicas[0].active, replicas[1].active = 2, 1
    assert router.choose(replicas, conversation) is replicas[2]


def test_only_running_replicas_get_requests_and_memory_is_bounded() -> None:
    router = Router("prefix", capacity=4)
    replicas = _replicas(0, 0)
    replicas[0].status = "restarting"
    assert all(router.choose(replicas, Prefix([bytes([i])])) is replicas[1] for i in range(10))
    assert len(router._owner) == 4


# ---- two real llama.cpp processes ---------------------------------------------------------


@pytest.fixture
def srv(home: Path) -> Iterator[ThreadedServer]:
    add_smol(home, "smol-two", {"replicas": 2})
    add_smol(home, "smol-one")
    settings = load_settings(home=home, env={"HEARTH_IMPORT_DIRS": str(cache_dir())})
    with ThreadedServer(Services.create(settings)) as server:
        yield server


def _served(srv: ThreadedServer) -> list[int]:
    with srv.http() as http:
        return [r["requests_served"] for r in running(http)["smol-two"]["replicas"]]


def test_two_llama_cpp_replicas_serve_one_model(srv: ThreadedServer) -> None:
    with srv.http() as http:
        started = http.post("/v1/models/smol-two/start", json={})
        assert started.status_code == 200, started.text
        body: dict[str, Any] = started.json()
    replicas = body["replicas"]
    assert [r["status"] for r in replicas] == ["running", "running"]
    assert len({r["pid"] for r in replicas}) == 2 and len({r["port"] for r in replicas}) == 2
    assert body["pid"] == replicas[0]["pid"] and body["replica_routing"] == "prefix"
    engines = srv.services.engines
    one = engines.planner.plan(srv.services.store.get("smol-one")).memory_bytes
    assert body["memory_estimate"] == 2 * one  # each replica holds its own weights and cache

    # A conversation's turns stay on the replica that holds its prefix.
    client = srv.openai()
    messages: list[dict[str, str]] = [SYSTEM, {"role": "user", "content": "Name a colour."}]
    for turn in range(3):
        reply = client.chat.completions.create(model="smol-two", messages=messages, max_tokens=4)
        messages += [
            {"role": "assistant", "content": reply.choices[0].message.content or ""},
            {"role": "user", "content": f"And another one ({turn})?"},
        ]
    assert sorted(_served(srv)) == [0, 3]

    # `hearth ps` shows each replica under its model.
    cli = CliRunner(env={"HEARTH_PORT": str(srv.port)})
    shown = cli.invoke(app, ["--home", str(srv.services.settings.home), "ps"])
    assert shown.exit_code == 0, shown.output
    assert "replica 0" in shown.output and "replica 1" in shown.output
    assert all(str(r["pid"]) in shown.output for r in replicas)

    pids = [r["pid"] for r in replicas]
    with srv.http() as http:
        assert http.post("/v1/models/smol-two/stop").status_code == 200
        assert "smol-two" not in running(http)
    assert until(lambda: all(gone(pid) for pid in pids), 15)


def test_a_free_slot_is_not_busy() -> None:
    """With 4 slots per replica, a follow-up keeps its warm replica while a slot is free there,
    and moves only when it would wait for one while another replica has room."""
    router = Router("prefix", slots=4)
    replicas = _replicas(0, 0)
    turn1 = prefix_of({"messages": _turns("hi")})
    home = router.choose(replicas, turn1)
    other = replicas[1 - home.index]
    turn2 = prefix_of({"messages": _turns("hi", "hello", "more")})
    home.active = 3  # three running there, none on the other: a slot is still free
    assert router.choose(replicas, turn2) is home
    home.active = 4  # full: the request would wait there
    assert router.choose(replicas, turn2) is other


# ---- a forced tool call follows its conversation (issue 24, point 6) ----------------------

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up in the dictionary.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string", "maxLength": 12}},
            "required": ["word"],
        },
    },
}


def test_a_forced_tool_call_goes_to_the_replica_holding_its_conversation(home: Path) -> None:
    """A named `tool_choice` is two engine requests (`/apply-template`, then `/v1/completions`
    with the rendered prompt). The completion is routed by the chat's messages, so turn 2 lands
    on the replica that served turn 1 and the engine reuses turn 1's prompt from its cache
    (llama.cpp's `timings.cache_n`); routed by its prompt text, which no earlier request had,
    it went to the other replica and read the whole conversation again (cache_n 0)."""
    add_smol(home, "smol-tools", {"replicas": 2, "chat_template": HERMES})
    settings = load_settings(home=home, env={"HEARTH_IMPORT_DIRS": str(cache_dir())})
    with ThreadedServer(Services.create(settings)) as srv, srv.http() as http:
        messages: list[dict[str, Any]] = [SYSTEM, {"role": "user", "content": "Define river."}]
        pinned = {"model": "smol-tools", "tools": [LOOKUP], "temperature": 0, "seed": 42}
        first = http.post(
            "/v1/chat/completions",
            json={**pinned, "messages": messages, "tool_choice": "none", "max_tokens": 2},
        )
        assert first.status_code == 200, first.text
        turn1 = first.json()
        messages += [
            {"role": "assistant", "content": turn1["choices"][0]["message"]["content"] or ""},
            {"role": "user", "content": "Look it up."},
        ]
        forced = {"type": "function", "function": {"name": "lookup"}}
        second = http.post(
            "/v1/chat/completions",
            json={**pinned, "messages": messages, "tool_choice": forced, "max_tokens": 40},
        )
        assert second.status_code == 200, second.text
        call = second.json()["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "lookup"
        assert second.json()["timings"]["cache_n"] >= turn1["usage"]["prompt_tokens"] - 1
        served = [r["requests_served"] for r in running(http)["smol-tools"]["replicas"]]
        assert sorted(served) == [0, 3]  # turn 1, /apply-template, the completion
