"""The Threads/Messages API and runs, end to end: the real server, the real SmolLM2 model, the
files on disk, and the `openai` client where OpenAI's SDK speaks this API.

One server for the module (runs share the loaded model); each test makes its own threads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

COLD = {"temperature": 0, "max_tokens": 12}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("threads") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol")
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http(trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def threads_dir(srv: ThreadedServer) -> Path:
    return srv.services.settings.home / "threads"


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def new_thread(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    return ok(http.post("/v1/threads", json=fields))  # type: ignore[no-any-return]


def stored(threads_dir: Path, tid: str) -> list[dict[str, Any]]:
    text = (threads_dir / tid / "messages.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def sse_text(lines: Iterator[str]) -> tuple[str, list[dict[str, Any]]]:
    text, chunks = "", []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[6:])
            chunks.append(chunk)
            for choice in chunk.get("choices") or []:
                text += choice["delta"].get("content") or ""
    return text, chunks


def test_create_post_and_stream_a_run(
    srv: ThreadedServer, http: httpx.Client, threads_dir: Path
) -> None:
    client = srv.openai()
    created = client.beta.threads.create(messages=[{"role": "user", "content": "Say hello."}])
    tid = created.id
    thread = ok(
        http.post(
            f"/v1/threads/{tid}",
            json={
                "title": "Greeting",
                "model": "smol",
                "instructions": "Answer in one short sentence.",
                # only request fields: these can neither swap the model nor reach the engine's flags
                "parameters": {
                    **COLD,
                    "model": "nope",
                    "stream": False,
                    "ctx_len": 1,
                    "n_gpu_layers": 999,
                },
            },
        )
    )
    assert thread["object"] == "thread" and thread["title"] == "Greeting"
    assert thread["model"] == "smol" and thread["parameters"]["max_tokens"] == 12
    on_disk = json.loads((threads_dir / tid / "thread.json").read_text())
    assert on_disk["assistants"][0]["model"]["id"] == "smol"
    with http.stream("POST", f"/v1/threads/{tid}/runs", json={}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        message_id = response.headers["x-hearth-message-id"]
        assert response.headers["x-hearth-thread-id"] == tid
        text, chunks = sse_text(response.iter_lines())
    assert text and chunks[0]["object"] == "chat.completion.chunk" and chunks[-1]["usage"]
    assistant = stored(threads_dir, tid)[-1]
    assert assistant["id"] == message_id and assistant["status"] == "ready"
    assert assistant["content"][0]["text"]["value"] == text and assistant["completed_at"]
    meta = assistant["metadata"]
    assert meta["timings"]["predicted_per_second"] > 0 and meta["timings"]["prompt_ms"] > 0
    assert meta["usage"]["completion_tokens"] <= 12 and meta["ttft_ms"] > 0
    messages = client.beta.threads.messages.list(tid)
    assert [m.role for m in messages.data] == ["user", "assistant"]
    assert messages.data[1].content[0].text.value == text
    assert ok(http.get(f"/v1/threads/{tid}"))["updated"] > thread["updated"]
    listed = ok(http.get("/v1/threads"))
    assert listed["object"] == "list" and listed["data"][0]["id"] == tid


def test_stop_mid_answer_keeps_the_partial_text(http: httpx.Client, threads_dir: Path) -> None:
    tid = new_thread(
        http,
        model="smol",
        messages=[{"role": "user", "content": "Write a long story about a dragon and a knight."}],
    )["id"]
    body = {"parameters": {"max_tokens": 400, "temperature": 0.8, "ignore_eos": True}}
    with http.stream("POST", f"/v1/threads/{tid}/runs", json=body) as response:
        message_id = response.headers["x-hearth-message-id"]
        text, first = "", 0.0
        lines = response.iter_lines()  # held: dropping it mid-way would close the connection
        for line in lines:
            if '"content":"' in line:
                text += json.loads(line[6:])["choices"][0]["delta"]["content"]
                first = first or time.monotonic()
            if first and time.monotonic() - first > 1.2:
                break
        # what a crash now would leave: the text so far, saved as it grows, still pending
        growing = ok(http.get(f"/v1/threads/{tid}/messages/{message_id}"))
        assert growing["status"] == "pending" and growing["content"][0]["text"]["value"]
    # leaving the `with` closes the stream: the stop button
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = ok(http.get(f"/v1/threads/{tid}/messages/{message_id}"))
        if message["status"] != "pending":
            break
        time.sleep(0.2)
    assert message["status"] == "stopped"
    partial = message["content"][0]["text"]["value"]
    assert partial.startswith(text) and len(partial) < 4000  # what it had said, not 400 tokens
    assert stored(threads_dir, tid)[-1]["status"] == "stopped"


def test_a_jan_thread_on_disk_is_listed_and_answered(http: httpx.Client, threads_dir: Path) -> None:
    folder = threads_dir / "jan_1712345678"
    folder.mkdir(parents=True)
    thread = {
        "id": "jan_1712345678",
        "object": "thread",
        "title": "From Jan",
        "assistants": [{"assistant_id": "jan", "model": {"id": "smol", "parameters": COLD}}],
        "created": 1712345678000,
        "updated": 1712345690000,
    }
    (folder / "thread.json").write_text(json.dumps(thread))
    line = {"id": "01HTQ1", "role": "user", "content": "Hi!", "created": 1712345680000}
    (folder / "messages.jsonl").write_text(json.dumps(line) + "\nnot json\n")
    listed = ok(http.get("/v1/threads", params={"limit": 1000}))["data"]
    found = next(t for t in listed if t["id"] == "jan_1712345678")
    assert found["created"] == 1712345678 and found["model"] == "smol"
    first = ok(http.get("/v1/threads/jan_1712345678/messages"))["data"][0]
    assert first["created_at"] == 1712345680
    assert first["content"] == [{"type": "text", "text": {"value": "Hi!", "annotations": []}}]
    answer = ok(http.post("/v1/threads/jan_1712345678/runs", json={"stream": False}))
    assert answer["status"] == "ready" and answer["content"][0]["text"]["value"]
    lines = (folder / "messages.jsonl").read_text().splitlines()
    assert lines[:2] == [json.dumps(line), "not json"] and len(lines) == 3


def test_a_thread_holding_lone_surrogates_exports_what_it_holds(
    http: httpx.Client, threads_dir: Path
) -> None:
    """A thread file with a lone surrogate (which JSON escapes but UTF-8 cannot hold) exports:
    the JSON export keeps it escaped (an import gives back the very same text), the Markdown
    export shows U+FFFD where it stood. A GET has no body to blame."""
    folder = threads_dir / "surrogates"
    folder.mkdir(parents=True)
    (folder / "thread.json").write_text('{"id": "surrogates", "title": "odd \\ud800 title"}')
    line = '{"id": "m1", "role": "user", "content": "half an emoji: \\ud83d!"}'
    (folder / "messages.jsonl").write_text(line + "\n")
    markdown = http.get("/v1/threads/surrogates/export", params={"format": "markdown"})
    assert markdown.status_code == 200, markdown.text
    assert markdown.text.startswith("# odd \ufffd title\n")
    assert "half an emoji: \ufffd!" in markdown.text
    exported = http.get("/v1/threads/surrogates/export")
    assert exported.status_code == 200, exported.text
    assert b"\\ud83d" in exported.content and b"\\ud800" in exported.content
    doc = json.loads(exported.content)
    assert doc["messages"][0]["content"] == "half an emoji: \ud83d!"
    assert doc["thread"]["title"] == "odd \ud800 title"


def test_edit_and_resend_search_and_export_import(
    srv: ThreadedServer, http: httpx.Client, threads_dir: Path
) -> None:
    tid = new_thread(
        http,
        title="Zebra facts",
        instructions="Be brief.",
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer about giraffes"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "another"},
        ],
    )["id"]
    ids = [m["id"] for m in ok(http.get(f"/v1/threads/{tid}/messages"))["data"]]
    newest = ok(http.get(f"/v1/threads/{tid}/messages", params={"order": "desc", "limit": 1}))
    assert newest["data"][0]["id"] == ids[-1] and newest["has_more"] is True
    for q, hit in (("ZEBRA", True), ("giraffe", True), ("nowhere-xyz", False)):
        found = [t["id"] for t in ok(http.get("/v1/threads", params={"q": q}))["data"]]
        assert (tid in found) is hit
    edited = ok(http.patch(f"/v1/threads/{tid}/messages/{ids[2]}", json={"content": "edited"}))
    assert edited["content"][0]["text"]["value"] == "edited"
    tagged = srv.openai().beta.threads.messages.update(ids[2], thread_id=tid, metadata={"k": "v"})
    assert tagged.metadata == {"k": "v"} and tagged.content[0].text.value == "edited"
    gone = ok(http.delete(f"/v1/threads/{tid}/messages/{ids[2]}", params={"and_after": "true"}))
    assert gone == {"id": ids[2], "object": "thread.message.deleted", "deleted": True, "count": 2}
    assert [m["id"] for m in stored(threads_dir, tid)] == ids[:2]

    export = http.get(f"/v1/threads/{tid}/export")
    assert export.headers["content-disposition"].startswith("attachment")
    doc = ok(export)
    assert doc["object"] == "hearth.thread.export" and len(doc["messages"]) == 2
    markdown = http.get(f"/v1/threads/{tid}/export", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Zebra facts") and "## System\n\nBe brief." in markdown.text
    copy = ok(http.post("/v1/threads/import", json=doc))
    assert copy["id"] != tid and copy["title"] == "Zebra facts"  # the id was taken
    assert ok(http.delete(f"/v1/threads/{tid}")) == {
        "id": tid,
        "object": "thread.deleted",
        "deleted": True,
    }
    assert not (threads_dir / tid).exists()
    back = ok(http.post("/v1/threads/import", json=doc))
    assert back["id"] == tid and stored(threads_dir, tid) == doc["messages"]


BAD_REQUESTS = [
    ("GET", "/v1/threads/nope", None, 404, "thread_not_found"),
    ("GET", "/v1/threads/%2e%2e", None, 400, "invalid_thread_id"),
    ("GET", "/v1/threads/a%00b/messages", None, 400, "invalid_thread_id"),
    ("GET", "/v1/threads/" + "x" * 200, None, 400, "invalid_thread_id"),
    ("GET", "/v1/threads/%2Fetc%2Fpasswd/messages", None, 404, "not_found"),  # no such route
    ("DELETE", "/v1/threads/.hidden", None, 400, "invalid_thread_id"),
    ("GET", "/v1/threads/{tid}/messages/nope", None, 404, "message_not_found"),
    ("GET", "/v1/threads/{tid}/messages/%2e%2e", None, 400, "invalid_message_id"),
    ("GET", "/v1/threads?limit=0", None, 400, None),
    ("GET", "/v1/threads?after=unknown", None, 400, None),
    ("GET", "/v1/threads/{tid}/messages?order=sideways", None, 400, None),
    ("GET", "/v1/threads/{tid}/export?format=pdf", None, 400, None),
    ("POST", "/v1/threads", {"title": 5}, 400, None),
    ("POST", "/v1/threads", {"model": "../../etc"}, 400, "invalid_model_id"),
    ("POST", "/v1/threads", {"messages": [{"role": "wizard", "content": "x"}]}, 400, None),
    ("POST", "/v1/threads", [1, 2], 400, None),
    ("POST", "/v1/threads/{tid}", {"parameters": "hot"}, 400, None),
    ("POST", "/v1/threads/{tid}/messages", {"role": "user"}, 400, None),
    (
        "POST",
        "/v1/threads/{tid}/messages",
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}
            ],
        },
        400,
        None,
    ),
    ("PATCH", "/v1/threads/{tid}/messages/{mid}", {"status": "done"}, 400, None),
    ("POST", "/v1/threads/{tid}/runs", {"stream": "yes"}, 400, None),
    ("POST", "/v1/threads/{tid}/runs", {"parameters": 3}, 400, None),
    ("POST", "/v1/threads/{tid}/runs", {}, 400, None),  # no model anywhere
    ("POST", "/v1/threads/{tid}/runs", {"model": "ghost"}, 404, "model_not_found"),
    ("POST", "/v1/threads/{tid}/runs", {"model": "a/../../b"}, 400, "invalid_model_id"),
    ("POST", "/v1/threads/nope/runs", {"model": "smol"}, 404, "thread_not_found"),
    ("POST", "/v1/threads/import", {"object": "hearth.thread.export"}, 400, None),
    (
        "POST",
        "/v1/threads/import",
        {"object": "hearth.thread.export", "version": 1, "thread": {}, "messages": "x"},
        400,
        None,
    ),
]


def test_every_error_is_a_4xx_in_openai_shape(http: httpx.Client, threads_dir: Path) -> None:
    tid = new_thread(http, messages=[{"role": "user", "content": "x"}])["id"]
    mid = ok(http.get(f"/v1/threads/{tid}/messages"))["data"][0]["id"]
    before = (threads_dir / tid / "messages.jsonl").read_bytes()
    for method, path, body, status, code in BAD_REQUESTS:
        url = path.format(tid=tid, mid=mid)
        response = (
            http.request(method, url, json=body) if body is not None else http.request(method, url)
        )
        assert response.status_code == status, (method, url, response.text)
        error = response.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error", (url, error)
        if code:
            assert error["code"] == code, (url, error)
    for raw in (b"null", b"[1, 2]", b'"run"'):  # a run's body is a JSON object, as every route's
        run = http.post(f"/v1/threads/{tid}/runs", content=raw, headers=JSON)
        assert run.status_code == 400, run.text
        assert "must be a JSON object" in run.json()["error"]["message"], run.text
    assert (threads_dir / tid / "messages.jsonl").read_bytes() == before  # nothing was written
    text = http.post(
        f"/v1/threads/{tid}/messages", content=b"role=user", headers={"content-type": "text/plain"}
    )
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_media_type"
    huge = {"role": "user", "content": "x" * (33 * 1024 * 1024)}  # over the 32 MiB default
    assert http.post(f"/v1/threads/{tid}/messages", json=huge).status_code == 413


def text_of(message: dict[str, Any]) -> str:
    return str(message["content"][0]["text"]["value"])


def test_a_hard_linked_messages_file_is_never_written_through(
    http: httpx.Client, threads_dir: Path, tmp_path: Path
) -> None:
    tid = new_thread(http, messages=[{"role": "user", "content": "mine"}])["id"]
    messages = threads_dir / tid / "messages.jsonl"
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b'{"id": "o1", "role": "user", "content": "not yours"}\n')
    before = outside.read_bytes()
    messages.unlink()
    os.link(outside, messages)  # a stranger's folder, linked to a file elsewhere
    ok(http.post(f"/v1/threads/{tid}/messages", json={"role": "user", "content": "appended"}))
    assert outside.read_bytes() == before
    listed = ok(http.get(f"/v1/threads/{tid}/messages"))["data"]
    assert [text_of(m) for m in listed] == ["not yours", "appended"]


def test_a_message_stored_without_an_id_keeps_its_id_through_an_edit(
    http: httpx.Client, threads_dir: Path
) -> None:
    folder = threads_dir / "jan-no-ids"
    folder.mkdir(parents=True)
    (folder / "thread.json").write_text(json.dumps({"title": "No ids"}))
    line = {"role": "user", "content": "before", "created": 1712345680000}
    (folder / "messages.jsonl").write_text(json.dumps(line) + "\n")
    (mid,) = [m["id"] for m in ok(http.get("/v1/threads/jan-no-ids/messages"))["data"]]
    edited = ok(http.patch(f"/v1/threads/jan-no-ids/messages/{mid}", json={"content": "after"}))
    assert edited["id"] == mid and text_of(edited) == "after"
    again = ok(http.get(f"/v1/threads/jan-no-ids/messages/{mid}"))
    assert again["id"] == mid and text_of(again) == "after"
    assert stored(threads_dir, "jan-no-ids")[0]["id"] == mid
