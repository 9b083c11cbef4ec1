"""The thread store and its pure pieces, on Jan-shaped folders written here (no server).

Covers the variants `shared/spec/jan-threads.md` lists (millisecond and fractional timestamps,
string content, early top-level fields, a folder with one of the two files), writes that keep
what they do not understand (unparseable lines, unknown fields, a torn last line), locking, and
ids or links that try to leave `<home>/threads`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hearth.core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hearth.threads import exchange
from hearth.threads.answer import ThreadReply, chat_request
from hearth.threads.edits import apply_thread_changes, new_message
from hearth.threads.ids import new_message_id, new_thread_id
from hearth.threads.store import ThreadStore
from hearth.threads.views import message_view, seconds, thread_view

JAN_04_THREAD = {
    "id": "jan_1712345678",
    "object": "thread",
    "title": "Old Jan chat",
    "assistants": [
        {
            "assistant_id": "jan",
            "assistant_name": "Jan",
            "instructions": "Be kind.",
            "model": {
                "id": "tinyllama-1.1b",
                "settings": {"ctx_len": 2048, "ngl": 33},
                "parameters": {"temperature": 0.7, "stream": True, "max_tokens": 2048},
                "engine": "nitro",
            },
        }
    ],
    "created": 1712345678000,
    "updated": 1712345999000,
    "metadata": {"lastMessage": "Hi there"},
}
JAN_04_MESSAGES = [
    {
        "id": "01HTQ1",
        "thread_id": "jan_1712345678",
        "role": "user",
        "content": "Hello?",
        "status": "ready",
        "created": 1712345680000,
        "updated": 1712345680000,
        "object": "thread.message",
    },
    {
        "id": "01HTQ2",
        "thread_id": "jan_1712345678",
        "role": "assistant",
        "content": [{"type": "text", "text": {"value": "Hi there", "annotations": []}}],
        "status": "ready",
        "created": 1712345681000,
        "updated": 1712345685000,
        "x_jan": {"keep": 1},
    },
]
UUID = "8d1e1c9c-5b0b-4c43-9d56-1f3a3f0b2a10"
JAN_06_THREAD = {
    "id": UUID,
    "object": "thread",
    "title": "New Jan chat",
    "assistants": [{"assistant_id": "jan", "model": {"id": "qwen3-4b", "engine": "llamacpp"}}],
    "created": 1750000000.25,
    "updated": 1750000100.5,
    "metadata": {"order": 1, "is_favorite": True},
}


def write_thread(root: Path, name: str, thread: Any = None, lines: list[Any] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if thread is not None:
        text = thread if isinstance(thread, str) else json.dumps(thread)
        (folder / "thread.json").write_text(text, encoding="utf-8")
    if lines is not None:
        body = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
        (folder / "messages.jsonl").write_text(body, encoding="utf-8")
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "threads"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> ThreadStore:
    return ThreadStore(root)


def test_jan_04_thread_reads_with_milliseconds_and_string_content(
    root: Path, store: ThreadStore
) -> None:
    folder = write_thread(root, "jan_1712345678", JAN_04_THREAD, JAN_04_MESSAGES)
    before = (folder / "messages.jsonl").read_bytes()
    thread = store.get("jan_1712345678")
    view = thread_view(thread.raw, thread.id, thread.mtime)
    assert view["created"] == 1712345678 and view["updated"] == 1712345999
    assert view["model"] == "tinyllama-1.1b" and view["instructions"] == "Be kind."
    assert view["parameters"]["temperature"] == 0.7 and view["settings"]["ctx_len"] == 2048
    assert view["metadata"] == {"lastMessage": "Hi there"}
    views = [message_view(raw, mid, thread.id) for mid, raw in store.messages(thread.id)]
    assert [v["id"] for v in views] == ["01HTQ1", "01HTQ2"]
    first = views[0]
    assert first["content"] == [{"type": "text", "text": {"value": "Hello?", "annotations": []}}]
    assert first["created_at"] == 1712345680 and first["created"] == 1712345680
    assert views[1]["completed_at"] == 1712345685 and views[1]["x_jan"] == {"keep": 1}
    assert (folder / "messages.jsonl").read_bytes() == before  # reading never rewrites


def test_jan_06_uuid_thread(root: Path, store: ThreadStore) -> None:
    write_thread(root, UUID, JAN_06_THREAD, [])
    thread = store.get(UUID)
    view = thread_view(thread.raw, thread.id, 0)
    assert view["created"] == 1750000000.25 and view["updated"] == 1750000100.5
    assert view["model"] == "qwen3-4b" and view["parameters"] == {} and view["instructions"] is None
    assert view["metadata"] == {"order": 1, "is_favorite": True}


def test_folders_with_one_file_are_threads_and_empty_ones_are_not(
    root: Path, store: ThreadStore
) -> None:
    write_thread(root, "only-messages", None, [{"role": "user", "content": "hi"}])
    write_thread(root, "only-thread", {"title": "no messages yet"})
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    assert sorted(t.id for t in store.all()) == ["only-messages", "only-thread"]
    only = store.get("only-messages")
    view = thread_view(only.raw, only.id, only.mtime)
    assert view["title"] == "" and view["created"] == pytest.approx(only.mtime)
    ((mid, raw),) = store.messages("only-messages")
    assert mid.startswith("line-") and raw["content"] == "hi"  # a stable derived id
    assert store.messages("only-thread") == []
    with pytest.raises(NotFound):
        store.get("empty")


def test_early_draft_top_level_fields(root: Path, store: ThreadStore) -> None:
    draft = {
        "summary": "s",
        "model_id": "m1",
        "parameters": {"top_p": 0.5},
        "settings": {"ctx_len": 512},
        "messages": [{"id": "1", "role": "user", "content": "x"}],
    }
    write_thread(root, "draft", draft)
    thread = store.get("draft")
    view = thread_view(thread.raw, "draft", 0)
    assert view["model"] == "m1" and view["parameters"] == {"top_p": 0.5}
    assert view["settings"] == {"ctx_len": 512} and view["summary"] == "s"
    assert "messages" not in view
    assert [mid for mid, _ in store.messages("draft")] == ["1"]
    with pytest.raises(Conflict):
        store.edit_message("draft", "1", lambda raw: None)
    apply_thread_changes(raw := dict(thread.raw), {"model": "m2"})
    assert thread_view(raw, "draft", 0)["parameters"] == {"top_p": 0.5}  # moved, not lost
    assert raw["assistants"][0]["model"]["id"] == "m2" and "model_id" not in raw


def test_unparseable_line_is_skipped_logged_once_and_kept_through_edits(
    root: Path, store: ThreadStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = {"id": "a", "role": "user", "content": "one", "unknown": {"z": [1, 2]}}
    raw_a = '{"id": "a",  "role": "user", "content": "one", "unknown": {"z": [1, 2]}}'
    folder = write_thread(
        root, "t", {}, [raw_a, "{broken", {"id": "b", "role": "user", "content": "two"}]
    )
    with caplog.at_level(logging.WARNING, logger="hearth.threads"):
        assert [m for m, _ in store.messages("t")] == ["a", "b"]
        store.messages("t")
    assert sum("line 2" in r.getMessage() for r in caplog.records) == 1
    store.edit_message("t", "b", lambda raw: raw.update(content="TWO"))
    lines = (folder / "messages.jsonl").read_text().splitlines()
    assert lines[0] == raw_a and lines[1] == "{broken"  # byte for byte
    assert json.loads(lines[2])["content"] == "TWO"
    assert store.delete_messages("t", "a", and_after=True) == 2
    assert (folder / "messages.jsonl").read_text() == "{broken\n"
    assert json.loads(raw_a) == good


def test_append_after_a_torn_line_never_joins_it(root: Path, store: ThreadStore) -> None:
    folder = write_thread(root, "t", {})
    (folder / "messages.jsonl").write_bytes(
        b'{"id": "a", "role": "user", "content": "x"}\n{"id": "b", "ro'
    )
    store.append("t", [{"id": "c", "role": "user", "content": "y"}])
    lines = (folder / "messages.jsonl").read_bytes().split(b"\n")
    assert lines[1] == b'{"id": "b", "ro' and json.loads(lines[2])["id"] == "c" and lines[3] == b""
    assert [m for m, _ in store.messages("t")] == ["a", "c"]


def test_concurrent_appends_never_interleave(root: Path) -> None:
    write_thread(root, "t", {})
    stores = [ThreadStore(root), ThreadStore(root)]  # two stores: only flock orders them

    def writer(n: int) -> None:
        for i in range(40):
            body = {"id": f"m{n}-{i}", "role": "user", "content": str(n) * 20_000}
            stores[n % 2].append("t", [body])

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ids = [m for m, _ in stores[0].messages("t")]
    assert len(ids) == 240 and len(set(ids)) == 240
    assert all(line.data is not None for line in stores[0].lines("t"))


def test_no_lock_outlives_its_writers(root: Path, store: ThreadStore) -> None:
    """A server writing to thousands of threads over weeks keeps no per-thread lock once the
    writes are done (the soak's growth: one lock per thread ever written, never dropped)."""
    ids = [store.create({"title": str(n)}, []) for n in range(50)]
    for tid in ids:
        store.append(tid, [{"id": new_message_id(), "role": "user", "content": "hi"}])
    for tid in ids[::2]:
        store.delete(tid)

    def writer(n: int) -> None:  # many writers on one thread share (and then drop) its lock
        for i in range(20):
            store.append(ids[1], [{"id": f"m{n}-{i}", "role": "user", "content": "x"}])

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(store.messages(ids[1])) == 81
    assert len(store._locks) == 0


def test_create_keeps_a_free_id_and_leaves_no_staging(root: Path, store: ThreadStore) -> None:
    tid = store.create({"title": "x"}, [{"id": "m", "role": "user", "content": "hi"}], "mine")
    assert tid == "mine" and sorted(os.listdir(root)) == ["mine"]
    assert json.loads((root / "mine" / "thread.json").read_text())["id"] == "mine"
    assert json.loads((root / "mine" / "messages.jsonl").read_text())["thread_id"] == "mine"
    again = store.create({}, [], "mine")
    assert again != "mine" and len(again) == 36  # taken: a new UUID
    assert len(new_thread_id()) == 36


def test_delete_removes_only_that_folder(root: Path, store: ThreadStore) -> None:
    write_thread(root, "a", {})
    write_thread(root, "b", {})
    store.delete("a")
    assert os.listdir(root) == ["b"]
    with pytest.raises(NotFound):
        store.delete("a")


@pytest.mark.parametrize(
    "bad", ["..", ".", "a/b", "/etc/passwd", "../x", "a\x00b", "x" * 129, "%2e%2e", "", ".hidden"]
)
def test_ids_that_could_leave_the_folder_are_refused(store: ThreadStore, bad: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        store.get(bad)
    assert info.value.code == "invalid_thread_id"
    with pytest.raises(InvalidRequest):
        store.edit_message("ok", bad or "..", lambda raw: None)


def test_links_out_of_the_threads_folder_are_not_followed(
    root: Path, store: ThreadStore, tmp_path: Path
) -> None:
    outside = write_thread(
        tmp_path, "outside", {"title": "secret"}, [{"role": "user", "content": "s"}]
    )
    (root / "linked").symlink_to(outside)
    (root / "home-link").symlink_to(root.parent)
    folder = write_thread(root, "t", {})
    secret = tmp_path / "secret.txt"
    secret.write_text('{"role": "user", "content": "private"}\n')
    (folder / "messages.jsonl").symlink_to(secret)
    inside = write_thread(root, "real", {"title": "ok"})
    (root / "alias").symlink_to(inside)
    for name in ("linked", "home-link"):
        with pytest.raises(Forbidden):
            store.get(name)
        with pytest.raises(Forbidden):
            store.append(name, [{"role": "user", "content": "x"}])
    with pytest.raises(Forbidden):
        store.messages("t")
    with pytest.raises(Forbidden):
        store.append("t", [{"role": "user", "content": "x"}])
    assert secret.read_text().count("\n") == 1  # never written through the link
    assert sorted(t.id for t in store.all()) == ["alias", "real"]  # the others are skipped
    store.delete("alias")
    assert (root / "real" / "thread.json").exists() and not os.path.lexists(root / "alias")


def test_a_fifo_is_refused_not_waited_on(root: Path, store: ThreadStore) -> None:
    folder = write_thread(root, "t", {})
    os.mkfifo(folder / "messages.jsonl")
    with pytest.raises(InvalidRequest):
        store.messages("t")
    assert [t.id for t in store.all()] == ["t"]  # thread.json alone still reads


def test_unparseable_thread_json_is_listed_but_not_overwritten(
    root: Path, store: ThreadStore
) -> None:
    folder = write_thread(root, "t", "{not json", [{"id": "a", "role": "user", "content": "x"}])
    thread = store.get("t")
    assert thread.error and thread.raw == {}
    with pytest.raises(Conflict):
        store.update("t", lambda raw: raw.update(title="new"))
    assert (folder / "thread.json").read_text() == "{not json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1712345678, 1712345678),
        (1712345678123, 1712345678.123),
        (1750000000.5, 1750000000.5),
        ("2024-04-05T12:00:00Z", 1712318400),
        (True, None),
        (-1, None),
        ("soon", None),
        (None, None),
    ],
)
def test_seconds(value: Any, expected: float | None) -> None:
    assert seconds(value) == (pytest.approx(expected) if expected is not None else None)


