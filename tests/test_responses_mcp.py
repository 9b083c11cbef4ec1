"""`{"type": "mcp"}` tools on `POST /v1/responses` (issue 26, points 3 and 4): Hearth runs the
calls on the user's configured MCP servers and answers with OpenAI's items and events.

Fast tests read requests and input items (no server); the slow ones drive a real Hearth with a
real SmolLM2 and real MCP servers (tests/support/mcp_server.py, tests/support/mcp_loop_server.py
and PyPI's mcp-server-time), through the official `openai` client. The model's calls are forced
with tool_choice {"type": "mcp"} at temperature 0, and its arguments are bounded by the tools'
schemas (the loop server's strings hold at most 8 characters), so no test passes by chance.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import psutil
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from support.engines import add_smol
from support.server import ThreadedServer
from support.waiting import wait_for

from hearth.core.config import load_settings
from hearth.core.errors import InvalidParameter
from hearth.server.responses import mcp_input, mcp_pending, tools, translate
from hearth.server.responses.mcp_request import Approval, Filter
from hearth.services import Services
from tests.test_mcp_hosts import TEST_SERVER, marked_processes

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
LOOP_SERVER = str(Path(__file__).parent / "support" / "mcp_loop_server.py")
NOTE = {"type": "mcp", "server_label": "loop", "allowed_tools": ["note"]}


def _ours() -> set[int]:
    """The MCP server processes this test process started (other test runs on the machine may
    have their own)."""
    children = {child.pid for child in psutil.Process().children(recursive=True)}
    return {proc.pid for proc in marked_processes() if proc.pid in children}


def _mcp(**fields: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "loop", **fields}


# ---- requests and input items, read (no server) ----------------------------------------


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        (_mcp(server_url="https://example.com/mcp"), "tools[0].server_url"),
        (_mcp(connector_id="connector_dropbox"), "tools[0].connector_id"),
        (_mcp(tunnel_id="t1"), "tools[0].tunnel_id"),
        (_mcp(headers={"Authorization": "Bearer x"}), "tools[0].headers"),
        (_mcp(authorization="secret"), "tools[0].authorization"),
        ({"type": "mcp"}, "tools[0].server_label"),
        (_mcp(allowed_tools="note"), "tools[0].allowed_tools"),
        (_mcp(allowed_tools={}), "tools[0].allowed_tools"),
        (_mcp(allowed_tools={"read_only": "yes"}), "tools[0].allowed_tools.read_only"),
        (_mcp(require_approval="sometimes"), "tools[0].require_approval"),
        (_mcp(require_approval={"always": "note"}), "tools[0].require_approval.always"),
    ],
)
def test_bad_mcp_tools_are_400s_naming_the_field(tool: dict[str, Any], param: str) -> None:
    """A request names a configured server and nothing else: an address, a connector, headers
    or credentials are refused with the field named (servers come only from mcp.json)."""
    with pytest.raises(InvalidParameter) as caught:
        translate.call({"model": "m", "input": "x", "tools": [tool]})
    assert caught.value.param == param
    if param.split(".")[-1] in ("server_url", "headers", "authorization"):
        assert "mcp.json" in caught.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [_mcp(), _mcp()]}, "tools[1].server_label"),
        ({"tools": [_mcp()], "tool_choice": {"type": "mcp", "server_label": "x"}},
         "tool_choice.server_label"),
        ({"tools": [_mcp()], "max_tool_calls": -1}, "max_tool_calls"),
        ({"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1",
                     "approve": True}], "tools": [_mcp()]}, "input[0].approval_request_id"),
        ({"input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1",
                     "approve": "yes"}]}, "input[0].approve"),
    ],
)  # fmt: skip
def test_bad_mcp_requests_are_400s(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        translate.call({"model": "m", "input": "x", **body})
    assert caught.value.param == param


def test_mcp_tools_are_no_longer_left_out() -> None:
    """Before issue 26 an mcp tool was "hosted": left out, the model answering without it."""
    read = tools.read({"tools": [NOTE, {"type": "web_search"}]})
    assert read.left_out == ["web_search"]
    assert [t.server for t in read.mcp] == ["loop"]
    assert read.echo == [{"type": "mcp", "server_label": "loop",
                          "allowed_tools": {"tool_names": ["note"]},
                          "require_approval": "always"}]  # fmt: skip


def test_require_approval_defaults_to_always_and_filters_match() -> None:
    assert Approval().needed("note", read_only=True)  # missing: "always", as OpenAI
    assert not Approval("never").needed("note", read_only=False)
    read_only_free = Approval("filters", never=Filter(read_only=True))
    assert not read_only_free.needed("get_time", read_only=True)
    assert read_only_free.needed("delete", read_only=False)  # named by neither: asks
    both = Approval("filters", always=Filter(frozenset({"x"})), never=Filter(frozenset({"x"})))
    assert both.needed("x", read_only=False)  # "always" wins


def test_input_mcp_items_become_the_chat() -> None:
    """A whole earlier turn sent back: the listed server, an earlier call, a denied one and an
    approved one already run (its mcp_call carries the approval id: it is not run again)."""
    items: list[Any] = [
        {"role": "user", "content": "Note it."},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "loop", "tools": []},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "loop", "name": "note",
         "arguments": '{"text": "a"}', "output": "noted: a"},
        {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "loop",
         "name": "note", "arguments": '{"text": "b"}'},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": False,
         "reason": "not now"},
        {"type": "mcp_approval_request", "id": "mcpr_2", "server_label": "loop",
         "name": "note", "arguments": '{"text": "c"}'},
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_2", "approve": True},
        {"type": "mcp_call", "id": "mcp_2", "server_label": "loop", "name": "note",
         "arguments": '{"text": "c"}', "output": "noted: c", "approval_request_id": "mcpr_2"},
    ]  # fmt: skip
    found = mcp_input.McpInput()
    chat = translate.messages({"input": items}, found)
    assert found.listed == {"loop"} and found.decisions == []  # nothing left to run
    roles = [m["role"] for m in chat]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
    assert chat[2]["content"] == "noted: a"
    assert chat[3]["tool_calls"][0]["function"] == {"name": "note", "arguments": '{"text": "b"}'}
    assert chat[4]["content"] == mcp_input.DENIED + " Reason: not now"
    assert chat[6]["content"] == "noted: c"


def test_pending_responses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_pending, "MAX_KEPT", 2)
    store = mcp_pending.Pending()
    for n in range(3):
        store.keep(f"resp_{n}", [{"role": "user", "content": str(n)}])
    assert store.items("resp_0") is None and store.items("resp_2") is not None
    monkeypatch.setattr(mcp_pending, "KEEP_SECONDS", -1.0)
    store.keep("resp_3", [])
    assert store.items("resp_3") is None  # expired at once


def test_unconfigured_server_or_url_is_400_and_starts_nothing(tmp_path: Path) -> None:
    services = Services.create(load_settings(home=tmp_path, env={}))
    entry = {"command": sys.executable, "args": [LOOP_SERVER]}
    (services.settings.state_dir / "mcp.json").write_text(json.dumps({"mcpServers": {
        "loop": entry, "off": {**entry, "active": False}}}))  # fmt: skip
    before = _ours()
    with ThreadedServer(services) as server, server.http() as http:
        for tool, param, words in [
            (_mcp(server_label="nope"), "tools[1].server_label", "configured: loop, off"),
            (_mcp(server_label="off"), "tools[1].server_label", "turned off"),
            (_mcp(server_url="http://127.0.0.1:1/mcp"), "tools[1].server_url", "mcp.json"),
            (_mcp(headers={"x": "y"}), "tools[1].headers", "mcp.json"),
        ]:
            body = {"model": "smol", "input": "hi", "tools": [NOTE, tool]}
            reply = http.post("/v1/responses", json=body)
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["param"] == param and words in error["message"]
    assert _ours() == before  # no server was started


# ---- through a real Hearth, SmolLM2 and real MCP servers -------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("responses-mcp") / "home"
    (path / "models").mkdir(parents=True)
    add_smol(path, "smol", {"chat_template": HERMES}, model_parameters={"temperature": 0,
                                                                      "seed": 42})  # fmt: skip
    calls = str(path / "calls.jsonl")
    loop = {"command": sys.executable, "args": [LOOP_SERVER], "env": {"HEARTH_TEST_CALLS": calls}}
    servers = {
        "test": {"command": sys.executable, "args": [TEST_SERVER]},
        "crashy": {"command": sys.executable, "args": [TEST_SERVER]},
        "loop": {**loop, "timeout": 2},
        "slow": {**loop, "timeout": 300},
        "time": {"command": sys.executable, "args": ["-m", "mcp_server_time",
                                                     "--local-timezone", "UTC"]},
        "broken": {"command": sys.executable, "args": ["-c", "import sys; sys.exit('no luck')"]},
    }  # fmt: skip
    (path / "mcp.json").write_text(json.dumps({"mcpServers": servers}))
    return path


@pytest.fixture(scope="module")
def srv(home: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server
    assert not _ours()  # every server stopped with Hearth


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> openai.OpenAI:
    return srv.openai()


def _calls(home: Path) -> list[dict[str, Any]]:
    path = home / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def _force(server: str, tool: str, approval: str | None = "never", **more: Any) -> dict[str, Any]:
    """A request forcing `tool` on `server` (the only tool offered)."""
    spec: dict[str, Any] = {"type": "mcp", "server_label": server, "allowed_tools": [tool]}
    if approval is not None:
        spec["require_approval"] = approval
    return {"model": "smol", "input": "Use the tool.", "temperature": 0, "max_output_tokens": 24,
            "tools": [spec], "tool_choice": {"type": "mcp", "server_label": server, "name": tool},
            **more}  # fmt: skip


def _items(reply: Any, kind: str) -> list[Any]:
    return [item for item in reply.output if item.type == kind]


@pytest.mark.slow
def test_forced_calls_answer_with_what_the_servers_said(client: openai.OpenAI) -> None:
    """SmolLM2, forced, calls the test server's `add` and mcp-server-time's
    `get_current_time`: each output is the server's answer to the arguments the model wrote,
    and the model's next turn answers in text, the usage summing both turns."""
    added = client.responses.create(**_force("test", "add"))
    listed = _items(added, "mcp_list_tools")
    assert [(i.server_label, [t.name for t in i.tools]) for i in listed] == [("test", ["add"])]
    call = _items(added, "mcp_call")[0]
    arguments = json.loads(call.arguments)
    assert (call.server_label, call.name, call.status) == ("test", "add", "completed")
    assert call.output == str(arguments["a"] + arguments["b"]) and call.error is None
    assert added.output[-1].type == "message"
    assert added.usage is not None and added.usage.input_tokens > 200  # two turns summed

    timed = client.responses.create(**_force("time", "get_current_time"))
    call = _items(timed, "mcp_call")[0]
    told = json.loads(call.output)
    assert told["timezone"] == json.loads(call.arguments)["timezone"]
    assert {"datetime", "day_of_week", "is_dst"} <= set(told)


