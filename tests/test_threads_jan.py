"""Conversations in today's Jan shape (desktop 0.6 to 0.8), read and written.

A Jan thread built from the spec's shapes (jan-data-folder.md §5: reasoning inline and as parts,
tool calls in `metadata.tool_calls` and as `tool_call` parts, times in ms and in seconds, a
malformed line, a legacy model id) is read through the real server's threads API and continued by
a run on SmolLM2; what the run sends the engine is checked (no `<think>`, the tool calls as
`tool_calls` plus `tool` results). A conversation Hearth writes is checked field by field against
today's Jan. The composer and the shape helpers have unit tests here too.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import add_smol
from support.jan_threads import THINK, TID, WEATHER_CALL, jan_thread_files, text_parts
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services
from hearth.threads import edits, jan
from hearth.threads.answer import ThreadReply, chat_request
from hearth.threads.views import thread_model

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def expected_chat() -> list[dict[str, Any]]:
    """What the model must be sent for `jan_thread_files`: no reasoning, calls then results."""
    forecast = {"name": "get_forecast", "arguments": '{"city": "Paris"}'}
    return [
        {"role": "system", "content": "You are Jan."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
        {"role": "user", "content": "And tomorrow?"},
        {
            "role": "assistant",
            "content": "Rain is expected.",
            "tool_calls": [{"id": "call_2", "type": "function", "function": forecast}],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "Rain"},
        {"role": "user", "content": "Thanks. Reply with one word."},
    ]


# ---- pure pieces -------------------------------------------------------------------------------


def test_inline_reasoning_is_split_from_the_answer() -> None:
    assert jan.split_think(f"<think>{THINK}</think>\n\nLet me check.") == (THINK, "Let me check.")
    assert jan.split_think("  <think>still thinking") == ("still thinking", "")
    assert jan.split_think("No reasoning <think>here</think>") == (
        "",
        "No reasoning <think>here</think>",
    )
    assert jan.with_think("", "x") == "x" and jan.with_think("r", "x") == "<think>r</think>x"


def test_tool_calls_are_read_from_metadata_and_from_parts() -> None:
    _, lines = jan_thread_files()
    second, fifth = json.loads(lines[1]), json.loads(lines[4])
    assert jan.tool_calls(second) == [
        {
            "id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "result": "18 C and sunny",
            "state": "completed",
        }
    ]
    assert jan.tool_calls(fifth)[0]["arguments"] == '{"city": "Paris"}'
    odd = {
        "metadata": {
            "tool_calls": [
                None,
                {"tool": 3},
                {
                    "tool": {"function": {"name": "f", "arguments": "not json"}},
                    "response": {"error": "boom"},
                },
            ]
        }
    }
    assert jan.tool_calls(odd) == [
        {
            "id": None,
            "name": "f",
            "arguments": '{"input": "not json"}',
            "result": "Tool execution failed: boom",
            "state": None,
        }
    ]


def test_legacy_model_ids_read_as_jan_reads_them() -> None:
    legacy = {"assistants": [{"model": {"id": "unsloth:Qwen3-4B-GGUF:Qwen3-4B-Q4_K_M.gguf"}}]}
    assert thread_model(legacy) == "unsloth/Qwen3-4B-GGUF"
    assert thread_model({"assistants": [{"model": {"id": "qwen3:4b"}}]}) == "qwen3:4b"
    assert thread_model({"assistants": [{"id": "model-only", "model": {"id": "*"}}]}) is None
    assert thread_model({"model": {"id": "smol", "provider": "llamacpp"}}) == "smol"


def test_the_composer_strips_reasoning_and_replays_tool_calls() -> None:
    thread, lines = jan_thread_files()
    messages = [json.loads(line) for i, line in enumerate(lines) if i != 2]
    body, _ = chat_request(thread, messages, {"parameters": {"max_tokens": 4}})
    assert body["messages"] == expected_chat()
    assert "<think>" not in json.dumps(body["messages"])
    # a call with no result yet is not replayed: the engine would refuse an unanswered call
    pending = {
        **messages[1],
        "metadata": {"tool_calls": [{**WEATHER_CALL, "response": None, "state": "pending"}]},
    }
    body, _ = chat_request(thread, [messages[0], pending, messages[-1]], {})
    assert body["messages"][2] == {"role": "assistant", "content": "Let me check."}
    # a stored `tool` message joins only a call sent before it
    tool = {"role": "tool", "tool_call_id": "call_1", "content": text_parts("stray")}
    body, _ = chat_request(thread, [messages[0], tool, messages[-1]], {})
    assert [m["role"] for m in body["messages"]] == ["system", "user", "user"]


def test_an_answer_is_stored_as_today_jan_writes_it() -> None:
    reply = ThreadReply()
    reply.feed(
        b'data: {"choices":[{"delta":{"reasoning_content":"Hmm."}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c9","type":"function",'
        b'"function":{"name":"lookup","arguments":"{\\"q\\":1}"}}]}}]}\n\n'
        b'data: {"choices":[{"delta":{},"finish_reason":"tool_calls"}]}\n\n'
    )
    assert reply.parts() == text_parts("<think>Hmm.</think>Hi")
    assert reply.metadata()["tool_calls"] == [
        {
            "tool": {
                "id": "c9",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q":1}'},
            },
            "response": None,
            "state": "pending",
        }
    ]


def test_new_threads_and_messages_have_today_jan_fields() -> None:
    raw = edits.new_thread({"title": "t", "model": "smol"})
    assert raw["assistants"] == [
        {"id": "model-only", "name": "Model", "model": {"id": "smol", "engine": "llamacpp"}}
    ]
    assert raw["model"] == {"id": "smol", "provider": "llamacpp"}
    assert raw["metadata"] == {"is_favorite": False} and raw["created"] < 1e12
    remote = edits.new_thread({"model": "gpt-4o"}, provider="openai")
    assert remote["model"] == {"id": "gpt-4o", "provider": "openai"}
    assert remote["assistants"][0]["model"]["engine"] == "openai"
    message = edits.new_message({"role": "user", "content": "hi"})
    assert message["created_at"] > 1e12 and message["completed_at"] > 1e12
    assert ULID.match(message["id"])


# ---- through the real server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("janthreads") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol")
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http(trust_env=False) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def write_jan_thread(threads_dir: Path) -> Path:
    thread, lines = jan_thread_files()
    folder = threads_dir / TID
    folder.mkdir(parents=True)
    (folder / "thread.json").write_text(json.dumps(thread, indent=2), encoding="utf-8")
    (folder / "messages.jsonl").write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_a_jan_thread_is_read_and_continued_by_a_run(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    folder = write_jan_thread(srv.services.settings.home / "threads")
    before = (folder / "messages.jsonl").read_bytes()
    thread = ok(http.get(f"/v1/threads/{TID}"))
    assert thread["model"] == "smol" and thread["created"] == 1751012600.123
    assert thread["metadata"]["is_favorite"] is True and thread["x_jan_later"] == {"kept": True}
    listed = ok(http.get(f"/v1/threads/{TID}/messages"))
    assert listed["skipped_lines"] == [3]  # the torn line is named; the rest is shown
    shown = listed["data"]
    assert [m["id"][-1] for m in shown] == ["1", "2", "3", "4", "5"]
    assert shown[0]["created_at"] == 1751012639.307 and shown[2]["created_at"] == 1751012700
    assert shown[1]["metadata"]["tool_calls"] == [WEATHER_CALL]
    exported = http.get(f"/v1/threads/{TID}/export", params={"format": "markdown"})
    assert exported.status_code == 200 and THINK not in exported.text
    assert '*Tool call* `get_weather` `{"city":"Paris"}`: 18 C and sunny' in exported.text

    sent: list[dict[str, Any]] = []
    threads = srv.services.threads
    real = threads.open_inference

    async def spy(path: str, body: dict[str, Any], keep_alive: float | None) -> Any:
        sent.append(json.loads(json.dumps(body)))
        return await real(path, body, keep_alive)

    threads.open_inference = spy  # the real engine answers; this only records the request
    try:
        params = {"temperature": 0, "seed": 7, "max_tokens": 6}
        answer = ok(
            http.post(f"/v1/threads/{TID}/runs", json={"stream": False, "parameters": params})
        )
    finally:
        threads.open_inference = real
    assert answer["status"] == "ready", answer
    assert sent[0]["messages"] == expected_chat()
    data = (folder / "messages.jsonl").read_bytes()
    assert data.startswith(before) and data.endswith(b"\n")  # appended; the torn line kept
    added = json.loads(data[len(before) :].splitlines()[-1])
    assert added["status"] == "ready" and added["created_at"] > 1e12
    assert added["completed_at"] >= added["created_at"]


@pytest.mark.slow
def test_a_conversation_hearth_writes_is_today_jan_shape(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    created = ok(
        http.post(
            "/v1/threads",
            json={
                "title": "Hi",
                "model": "smol",
                "messages": [{"role": "user", "content": "Say hi."}],
            },
        )
    )
    tid = created["id"]
    assert uuid.UUID(tid).version == 4 and str(uuid.UUID(tid)) == tid
    ok(http.post(f"/v1/threads/{tid}/messages", json={"role": "user", "content": "Now."}))
    params = {"temperature": 0, "seed": 7, "max_tokens": 6}
    ok(http.post(f"/v1/threads/{tid}/runs", json={"stream": False, "parameters": params}))
    folder = srv.services.settings.home / "threads" / tid
    thread = json.loads((folder / "thread.json").read_text(encoding="utf-8"))
    assert thread["id"] == tid and thread["object"] == "thread" and thread["title"] == "Hi"
    for key in ("created", "updated"):  # seconds, as Date.now() / 1000
        assert isinstance(thread[key], float | int) and 1.7e9 < thread[key] < 1e12
    assert thread["updated"] >= thread["created"]
    assert thread["assistants"][0]["id"] == "model-only"
    assert thread["assistants"][0]["name"] == "Model"
    assert thread["assistants"][0]["model"]["id"] == "smol"
    assert thread["assistants"][0]["model"]["engine"] == "llamacpp"
    assert thread["model"] == {"id": "smol", "provider": "llamacpp"}
    assert thread["metadata"]["is_favorite"] is False
    data = (folder / "messages.jsonl").read_text(encoding="utf-8")
    assert data.endswith("\n")
    lines = data.splitlines()
    assert len(lines) == 3
    for line in lines:  # one compact object a line, as Jan writes them
        message = json.loads(line)
        assert line == json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        assert ULID.match(message["id"]) and message["object"] == "thread.message"
        assert message["thread_id"] == tid and message["status"] == "ready"
        assert message["created_at"] > 1e12 and message["completed_at"] >= message["created_at"]
        assert isinstance(message["created_at"], int)
        (part,) = message["content"]
        assert part["type"] == "text" and part["text"]["annotations"] == []
        assert isinstance(part["text"]["value"], str)
        assert isinstance(message["metadata"], dict)
    assert [json.loads(line)["role"] for line in lines] == ["user", "user", "assistant"]
    # an edit keeps every key Jan (or anyone) wrote
    first = json.loads(lines[0])
    first["x_kept"] = {"a": 1}
    (folder / "messages.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    ok(http.post(f"/v1/threads/{tid}", json={"title": "Renamed"}))
    edited = ok(
        http.patch(f"/v1/threads/{tid}/messages/{first['id']}", json={"content": "Say hello."})
    )
    assert edited["x_kept"] == {"a": 1}
    again = json.loads((folder / "thread.json").read_text(encoding="utf-8"))
    assert again["title"] == "Renamed" and again["model"] == thread["model"]
    assert again["assistants"] == thread["assistants"]
