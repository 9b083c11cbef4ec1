"""MCP tools in a conversation's run (issue 26, points 2 and 4): the model's calls run
server-side in the thread run, saved in messages.jsonl as Jan keeps them, asked for approval
(once, for the conversation, always, or denied), bounded in rounds, a hanging tool timed out, a
client that leaves stopping the loop, and a stranger's thread.json starting nothing.

Real parts: SmolLM2 (temperature 0, a seed) with a Hermes-style tool template, forced to call by
`tool_choice` "required" (Hearth constrains its output to a call), the test MCP servers written
with the SDK (tests/support/mcp_server.py, mcp_stall_server.py), a real Hearth over HTTP."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from support.engines import add_smol
from support.server import ThreadedServer
from support.waiting import wait_for

from hearth.core.config import load_settings
from hearth.mcp import DENIED
from hearth.services import Services
from tests.test_mcp_hosts import TEST_SERVER, marked_processes

pytestmark = pytest.mark.slow  # SmolLM2 and MCP servers: seconds

SUPPORT = Path(__file__).parent / "support"
HERMES = (SUPPORT / "hermes_template.jinja").read_text()
STALL_SERVER = str(SUPPORT / "mcp_stall_server.py")
PINNED = {"temperature": 0, "seed": 42}
MAX_ROUNDS = 3
SERVERS = {
    "test": {"command": sys.executable, "args": [TEST_SERVER], "timeout": 20},
    "stalls": {"command": sys.executable, "args": [STALL_SERVER], "timeout": 1},
    "slow": {"command": sys.executable, "args": [STALL_SERVER], "timeout": 600},
}
OTHERS = ["fail", "hang", "crash", "huge", "noisy", "spawn"]
#: A conversation with the test server's `add` on (its other tools off), forced on round one.
ADD_ONLY = {"servers": [{"name": "test", "tools_off": OTHERS}], "tool_choice": "required"}


def forced(server: str, **tool: Any) -> dict[str, Any]:
    """A run body naming one server, no approval asked, every round forced to call."""
    named = {"type": "mcp", "server_label": server, "require_approval": "never", **tool}
    return {"tools": [named], "parameters": {"tool_choice": "required"}}


def write_mcp(services: Services, servers: dict[str, Any]) -> None:
    services.settings.state_dir.mkdir(parents=True, exist_ok=True)
    path = services.settings.state_dir / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))


def my_servers() -> list[psutil.Process]:
    """MCP server processes this test process started (other sessions may run their own)."""
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    return [p for p in marked_processes() if p.pid in mine]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("thread-tools") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "hermes", {"chat_template": HERMES}, model_parameters=PINNED)
    settings = load_settings(home=home, flags={"mcp_max_rounds": MAX_ROUNDS}, env={})
    services = Services.create(settings)
    write_mcp(services, SERVERS)
    with ThreadedServer(services) as server:
        yield server


@pytest.fixture
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http() as client:
        yield client


def new_thread(
    http: httpx.Client,
    mcp: dict[str, Any] | None,
    text: str = "Add 2 and 3.",
    **parameters: Any,
) -> str:
    body: dict[str, Any] = {
        "model": "hermes",
        "messages": [{"role": "user", "content": text}],
        "parameters": {"max_tokens": 40, **parameters},
    }
    if mcp is not None:
        body["metadata"] = {"mcp": mcp}
    answer = http.post("/v1/threads", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def events(response: httpx.Response) -> list[tuple[str, Any]]:
    """The stream's events as (name, data): "message" for the engine's chunks."""
    found: list[tuple[str, Any]] = []
    name, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data and data != ["[DONE]"]:
                found.append((name, json.loads("\n".join(data))))
            elif data:
                found.append(("done", None))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return found


def stream(
    http: httpx.Client, path: str, body: dict[str, Any]
) -> tuple[str, list[tuple[str, Any]]]:
    with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200, response.read()
        return response.headers["x-hearth-message-id"], events(response)


def run(
    http: httpx.Client, tid: str, body: dict[str, Any] | None = None
) -> tuple[str, list[tuple[str, Any]]]:
    return stream(http, f"/v1/threads/{tid}/runs", body or {})


def decide(
    http: httpx.Client, tid: str, mid: str, call_id: str, decision: str
) -> list[tuple[str, Any]]:
    path = f"/v1/threads/{tid}/messages/{mid}/approval"
    answered, found = stream(http, path, {"call_id": call_id, "decision": decision})
    assert answered == mid
    return found


def tool_events(found: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(n, d) for n, d in found if n in ("tool_call", "tool_result")]


def message(http: httpx.Client, tid: str, mid: str) -> dict[str, Any]:
    answer = http.get(f"/v1/threads/{tid}/messages/{mid}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def on_disk(srv: ThreadedServer, tid: str, mid: str) -> dict[str, Any]:
    path = srv.services.settings.threads_dir / tid / "messages.jsonl"
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        if raw.get("id") == mid:
            return raw  # type: ignore[no-any-return]
    raise AssertionError(f"no message {mid}")


def awaiting(
    http: httpx.Client, tid: str, text: str = "Add 2 and 3."
) -> tuple[str, str, dict[str, Any]]:
    """A run in a conversation with `add` on and forced: it stops at the call, asking."""
    mid, found = run(http, tid)
    calls = tool_events(found)
    assert [(n, d["state"]) for n, d in calls] == [("tool_call", "awaiting_approval")]
    assert found[-1] == ("done", None)
    call = calls[0][1]
    assert (call["name"], call["server"], call["tool"]) == ("add", "test", "add")
    return mid, call["id"], json.loads(call["arguments"])


def test_an_approved_call_runs_and_is_saved_as_jan_keeps_it(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    tid = new_thread(http, ADD_ONLY)
    mid, call_id, args = awaiting(http, tid)
    waiting = on_disk(srv, tid, mid)
    assert waiting["status"] == "ready"
    assert waiting["metadata"]["awaiting_approval"]["call_id"] == call_id
    [entry] = waiting["metadata"]["tool_calls"]
    assert entry["state"] == "pending" and entry["response"] is None

    found = decide(http, tid, mid, call_id, "once")
    calls = tool_events(found)
    assert calls[0] == ("tool_call", {**calls[0][1], "id": call_id, "state": "running"})
    result = calls[1][1]
    assert calls[1][0] == "tool_result" and result["state"] == "completed"
    answer = str(args["a"] + args["b"])
    assert result["response"] == {"error": "", "content": [{"type": "text", "text": answer}]}

    saved = on_disk(srv, tid, mid)
    assert saved["status"] == "ready" and "awaiting_approval" not in saved["metadata"]
    first = saved["metadata"]["tool_calls"][0]
    assert first["state"] == "completed"
    assert first["tool"] == {
        "id": call_id,
        "type": "function",
        "function": {"name": "add", "arguments": first["tool"]["function"]["arguments"]},
    }
    assert json.loads(first["tool"]["function"]["arguments"]) == args
    assert first["response"]["content"][0]["text"] == answer
    assert message(http, tid, mid)["metadata"]["tool_calls"][0] == first  # reloads the same
    lines = (srv.services.settings.threads_dir / tid / "messages.jsonl").read_text().splitlines()
    assert [json.loads(line)["role"] for line in lines] == ["user", "assistant"]  # ONE message


def test_allowed_for_the_conversation_runs_without_asking_again(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    tid = new_thread(http, ADD_ONLY)
    mid, call_id, _ = awaiting(http, tid)
    path = f"/v1/threads/{tid}/messages/{mid}/approval"
    whole = http.post(path, json={"call_id": call_id, "decision": "thread", "stream": False})
    assert whole.status_code == 200 and whole.headers["x-hearth-message-id"] == mid
    assert whole.json()["status"] == "ready"
    assert whole.json()["metadata"]["tool_calls"][0]["state"] == "completed"
    thread = json.loads((srv.services.settings.threads_dir / tid / "thread.json").read_text())
    [approved] = thread["metadata"]["mcp_approved"]
    assert (approved["server"], approved["tool"]) == ("test", "add") and approved["sig"]

    http.post(f"/v1/threads/{tid}/messages", json={"role": "user", "content": "Add 4 and 5."})
    second, found = run(http, tid)
    calls = tool_events(found)
    assert [(n, d["state"]) for n, d in calls][:2] == [
        ("tool_call", "running"),
        ("tool_result", "completed"),
    ]
    assert on_disk(srv, tid, second)["metadata"]["tool_calls"][0]["state"] == "completed"

    other = new_thread(http, ADD_ONLY)  # another conversation still asks
    awaiting(http, other)


def test_a_forged_conversation_approval_counts_for_nothing(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    forged = [{"server": "test", "tool": "add", "sig": "0" * 64}, {"server": "test", "tool": "add"}]
    tid = new_thread(http, ADD_ONLY)
    http.post(f"/v1/threads/{tid}", json={"metadata": {"mcp_approved": forged}})
    awaiting(http, tid)


def test_a_waiting_call_whose_saved_labels_lie_is_not_run(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    """The card shows the entry's server and tool: a file that makes them lie is refused."""
    tid = new_thread(http, ADD_ONLY)
    mid, call_id, _ = awaiting(http, tid)
    path = srv.services.settings.threads_dir / tid / "messages.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[-1]["metadata"]["tool_calls"][0]["mcp"] = {"server": "test", "tool": "crash"}
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    path = f"/v1/threads/{tid}/messages/{mid}/approval"
    refused = http.post(path, json={"call_id": call_id, "decision": "once"})
    assert refused.status_code == 409 and "'add' is test's 'add'" in refused.text
    assert on_disk(srv, tid, mid)["metadata"]["tool_calls"][0]["response"] is None