@pytest.mark.slow
@pytest.mark.parametrize("approve", [True, False])
def test_approval_stateless(client: openai.OpenAI, home: Path, approve: bool) -> None:
    """require_approval missing ("always"): the response ends with an mcp_approval_request
    and nothing runs; the client sends the items back with its answer: approved, the call
    runs (its mcp_call names the request); denied, nothing runs and the model is told."""
    before = len(_calls(home))
    asked = client.responses.create(**_force("loop", "note", approval=None))
    request = asked.output[-1]
    assert request.type == "mcp_approval_request" and request.name == "note"
    assert not _items(asked, "mcp_call") and len(_calls(home)) == before
    answer: Any = {"type": "mcp_approval_response", "approval_request_id": request.id,
                   "approve": approve, "reason": "checked"}  # fmt: skip
    sent_back = [item.model_dump(exclude_none=True) for item in asked.output]
    reply = client.responses.create(
        model="smol", input=[{"role": "user", "content": "Use the tool."}, *sent_back, answer],
        tools=[NOTE], tool_choice="none", temperature=0, max_output_tokens=16,
    )  # fmt: skip
    assert not _items(reply, "mcp_list_tools")  # listed in the input: not again
    ran = _items(reply, "mcp_call")
    if approve:
        assert len(ran) == 1 and ran[0].approval_request_id == request.id
        text = json.loads(request.arguments)["text"]
        assert ran[0].output == f"noted: {text}"
        assert _calls(home)[before:] == [{"tool": "note", "arguments": {"text": text}}]
    else:
        assert not ran and len(_calls(home)) == before
    assert reply.output[-1].type == "message"


