"""Assistants as Jan keeps them (`<home>/assistants/<id>/assistant.json`): the real server's
/v1/assistants through httpx and the `openai` client, a conversation started with one (the
snapshot in thread.json), and a run on SmolLM2 whose system prompt is the assistant's
instructions with today's date and whose sampling comes from its parameters.

The folders are built from the spec's shape (Jan's default `jan` with `{{current_date}}`, one
with parameters, a broken file, a huge file, a link leading out of the folder).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services
from hearth.threads.answer import chat_request
from hearth.threads.assistant_rules import jan_date, render_instructions, sampling
from hearth.threads.assistants import MAX_ASSISTANT_BYTES

#: openai marks client.beta.assistants deprecated (a bare "deprecated" warning on each call)
OPENAI_BETA = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
JAN_INSTRUCTIONS = "You are a helpful AI assistant.\n\nCurrent date: {{current_date}}"
JAN = {
    "id": "jan",
    "object": "assistant",
    "name": "Jan",
    "avatar": "👋",
    "description": "Jan is a helpful desktop assistant.",
    "created_at": 1747029866.542,
    "model": "*",
    "instructions": JAN_INSTRUCTIONS,
    "parameters": {},
    "tools": [
        {
            "type": "retrieval",
            "enabled": False,
            "useTimeWeightedRetriever": False,
            "settings": {"top_k": 2, "chunk_size": 1024, "chunk_overlap": 64},
        }
    ],
    "file_ids": [],
    "thread_location": None,
    "metadata": {},
}
WRITER = {
    **JAN,
    "id": "writer",
    "name": "Alpha writer",
    "avatar": "✍️",
    "description": "Writes tersely.",
    "created_at": 1747030000.0,
    "instructions": "Answer in one word. Today is {{ Current_Date }}.",
    "parameters": {
        "temperature": 0,
        "seed": 7,
        "max_output_tokens": 3,  # Jan's name for max_tokens
        "ctx_len": 999999,  # an engine setting: never sent
        "stream": False,  # never taken from an assistant
    },
    "x_unknown": {"kept": True},
}


def _write(home: Path, assistant_id: str, raw: Any) -> Path:
    folder = home / "assistants" / assistant_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "assistant.json"
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw, indent=2), "utf-8")
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("assistants")
    home = root / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "smol")
    _write(home, "writer", WRITER)
    _write(home, "jan", JAN)
    _write(home, "broken", '{"id": "broken", "name": "Broken",')
    huge = _write(home, "huge", "")
    with huge.open("wb") as fh:  # sparse: the test never holds it either
        fh.truncate(MAX_ASSISTANT_BYTES + 1)
    _write(root, "outside", {**JAN, "id": "secret", "name": "Secret"})  # root/assistants/
    (home / "assistants" / "escape").symlink_to(root / "assistants" / "outside")
    return home


@pytest.fixture(scope="module")
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http(trust_env=False) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


# ---- pure rules ---------------------------------------------------------------------------


def test_current_date_is_filled_in_as_jan_writes_it() -> None:
    when = datetime(2025, 8, 16, 23, 30, tzinfo=UTC)
    assert jan_date(when) == "August 16, 2025"
    text = "A {{current_date}} B {{ CURRENT_DATE }} C {current_date}"
    assert render_instructions(text, when) == "A August 16, 2025 B August 16, 2025 C {current_date}"


def test_only_sampling_parameters_pass_from_an_assistant() -> None:
    got = sampling(
        {
            "temperature": 0.2,
            "max_output_tokens": 64,
            "top_k": 40.0,
            "stop": ["\n"],
            "ctx_len": 4096,
            "n_gpu_layers": 99,
            "stream": True,
            "seed": "7",  # wrong type: dropped
            "top_p": True,  # a bool is not a number
            "min_p": float("nan"),
        }
    )
    assert got == {"temperature": 0.2, "max_tokens": 64, "top_k": 40, "stop": ["\n"]}
    assert sampling({"max_tokens": 5, "max_output_tokens": 9}) == {"max_tokens": 5}


def test_a_run_of_a_snapshot_sends_its_instructions_and_parameters() -> None:
    thread = {
        "assistants": [
            {**WRITER, "model": {"id": "smol", "engine": "llamacpp", "parameters": {"seed": 9}}}
        ]
    }
    user = {"role": "user", "content": [{"type": "text", "text": {"value": "hi"}}]}
    chat, _ = chat_request(thread, [user], {"parameters": {"temperature": 0.5}})
    system = chat["messages"][0]
    assert system["role"] == "system"
    assert "{{" not in system["content"]
    assert system["content"].startswith("Answer in one word. Today is ")
    assert chat["temperature"] == 0.5  # the request's wins
    assert chat["seed"] == 9  # the thread's own wins over the assistant's
    assert chat["max_tokens"] == 3
    assert "ctx_len" not in chat and chat["stream"] is True


# ---- the API ------------------------------------------------------------------------------


def test_the_list_puts_jan_first_then_names_and_shows_broken_ones(http: httpx.Client) -> None:
    listed = ok(http.get("/v1/assistants"))
    assert listed["object"] == "list" and listed["has_more"] is False
    ids = [a["id"] for a in listed["data"]]
    assert ids[0] == "jan" and ids[1] == "writer"  # "Alpha writer" before "broken", "escape"...
    assert set(ids) == {"jan", "writer", "broken", "huge", "escape"}
    assert listed["first_id"] == "jan" and listed["last_id"] == ids[-1]
    by_id = {a["id"]: a for a in listed["data"]}
    assert "not JSON" in by_id["broken"]["error"]
    assert "more than" in by_id["huge"]["error"]
    assert "outside the assistants folder" in by_id["escape"]["error"]
    assert "Secret" not in json.dumps(listed)  # the linked file was never read
    jan = by_id["jan"]
    assert jan["object"] == "assistant" and jan["avatar"] == "👋"
    assert jan["instructions"] == JAN_INSTRUCTIONS  # stored as written; rendered per run
    assert jan["tools"][0]["type"] == "retrieval" and jan["created_at"] == 1747029866.542
    assert by_id["writer"]["x_unknown"] == {"kept": True}
    second = ok(http.get("/v1/assistants", params={"limit": 1, "after": "jan"}))
    assert [a["id"] for a in second["data"]] == ["writer"] and second["has_more"] is True


@OPENAI_BETA
@pytest.mark.slow  # over ~0.5 s: out of the fast loop (kept under 60 s)
def test_the_openai_client_lists_and_gets(srv: ThreadedServer) -> None:
    client = srv.openai()
    names = [a.name for a in client.beta.assistants.list()]
    assert names[:2] == ["Jan", "Alpha writer"]
    got = client.beta.assistants.retrieve("writer")
    assert got.id == "writer" and got.instructions == WRITER["instructions"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/assistants/..%2F..%2Fetc", 404),  # a slash is a path: no such route
        ("/v1/assistants/.hidden", 400),
        ("/v1/assistants/%2Fetc%2Fpasswd", 404),
        ("/v1/assistants/%2E%2E", 400),
        ("/v1/assistants/a%00b", 400),
        ("/v1/assistants/escape", 403),
        ("/v1/assistants/huge", 400),
        ("/v1/assistants/nobody", 404),
    ],
)
def test_ids_never_leave_the_folder(http: httpx.Client, path: str, status: int) -> None:
    response = http.get(path)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if path.endswith("/nobody"):
        assert error["code"] == "assistant_not_found" and "GET /v1/assistants" in error["message"]
    assert "Secret" not in response.text


def test_a_link_out_is_never_written_or_deleted_through(http: httpx.Client, home: Path) -> None:
    outside = home.parent / "assistants" / "outside" / "assistant.json"
    before = outside.read_bytes()
    assert http.delete("/v1/assistants/escape").status_code == 403
    assert http.post("/v1/assistants/escape", json={"name": "Owned"}).status_code == 403
    made = http.post("/v1/assistants", json={"id": "escape", "name": "Owned"})
    assert made.status_code == 403
    assert outside.read_bytes() == before


@OPENAI_BETA
def test_create_modify_delete_in_jans_shape(srv: ThreadedServer, home: Path) -> None:
    client = srv.openai()
    made = client.beta.assistants.create(
        model="*", name="Trip Planner", instructions="Plan trips.", temperature=0.3
    )
    assert made.id == "trip-planner"
    path = home / "assistants" / "trip-planner" / "assistant.json"
    stored = json.loads(path.read_text("utf-8"))
    assert path.read_text("utf-8").startswith('{\n  "')  # pretty, as Jan writes it
    assert stored["object"] == "assistant" and stored["parameters"] == {"temperature": 0.3}
    assert isinstance(stored["created_at"], float) and stored["file_ids"] == []
    stored["x_from_jan"] = [1, 2]  # a key Hearth does not know
    path.write_text(json.dumps(stored), "utf-8")
    changed = client.beta.assistants.update(
        "trip-planner", description="Trips.", metadata={"k": "v"}
    )
    assert changed.description == "Trips."
    again = json.loads(path.read_text("utf-8"))
    assert again["x_from_jan"] == [1, 2] and again["instructions"] == "Plan trips."
    assert again["metadata"] == {"k": "v"}
    deleted = client.beta.assistants.delete("trip-planner")
    assert deleted.deleted is True
    assert not path.exists() and path.parent.is_dir()  # as Jan: the folder stays


def test_bad_writes_are_4xx_naming_the_field(http: httpx.Client, home: Path) -> None:
    cases = [
        ({"id": "../x", "name": "x"}, 400, "invalid_assistant_id"),
        ({"name": "x", "tools": "retrieval"}, 400, None),
        ({"name": "x", "plugins": []}, 400, None),
        ({"id": "jan", "name": "Again"}, 409, "assistant_exists"),
    ]
    for body, status, code in cases:
        response = http.post("/v1/assistants", json=body)
        assert response.status_code == status, response.text
        if code:
            assert response.json()["error"]["code"] == code
    refused = http.post("/v1/assistants/broken", json={"name": "Fixed"})
    assert refused.status_code == 409 and "not JSON" in refused.text
    assert json.loads((home / "assistants/jan/assistant.json").read_text("utf-8")) == JAN
    assert not (home / "x").exists() and not (home / "assistants" / "x").exists()


def test_an_empty_home_gets_no_default_assistant(tmp_path: Path) -> None:
    home = tmp_path / "home"
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as server, server.http(trust_env=False) as http:
        assert ok(http.get("/v1/assistants"))["data"] == []
        assert http.get("/v1/assistants/jan").status_code == 404
    assert not (home / "assistants").exists()


# ---- a conversation started with one ------------------------------------------------------


def test_a_thread_copies_the_assistant(http: httpx.Client, home: Path) -> None:
    made = ok(http.post("/v1/threads", json={"assistant_id": "writer", "model": "smol"}))
    raw = json.loads((home / "threads" / made["id"] / "thread.json").read_text("utf-8"))
    first = raw["assistants"][0]
    assert first["id"] == "writer" and first["name"] == "Alpha writer"
    assert first["instructions"] == WRITER["instructions"] and first["avatar"] == "✍️"
    assert first["parameters"] == WRITER["parameters"]
    assert first["model"] == {"id": "smol", "engine": "llamacpp"}
    jan_way = ok(http.post("/v1/threads", json={"assistants": [{"id": "jan"}], "model": "smol"}))
    assert jan_way["assistants"][0]["name"] == "Jan" and jan_way["model"] == "smol"
    # a snapshot, not a reference: the assistant's later edit leaves the thread as it was
    ok(http.post("/v1/assistants/writer", json={"name": "Renamed"}))
    again = ok(http.get(f"/v1/threads/{made['id']}"))
    assert again["assistants"][0]["name"] == "Alpha writer"
    ok(http.post("/v1/assistants/writer", json={"name": "Alpha writer"}))


def test_an_unknown_or_broken_assistant_is_refused(http: httpx.Client, home: Path) -> None:
    before = set((home / "threads").iterdir()) if (home / "threads").exists() else set()
    unknown = http.post("/v1/threads", json={"assistant_id": "nobody", "model": "smol"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "assistant_not_found"
    assert "'nobody'" in unknown.json()["error"]["message"]
    broken = http.post("/v1/threads", json={"assistants": [{"id": "broken"}]})
    assert broken.status_code == 409 and "broken" in broken.json()["error"]["message"]
    attack = http.post("/v1/threads", json={"assistant_id": "../escape"})
    assert attack.status_code == 400
    both = http.post("/v1/threads", json={"assistant_id": "jan", "assistants": [{"id": "w"}]})
    assert both.status_code == 400
    after = set((home / "threads").iterdir()) if (home / "threads").exists() else set()
    assert after == before  # nothing written


@pytest.mark.slow
def test_a_run_speaks_with_the_assistants_instructions_and_parameters(
    http: httpx.Client,
) -> None:
    """The run's prompt is exactly the instructions with today's date: the same model, the
    same greedy sampling and the same messages sent straight to /v1/chat/completions give the
    same prompt length and the same words. The assistant's max_output_tokens (3) bounds the
    answer, and its seed and temperature 0 make it one answer."""
    dates = {jan_date()}
    made = ok(
        http.post(
            "/v1/threads",
            json={
                "assistant_id": "writer",
                "model": "smol",
                "messages": [{"role": "user", "content": "Name a fruit."}],
            },
        )
    )
    answer = ok(http.post(f"/v1/threads/{made['id']}/runs", json={"stream": False}))
    dates.add(jan_date())  # a run that crossed midnight (UTC) may have used either day
    usage = answer["metadata"]["usage"]
    assert usage["completion_tokens"] <= 3
    assert answer["metadata"]["finish_reason"] == "length"
    text = answer["content"][0]["text"]["value"]
    matches = []
    for date in dates:
        direct = ok(
            http.post(
                "/v1/chat/completions",
                json={
                    "model": "smol",
                    "messages": [
                        {"role": "system", "content": f"Answer in one word. Today is {date}."},
                        {"role": "user", "content": "Name a fruit."},
                    ],
                    "temperature": 0,
                    "seed": 7,
                    "max_tokens": 3,
                },
            )
        )
        matches.append(
            (direct["usage"]["prompt_tokens"], direct["choices"][0]["message"]["content"])
        )
    assert (usage["prompt_tokens"], text) in matches