def test_always_allowed_runs_in_every_conversation(srv: ThreadedServer, http: httpx.Client) -> None:
    approvals = srv.services.settings.state_dir / "mcp-approvals.json"
    spawn_only = [t for t in [*OTHERS, "add"] if t != "spawn"]
    tid = new_thread(http, {**ADD_ONLY, "servers": [{"name": "test", "tools_off": spawn_only}]})
    mid, found = run(http, tid)  # `spawn` only: it asks
    [(_, call)] = tool_events(found)
    assert call["name"] == "spawn" and call["state"] == "awaiting_approval"
    decide(http, tid, mid, call["id"], "deny")  # (denied: no child process is left behind)
    try:
        tid = new_thread(http, ADD_ONLY)
        mid, call_id, _ = awaiting(http, tid)
        decide(http, tid, mid, call_id, "always")
        assert {"server": "test", "tool": "add"} in json.loads(approvals.read_text())["always"]
        assert "mcp" not in str(list(srv.services.settings.threads_dir.glob("*/thread.json")))
        fresh = new_thread(http, ADD_ONLY)
        _, found = run(http, fresh)
        assert tool_events(found)[0][1]["state"] == "running"
    finally:
        approvals.unlink(missing_ok=True)  # the other tests ask again


def test_a_denied_call_answers_the_model_jan_s_refusal(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    tid = new_thread(http, ADD_ONLY)
    mid, call_id, _ = awaiting(http, tid)
    found = decide(http, tid, mid, call_id, "deny")
    told = tool_events(found)[0]
    assert told[0] == "tool_result" and told[1]["response"]["error"] == "disallowed"
    saved = on_disk(srv, tid, mid)
    entry = saved["metadata"]["tool_calls"][0]
    assert entry["state"] == "completed"
    assert entry["response"] == {
        "error": "disallowed",
        "content": [{"type": "text", "text": DENIED}],
    }
    again = http.post(
        f"/v1/threads/{tid}/messages/{mid}/approval", json={"call_id": call_id, "decision": "once"}
    )
    assert again.status_code == 409 and "not waiting" in again.json()["error"]["message"]
    bad = http.post(
        f"/v1/threads/{tid}/messages/{mid}/approval", json={"call_id": call_id, "decision": "maybe"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "decision"


def test_the_rounds_are_bounded_the_last_without_tools(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    tid = new_thread(http, None)
    mid, found = run(http, tid, forced("test", allowed_tools=["add"]))  # the bound ends it
    calls = tool_events(found)
    assert [n for n, _ in calls] == ["tool_call", "tool_result"] * (MAX_ROUNDS - 1)
    saved = on_disk(srv, tid, mid)
    assert len(saved["metadata"]["tool_calls"]) == MAX_ROUNDS - 1
    assert all(c["state"] == "completed" for c in saved["metadata"]["tool_calls"])
    assert saved["status"] == "ready" and found[-1] == ("done", None)
    assert [n for n, _ in found].count("done") == 1  # one [DONE], at the end


def test_a_hanging_tool_times_out_and_the_run_ends(srv: ThreadedServer, http: httpx.Client) -> None:
    tid = new_thread(http, None, "Wait.")
    mid, found = run(http, tid, forced("stalls"))
    results = [d for n, d in found if n == "tool_result"]
    assert results and all(r["is_error"] for r in results)
    assert "stall" in results[0]["response"]["content"][0]["text"]
    assert on_disk(srv, tid, mid)["status"] == "ready"


def test_a_client_that_leaves_stops_the_loop(srv: ThreadedServer, http: httpx.Client) -> None:
    tid = new_thread(http, None, "Wait.")
    with http.stream("POST", f"/v1/threads/{tid}/runs", json=forced("slow")) as response:
        mid = response.headers["x-hearth-message-id"]
        for line in response.iter_lines():
            if line.startswith("event: tool_call"):
                break  # the call runs (for ten minutes): leave
    saved = wait_for(lambda: (m := on_disk(srv, tid, mid))["status"] != "pending" and m, timeout=60)
    assert saved["status"] == "stopped"
    [entry] = saved["metadata"]["tool_calls"]
    assert entry["state"] == "completed" and entry["response"]["error"] == "stopped"


def test_only_configured_servers_and_a_stranger_s_thread_starts_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "hermes", {"chat_template": HERMES}, model_parameters=PINNED)
    services = Services.create(load_settings(home=home, env={}))
    write_mcp(services, {"test": SERVERS["test"]})
    proof = tmp_path / "started"
    before = {p.pid for p in my_servers()}  # (the module's server may run its own)
    evil = {"command": sys.executable, "args": ["-c", f"open({str(proof)!r}, 'w')"]}
    with ThreadedServer(services) as server, server.http() as http:
        tid = new_thread(http, None)
        folder = services.settings.threads_dir / tid
        thread = json.loads((folder / "thread.json").read_text())
        thread["metadata"] = {
            "mcp": {"servers": [{"name": "evil", **evil}]},
            "mcpServers": {"evil": evil},
        }
        (folder / "thread.json").write_text(json.dumps(thread))
        answer = http.post(f"/v1/threads/{tid}/runs", json={"stream": False})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert "'evil'" in error["message"] and "configured: test" in error["message"]
        assert error["param"] == "metadata.mcp"
        named = {"tools": [{"type": "mcp", "server_label": "nope"}], "stream": False}
        answer = http.post(f"/v1/threads/{tid}/runs", json=named)
        assert answer.status_code == 400 and "configured: test" in answer.json()["error"]["message"]
        url = {"tools": [{"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:9"}]}
        answer = http.post(f"/v1/threads/{tid}/runs", json=url)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "tools"
        assert not {p.pid for p in my_servers()} - before and not proof.exists()
        lines = (folder / "messages.jsonl").read_text().splitlines()
        assert len(lines) == 1  # a refused run writes nothing


def rewrite_last(srv: ThreadedServer, tid: str, change: Any) -> None:
    """Edit the thread's last message on disk, as a stranger's file (or a hand) may."""
    path = srv.services.settings.threads_dir / tid / "messages.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines[-1])
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def edit_thread_json(srv: ThreadedServer, tid: str, change: Any) -> None:
    path = srv.services.settings.threads_dir / tid / "thread.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


ADD_NAMED = {"type": "mcp", "server_label": "test", "allowed_tools": ["add"]}


def test_a_run_that_names_its_tools_goes_on_after_an_approval(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    tid = new_thread(http, None)
    body = {"tools": [ADD_NAMED], "parameters": {"tool_choice": "required"}}
    mid, found = run(http, tid, body)
    [(_, call)] = tool_events(found)
    assert call["state"] == "awaiting_approval"
    marker = on_disk(srv, tid, mid)["metadata"]["awaiting_approval"]
    assert marker["tools"] == [{**ADD_NAMED, "require_approval": "always"}]
    found = decide(http, tid, mid, call["id"], "once")
    calls = tool_events(found)
    assert calls[0] == ("tool_call", {**call, "state": "running"})
    assert calls[1][0] == "tool_result" and calls[1][1]["response"]["error"] == ""
    entry = on_disk(srv, tid, mid)["metadata"]["tool_calls"][0]
    assert entry["state"] == "completed" and entry["tool"]["id"] == call["id"]


def test_a_waiting_answer_s_file_cannot_waive_approval_of_later_calls(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    """The marker's `tools` come back from messages.jsonl: a "never" written there is not
    honoured, so allowing the one call shown does not let the next ones run unasked."""
    tid = new_thread(http, None, tool_choice="required")  # every round calls
    mid, found = run(http, tid, {"tools": [ADD_NAMED]})
    [(_, call)] = tool_events(found)

    def waive(raw: dict[str, Any]) -> None:
        raw["metadata"]["awaiting_approval"]["tools"][0]["require_approval"] = "never"

    rewrite_last(srv, tid, waive)
    calls = tool_events(decide(http, tid, mid, call["id"], "once"))
    assert [(n, d["state"]) for n, d in calls] == [
        ("tool_call", "running"),
        ("tool_result", "completed"),
        ("tool_call", "awaiting_approval"),  # the next call asks again
    ]
    saved = on_disk(srv, tid, mid)
    assert [c["state"] for c in saved["metadata"]["tool_calls"]] == ["completed", "pending"]
    assert saved["metadata"]["awaiting_approval"]["tools"][0]["require_approval"] == "always"


def test_a_losing_always_decision_saves_no_grant(srv: ThreadedServer, http: httpx.Client) -> None:
    """Two decisions race: "deny" wins, and "always", which read the answer while it still
    waited, is refused without leaving the tool allowed everywhere."""
    approvals = srv.services.settings.state_dir / "mcp-approvals.json"
    tid = new_thread(http, ADD_ONLY)
    mid, call_id, _ = awaiting(http, tid)
    store = srv.services.threads.store
    before = store.messages(tid)  # what the losing request read, before the winner wrote
    decide(http, tid, mid, call_id, "deny")
    store.messages = lambda *_: before  # type: ignore[method-assign]
    try:
        path = f"/v1/threads/{tid}/messages/{mid}/approval"
        late = http.post(path, json={"call_id": call_id, "decision": "always"})
    finally:
        del store.messages  # type: ignore[method-assign]
    assert late.status_code == 409 and "decided already" in late.text
    always = json.loads(approvals.read_text()).get("always", []) if approvals.exists() else []
    assert {"server": "test", "tool": "add"} not in always
    saved = on_disk(srv, tid, mid)
    assert saved["status"] == "ready"
    assert saved["metadata"]["tool_calls"][0]["response"]["error"] == "disallowed"


def test_tool_choice_of_every_round_is_read_as_the_first_round_s(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    """The thread's parameters are Jan's `assistants[0].model.parameters` first (as the first
    round reads them); a top-level `parameters` that is not an object is no 500."""
    tid = new_thread(http, None, tool_choice="required")
    edit_thread_json(srv, tid, lambda raw: raw.update(parameters={"tool_choice": "none"}))
    _, found = run(http, tid, forced("test", allowed_tools=["add"]) | {"parameters": {}})
    assert [n for n, _ in tool_events(found)] == ["tool_call", "tool_result"] * (MAX_ROUNDS - 1)

    odd = new_thread(http, None, tool_choice="required")
    edit_thread_json(srv, odd, lambda raw: raw.update(parameters=["tool_choice"]))
    body = forced("test", allowed_tools=["add"]) | {"parameters": {}, "stream": False}
    answer = http.post(f"/v1/threads/{odd}/runs", json=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["metadata"]["tool_calls"]) == MAX_ROUNDS - 1


def test_a_conversation_with_every_tool_off_runs_a_plain_chat(
    srv: ThreadedServer, http: httpx.Client
) -> None:
    every = [*OTHERS, "add"]
    tid = new_thread(http, {**ADD_ONLY, "servers": [{"name": "test", "tools_off": every}]})
    mid, found = run(http, tid)
    assert tool_events(found) == [] and found[-1] == ("done", None)
    saved = on_disk(srv, tid, mid)
    assert saved["status"] == "ready" and "tool_calls" not in saved["metadata"]