@pytest.mark.slow
@pytest.mark.parametrize("approve", [True, False])
def test_approval_with_previous_response_id(
    client: openai.OpenAI, home: Path, approve: bool
) -> None:
    """OpenAI's guide's form: previous_response_id and only the approval in the input."""
    before = len(_calls(home))
    asked = client.responses.create(**_force("loop", "note", approval="always"))
    request = asked.output[-1]
    assert request.type == "mcp_approval_request"
    reply = client.responses.create(
        model="smol", previous_response_id=asked.id, tools=[NOTE], tool_choice="none",
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id,
                "approve": approve}],
        temperature=0, max_output_tokens=16,
    )  # fmt: skip
    assert reply.previous_response_id == asked.id
    ran = _items(reply, "mcp_call")
    assert len(ran) == (1 if approve else 0) and len(_calls(home)) == before + len(ran)
    if approve:
        assert ran[0].approval_request_id == request.id and ran[0].output.startswith("noted: ")
    with pytest.raises(openai.BadRequestError, match="does not store responses"):
        client.responses.create(model="smol", input="hi", previous_response_id=reply.id)


@pytest.mark.slow
def test_stream_events_in_openai_order(srv: ThreadedServer, client: openai.OpenAI) -> None:
    """Each event is one the SDK knows; the MCP items' events come in §3's order; the SDK's
    stream helper folds them into the final Response."""
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    with (
        srv.http() as http,
        http.stream(
            "POST", "/v1/responses", json={**_force("loop", "note"), "stream": True}
        ) as raw,
    ):
        events = [json.loads(line[6:]) for line in raw.iter_lines() if line.startswith("data: ")]
    for event in events:
        adapter.validate_python(event)
    kinds = [e["type"] for e in events if not e["type"].endswith(".delta")]
    assert kinds[:9] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed", "response.output_item.done",
        "response.output_item.added", "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
    ]  # fmt: skip
    assert kinds[9:11] == ["response.mcp_call.completed", "response.output_item.done"]
    assert "response.mcp_call_arguments.delta" in [e["type"] for e in events]
    assert kinds[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["mcp_list_tools", "mcp_call", "message"]

    with client.responses.stream(**_force("loop", "note")) as stream:  # type: ignore[arg-type]
        seen = [event.type for event in stream]
        folded = stream.get_final_response()
    assert "response.mcp_call.completed" in seen
    assert [item.type for item in folded.output] == ["mcp_list_tools", "mcp_call", "message"]


@pytest.mark.slow
def test_failing_tools_end_in_errors_and_the_answer_goes_on(client: openai.OpenAI) -> None:
    """A call that outlives the server's timeout (2 s), a server that dies mid-call and a huge
    result: each is an mcp_call the client can read, and the response ends."""
    hung = client.responses.create(**_force("loop", "stall"))
    call = _items(hung, "mcp_call")[0]
    assert call.status == "failed" and call.output is None
    assert call.error.type == "mcp_protocol_error" and call.error.code == -32001  # type: ignore[union-attr]
    assert "timed out" in call.error.message  # type: ignore[union-attr]
    assert hung.output[-1].type == "message" and hung.error is None

    crashed = client.responses.create(**_force("crashy", "crash"))
    call = _items(crashed, "mcp_call")[0]
    assert call.status == "failed" and call.error.code == -32000  # type: ignore[union-attr]
    assert crashed.output[-1].type == "message"

    huge = client.responses.create(**_force("loop", "big"))
    call = _items(huge, "mcp_call")[0]
    assert call.status == "completed" and call.output.startswith("y" * 1000)
    assert call.output.endswith("[cut by Hearth: the result was 300000 characters; these are "
                                "the first 100000]")  # fmt: skip
    # 100,000 characters do not fit SmolLM2's 1,024-token context: the response says so
    assert huge.status == "failed" and huge.error is not None
    assert "could not start" in huge.error.message and "context" in huge.error.message


@pytest.mark.slow
def test_tool_calls_are_bounded(srv: ThreadedServer, client: openai.OpenAI, home: Path) -> None:
    """max_tool_calls bounds the calls (0: none, even forced; 1 with "required": one call,
    then a text answer); without it, `mcp_max_rounds` bounds the model's turns (1: the only
    turn answers in text, forced or not)."""
    before = len(_calls(home))
    none = client.responses.create(**_force("loop", "note", max_tool_calls=0))
    assert not _items(none, "mcp_call") and none.output[-1].type == "message"
    one = client.responses.create(**{**_force("loop", "note", max_tool_calls=1),
                                     "tool_choice": "required"})  # fmt: skip
    assert len(_items(one, "mcp_call")) == 1 and one.output[-1].type == "message"
    assert len(_calls(home)) == before + 1
    settings = srv.services.settings
    settings.mcp_max_rounds = 1
    try:
        bounded = client.responses.create(**_force("loop", "note"))
    finally:
        settings.mcp_max_rounds = 8
    assert not _items(bounded, "mcp_call") and len(_calls(home)) == before + 1


@pytest.mark.slow
def test_approved_calls_keep_to_max_tool_calls(srv: ThreadedServer, home: Path) -> None:
    """Calls the input approves count toward max_tool_calls too: 1 runs the first approved
    call and leaves the second `incomplete` (the model reads why); 0 runs none."""
    asked = [{"type": "mcp_approval_request", "id": f"mcpr_{n}", "server_label": "loop",
              "name": "note", "arguments": json.dumps({"text": n})}
             for n in ("one", "two")]  # fmt: skip
    approved = [{"type": "mcp_approval_response", "approval_request_id": f"mcpr_{n}",
                 "approve": True} for n in ("one", "two")]  # fmt: skip
    body = {"model": "smol", "input": [{"role": "user", "content": "Note it."}, *asked,
            *approved], "tools": [NOTE], "tool_choice": "none", "temperature": 0,
            "max_output_tokens": 8}  # fmt: skip
    before = len(_calls(home))
    with srv.http() as http:
        one = http.post("/v1/responses", json={**body, "max_tool_calls": 1}).json()
        none = http.post("/v1/responses", json={**body, "max_tool_calls": 0}).json()
    ran = [item for item in one["output"] if item["type"] == "mcp_call"]
    assert [(c["approval_request_id"], c["status"]) for c in ran] == [
        ("mcpr_one", "completed"), ("mcpr_two", "incomplete")]  # fmt: skip
    assert ran[0]["output"] == "noted: one" and ran[1]["output"] is None
    left = [item for item in none["output"] if item["type"] == "mcp_call"]
    assert [c["status"] for c in left] == ["incomplete", "incomplete"]
    assert _calls(home)[before:] == [{"tool": "note", "arguments": {"text": "one"}}]


@pytest.mark.slow
def test_mixed_with_function_tools(client: openai.OpenAI) -> None:
    """An MCP tool beside a function tool: a forced function call still goes back to the
    client as a function_call item (nothing runs on the server)."""
    weather = {"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}},
        "required": ["city"]}}  # fmt: skip
    reply = client.responses.create(
        model="smol", input="Weather?", tools=[NOTE, weather],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
        max_output_tokens=24,
    )  # fmt: skip
    assert [item.type for item in reply.output] == ["mcp_list_tools", "function_call"]
    assert reply.output[-1].name == "get_weather"  # type: ignore[union-attr]