def test_new_message_checks_roles_and_images() -> None:
    message = new_message({"role": "user", "content": "hi", "metadata": {"k": 1}})
    assert message["content"][0]["text"] == {"value": "hi", "annotations": []}
    assert message["metadata"] == {"k": 1} and message["status"] == "ready"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert new_message({"role": "user", "content": [image]})["content"] == [image]
    for bad in (
        {"role": "root", "content": "x"},
        {"role": "user"},
        {"role": "user", "content": []},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}],
        },
        {"role": "user", "content": [{"type": "file", "file": "/etc/passwd"}]},
        {"role": "user", "content": "x", "status": "done"},
    ):
        with pytest.raises(InvalidRequest):
            new_message(bad)
    first, second = new_message_id(1.0), new_message_id(2.0)
    assert len(first) == 26 and first < second  # ULIDs sort by time


def test_thread_changes_merge_metadata_replace_parameters_and_clear_with_null() -> None:
    raw: dict[str, Any] = {"metadata": {"a": 1, "b": 2}}
    apply_thread_changes(
        raw,
        {
            "title": "T",
            "model": "m",
            "instructions": "sys",
            "parameters": {"temperature": 1},
            "metadata": {"b": None, "c": 3},
        },
    )
    view = thread_view(raw, "t", 0)
    assert (view["title"], view["model"], view["instructions"]) == ("T", "m", "sys")
    assert view["metadata"] == {"a": 1, "c": 3} and view["parameters"] == {"temperature": 1}
    apply_thread_changes(raw, {"parameters": {"top_p": 0.1}, "model": None, "instructions": None})
    view = thread_view(raw, "t", 0)
    assert view["parameters"] == {"top_p": 0.1} and view["model"] is None
    assert view["instructions"] is None
    for bad in ({"title": 5}, {"model": "../x"}, {"parameters": [1]}, {"metadata": "x"}):
        with pytest.raises(InvalidRequest):
            apply_thread_changes(raw, bad)