@pytest.mark.slow
def test_server_that_cannot_start_is_424(srv: ThreadedServer) -> None:
    with srv.http() as http:
        reply = http.post("/v1/responses", json=_force("broken", "x"))
    assert reply.status_code == 424, reply.text
    error = reply.json()["error"]
    assert error["param"] == "tools[0].server_label" and "no luck" in error["message"]


def _leave_mid_call(srv: ThreadedServer, home: Path, stream: bool) -> None:
    """Send a request forcing the `stall` tool and hang up once the server has the call."""
    before = len(_calls(home))
    body = json.dumps({**_force("slow", "stall"), "stream": stream}).encode()
    head = (f"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(head.encode() + body)
        wait_for(lambda: len(_calls(home)) > before, timeout=60)  # the call is in flight


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
def test_client_that_leaves_stops_the_loop(
    srv: ThreadedServer, home: Path, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    """The client hangs up while a call hangs (its timeout: 300 s), streamed or not: the call
    is cancelled, the loop ends at once, and no other call or turn of the model starts."""
    caplog.set_level(logging.INFO, logger="hearth.server")
    before = len(_calls(home))
    _leave_mid_call(srv, home, stream)
    turns = [r.getMessage() for r in caplog.records if "MCP turn 1" in r.getMessage()]
    response_id = turns[-1].split()[1].rstrip(":")
    said = lambda: [r.getMessage() for r in caplog.records if response_id in r.getMessage()]  # noqa: E731
    wait_for(lambda: any("the client left" in m for m in said()), timeout=60)
    # logged as the loop raised: nothing after it ran (no call, no turn)
    assert [m for m in said() if "MCP turn" in m] == [f"Responses {response_id}: MCP turn 1 "
                                                      "of the model"]  # fmt: skip
    assert [c["tool"] for c in _calls(home)[before:]] == ["stall"]  # one call, no second