def test_chat_request_from_a_thread() -> None:
    thread = {
        "assistants": [
            {
                "instructions": "Be brief.",
                "model": {
                    "id": "smol",
                    "parameters": {
                        "temperature": 0.3,
                        "stream": False,
                        "model": "other",
                        "messages": [],
                        "max_tokens": 9,
                    },
                },
            }
        ]
    }
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    messages = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "failed", "status": "error"},
        {"role": "assistant", "content": "", "status": "pending"},
        {"role": "user", "content": [{"type": "text", "text": {"value": "two"}}, image]},
        {"role": "tool", "content": "ignored"},
    ]
    body, keep_alive = chat_request(thread, messages, {"parameters": {"temperature": 0}})
    assert body["model"] == "smol" and body["stream"] is True and keep_alive is None
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["max_tokens"] == 9
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}, image]},
    ]
    with pytest.raises(InvalidRequest, match="POST /v1/threads"):
        chat_request({}, messages, {})
    with pytest.raises(InvalidRequest):
        chat_request(thread, [], {})


def test_answer_gathers_split_lines_usage_timings_and_errors() -> None:
    answer = ThreadReply()
    stream = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\ndata: {"choices":[{"delta":{"con'
    )
    answer.feed(stream)
    assert answer.text == "Hel" and answer.ttft_ms is not None
    answer.feed(b'tent":"lo"},"finish_reason":"stop"}]}\n\n')
    answer.feed(b'data: {"choices":[],"usage":{"total_tokens":3},"timings":{"prompt_ms":1.5}}\n\n')
    answer.feed(b"data: [DONE]\n\n")
    assert answer.text == "Hello" and answer.finish_reason == "stop"
    assert answer.metadata()["usage"] == {"total_tokens": 3}
    assert answer.metadata()["timings"] == {"prompt_ms": 1.5}
    answer.feed(b'data: {"error":{"message":"boom","code":"engine_error"}}\n\n')
    assert answer.error == "boom" and answer.error_code == "engine_error"


def test_import_is_checked_and_chooses_no_path() -> None:
    doc = exchange.export_document(
        {"id": "../../etc", "title": "x"},
        [
            {"id": "a", "role": "user", "content": "hi", "thread_id": "../elsewhere"},
            {"id": "a", "role": "assistant", "content": [], "extra": 1},
            {"id": "bad/id", "role": "user", "content": "x"},
        ],
    )
    thread, messages, wanted = exchange.checked_import(doc)
    assert wanted is None and thread["title"] == "x"
    ids = [m["id"] for m in messages]
    assert ids[0] == "a" and len(set(ids)) == 3 and "bad/id" not in ids
    for bad in (
        [],
        {"object": "thread"},
        {**doc, "version": 2},
        {**doc, "thread": "x"},
        {**doc, "messages": {"a": 1}},
        {**doc, "messages": [1]},
        {**doc, "messages": [{"content": "no role"}]},
        {**doc, "messages": [{"role": "user", "content": "x"}] * (exchange.MAX_MESSAGES + 1)},
    ):
        with pytest.raises(InvalidRequest):
            exchange.checked_import(bad)


def test_markdown_export() -> None:
    text = exchange.markdown(
        {"title": "My\nchat", "model": "smol", "instructions": "Be brief."},
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": {"value": "hi"}},
                    {"type": "image_url", "image_url": {"url": "data:x"}},
                ],
            },
            {"role": "assistant", "content": "hello"},
        ],
    )
    assert text.startswith("# My chat\n")
    assert "## System\n\nBe brief." in text and "## User\n\nhi\n\n*[image]*" in text
    assert text.endswith("## Assistant\n\nhello\n")


def _strict(data: bytes) -> Any:
    """Parse as a browser does: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def test_hostile_numbers_and_lone_surrogates_still_give_strict_json(
    root: Path, store: ThreadStore
) -> None:
    """A thread.json with NaN, Infinity, a 400-digit time and a lone surrogate lists as strict
    JSON, and edits write strict JSON (a regression: one such file emptied the page's list)."""
    text = ('{"title": "bad \\ud800 title", "created": NaN, "updated": Infinity, "metadata": '
            '{"n": ' + "9" * 400 + "}}")  # fmt: skip
    write_thread(root, "t", text, ['{"id": "m1", "role": "user", "content": "x\\udc00", "n": NaN}'])
    from hearth.services.threads import encode_json

    (stored,) = store.all()
    listed = _strict(encode_json(thread_view(stored.raw, stored.id, stored.mtime)))
    assert listed["created"] is None or isinstance(listed["created"], float | int)
    messages = store.messages("t")
    assert _strict(encode_json([message_view(raw, mid, "t") for mid, raw in messages]))
    store.edit_message("t", "m1", lambda raw: raw.update(status="ready"))
    for line in (root / "t" / "messages.jsonl").read_bytes().splitlines():
        _strict(line)
    assert seconds(10**400) is None and seconds(float("inf")) is None


def test_appending_to_something_that_is_not_a_file_is_a_400_not_a_hang(
    root: Path, store: ThreadStore
) -> None:
    folder = write_thread(root, "t", {})
    os.mkfifo(folder / "messages.jsonl")
    with pytest.raises(InvalidRequest):
        store.append("t", [{"id": "m", "role": "user", "content": "x" * 100_000}])
    os.unlink(folder / "messages.jsonl")
    (folder / "messages.jsonl").mkdir()
    with pytest.raises(InvalidRequest):
        store.append("t", [{"id": "m", "role": "user", "content": "x"}])


def test_append_never_writes_through_a_hard_link(
    root: Path, store: ThreadStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(b'{"id": "a", "role": "user", "content": "x"}')  # a torn last line too
    outside_thread = tmp_path / "outside-thread.json"
    outside_thread.write_text('{"title": "theirs"}')
    before, before_thread = outside.read_bytes(), outside_thread.read_bytes()
    folder = write_thread(root, "t")
    os.link(outside, folder / "messages.jsonl")
    os.link(outside_thread, folder / "thread.json")
    store.append("t", [{"id": "b", "role": "user", "content": "y"}])
    store.update("t", lambda raw: raw.update(title="ours"))
    assert outside.read_bytes() == before and outside_thread.read_bytes() == before_thread
    assert os.stat(folder / "messages.jsonl").st_nlink == 1  # the link became our own file
    assert [m for m, _ in store.messages("t")] == ["a", "b"]
    assert store.get("t").raw["title"] == "ours"
    store.append("t", [{"id": "c", "role": "user", "content": "z"}])  # in place again
    assert [m for m, _ in store.messages("t")] == ["a", "b", "c"]
    assert sorted(os.listdir(folder)) == ["messages.jsonl", "thread.json"]  # no temp left


def test_a_write_sweeps_only_its_own_stale_temp_files(
    root: Path, store: ThreadStore, tmp_path: Path
) -> None:
    folder = write_thread(root, "t", {}, [{"id": "a", "role": "user", "content": "x"}])
    stale = [folder / ".messages.jsonl.123.0123abcd.tmp", folder / ".thread.json.9.deadbeef.tmp"]
    fresh = folder / ".messages.jsonl.456.89abcdef.tmp"  # a concurrent writer's, maybe
    kept = [
        folder / "notes.txt",
        folder / ".messages.jsonl.123.0123abcd.tmp.bak",
        folder / ".messages.jsonl.1.XYZ.tmp",
        folder / ".messages.jsonl.x1.0123abcd.tmp",
        folder / ".other.jsonl.1.0123abcd.tmp",
        folder / "messages.jsonl.1.0123abcd.tmp",
    ]
    for path in [*stale, fresh, *kept]:
        path.write_text("x")
    (folder / ".thread.json.1.00000000.tmp").mkdir()  # the name, but not a file
    (folder / ".thread.json.2.00000000.tmp").symlink_to(tmp_path / "target")
    (tmp_path / "target").write_text("keep")
    old = time.time() - 3600
    for path in [*stale, *kept, folder / ".thread.json.1.00000000.tmp"]:
        os.utime(path, (old, old))
    os.utime(folder / ".thread.json.2.00000000.tmp", (old, old), follow_symlinks=False)
    store.messages("t")
    store.all()
    assert all(p.exists() for p in stale)  # reading never deletes
    store.append("t", [{"id": "b", "role": "user", "content": "y"}])
    assert not any(os.path.lexists(p) for p in stale)
    assert fresh.exists() and all(p.exists() for p in kept)
    assert (folder / ".thread.json.1.00000000.tmp").is_dir()
    assert (folder / ".thread.json.2.00000000.tmp").is_symlink()
    assert (tmp_path / "target").read_text() == "keep"
    assert [m for m, _ in store.messages("t")] == ["a", "b"]


def test_editing_a_message_stored_without_an_id_keeps_its_id(
    root: Path, store: ThreadStore
) -> None:
    folder = write_thread(
        root,
        "t",
        {},
        [
            {"role": "user", "content": "no id", "x": 1},
            {"id": None, "role": "assistant", "content": "null id"},
            {"id": "c", "role": "user", "content": "has one"},
        ],
    )
    first, second, _ = (mid for mid, _ in store.messages("t"))
    assert first.startswith("line-") and second.startswith("line-")
    store.edit_message("t", first, lambda raw: raw.update(content="edited"))
    store.edit_message("t", second, lambda raw: raw.update(status="stopped"))
    store.edit_message("t", "c", lambda raw: raw.update(content="changed"))
    assert [m for m, _ in store.messages("t")] == [first, second, "c"]
    lines = [json.loads(x) for x in (folder / "messages.jsonl").read_text().splitlines()]
    assert lines[0] == {"id": first, "role": "user", "content": "edited", "x": 1}
    assert lines[1]["id"] == second and lines[1]["status"] == "stopped"
    assert lines[2]["id"] == "c"
    store.edit_message("t", first, lambda raw: raw.update(content="again"))  # still found
    assert store.messages("t")[0] == (first, {**lines[0], "content": "again"})


def test_a_list_holds_its_page_not_every_thread(root: Path) -> None:
    """Listing 20 of thousands of conversations (the web page's sidebar, GET /v1/threads) kept
    every thread read in memory at once: its peak grew with the threads on disk."""
    import tracemalloc

    from hearth.services.threads import ThreadService

    store = ThreadStore(root)
    for n in range(300):  # 300 threads of ~64 KB each: ~19 MB if a list holds them all
        write_thread(root, f"t{n:03d}", {"title": f"{n:03d}" + "x" * 65_536, "updated": n})
    service = ThreadService(store, None, lambda _: None)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        listed = service.list_threads(limit=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [t["id"] for t in listed["data"]] == ["t299", "t298"] and listed["has_more"]
    assert listed["first_id"] == "t299" and listed["last_id"] == "t298"
    assert peak < 4 * 2**20  # a few threads' worth, whatever the number on disk
    second = service.list_threads(limit=2, after="t298")
    assert [t["id"] for t in second["data"]] == ["t297", "t296"]
    assert [t["id"] for t in service.list_threads(q="299")["data"]] == ["t299"]
