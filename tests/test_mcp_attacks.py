"""Only the user's own files start MCP servers (issue 26, point 1; SECURITY.md's trust boundary).

A model.json, a Jan model.yml, a GGUF's chat template and metadata, and request bodies in each
face's dialect carry an MCP server definition whose `command` would write a marker file. None
may start a process: the marker never appears, no process carries Hearth's MCP marker, and
`GET /v1/mcp/servers` lists only what the user's mcp.json (and, in a Jan data folder, Jan's
mcp_config.json) defines. Each request either fails with a 400 naming the field or is answered
with the field ignored, as before MCP existed. A control writes the same definition into the
user's mcp.json and sees the marker appear: the payload is live, so its absence means something.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from support.engines import add_smol
from support.gguf_factory import write_gguf
from support.janfolder import make_jan_folder, write_model_yml
from support.server import ThreadedServer
from test_cli_mcp import our_servers
from test_mcp_hosts import TEST_SERVER

from hearth.core.config import load_settings
from hearth.services import Services
from hearth.services import mcp as mcp_service

MESSAGES = [{"role": "user", "content": "Say hi."}]


def payload(marker: Path) -> dict[str, Any]:
    """A stdio server entry whose program writes `marker`: proof that it ran."""
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return {"command": sys.executable, "args": ["-c", code]}


def carrying(entry: dict[str, Any]) -> dict[str, Any]:
    """Every spelling of "start this server" a stranger's JSON might try."""
    return {
        "mcpServers": {"evil": entry},
        "mcp_servers": {"evil": entry},
        "mcp": {"servers": {"evil": entry}},
        **entry,  # a bare `command` and `args`
    }


def no_trace(marker: Path) -> None:
    assert not marker.exists(), "a stranger's MCP definition ran its command"
    assert not our_servers()
    for proc in psutil.process_iter(["cmdline"]):
        assert str(marker) not in " ".join(proc.info["cmdline"] or []), proc


def listed(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/v1/mcp/servers").json()
    return {"names": [s["name"] for s in answer["data"]], "problems": answer["problems"]}


def refused(response: httpx.Response, param: str) -> str:
    """A 400 in the face's own shape whose message names `param`; the message."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    assert param in message or (isinstance(error, dict) and error.get("param") == param), error
    return message


@pytest.mark.slow
def test_model_json_and_request_bodies_start_nothing(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_service, "RECHECK", 0.0)  # the control's mcp.json is read at once
    marker = tmp_path / "ran-from-a-stranger"
    evil = payload(marker)
    add_smol(home, "smol", **carrying(evil))
    (home / "models" / "smol" / "mcp.json").write_text(json.dumps({"mcpServers": {"evil": evil}}))
    add_smol(home, "clean")
    services = Services.create(load_settings(home=home, env={}))
    base = {"model": "smol", "messages": MESSAGES, "max_tokens": 1, "temperature": 0, "seed": 1}
    mcp_tool = {"type": "mcp", "server_label": "evil", "server_url": "http://127.0.0.1:9/mcp"}
    with ThreadedServer(services) as server, server.http() as client:
        assert listed(client) == {"names": [], "problems": []}
        assert client.get("/v1/models/smol").json()["status"] == "ready"
        # OpenAI chat: unknown body fields are ignored, as always; an mcp tool is refused
        answer = client.post("/v1/chat/completions", json={**base, **carrying(evil)})
        assert answer.status_code == 200, answer.text
        tools = [{**mcp_tool, **evil}]
        refused(client.post("/v1/chat/completions", json={**base, "tools": tools}), "tools[0]")
        # Ollama: the same for /api/chat; /api/create records the parameter as ignored
        ollama = {"model": "smol", "messages": MESSAGES, "stream": False, "options": {"seed": 1}}
        ollama["options"]["num_predict"] = 1
        answer = client.post("/api/chat", json={**ollama, **carrying(evil)})
        assert answer.status_code == 200, answer.text
        refused(client.post("/api/chat", json={**ollama, "tools": tools}), "tools[0]")
        create = {"model": "derived", "from": "clean", "stream": False, **carrying(evil)}
        create["parameters"] = carrying(evil)
        assert client.post("/api/create", json=create).json() == {"status": "success"}
        derived = client.get("/v1/models/derived").json()
        assert "mcpServers" in derived["metadata"]["ollama"]["ignored_params"]
        # Anthropic's MCP connector field: ignored (Hearth has no such connector)
        anthropic = {"model": "smol", "max_tokens": 1, "messages": MESSAGES}
        anthropic["mcp_servers"] = [{"type": "url", "url": "http://127.0.0.1:9/mcp", "name": "x"}]
        assert client.post("/v1/messages", json=anthropic).status_code == 200
        # Responses: an mcp tool names a configured server or is refused; never a URL's server
        response = {"model": "smol", "input": "hi", "max_output_tokens": 1, "tools": tools}
        assert client.post("/v1/responses", json=response).status_code in (200, 400)
        # the API writes model.json: the keys are kept as inert data, as any unknown key is
        assert client.patch("/v1/models/clean", json=carrying(evil)).status_code == 200
        assert listed(client) == {"names": [], "problems": []}
        no_trace(marker)

        # control: the same entry in the user's own mcp.json does run
        (home / "mcp.json").write_text(json.dumps({"mcpServers": {"mine": evil}}))
        assert listed(client)["names"] == ["mine"]
        assert marker.read_text() == "ran"


def test_a_gguf_template_and_metadata_define_no_server(tmp_path: Path, home: Path) -> None:
    marker = tmp_path / "ran-from-a-template"
    evil = payload(marker)
    definition = json.dumps({"mcpServers": {"evil": evil}})
    popen = f"{{{{ cycler.__init__.__globals__.os.popen({evil['command']!r} + ' -c x') }}}}"
    folder = home / "models" / "tpl"
    folder.mkdir()
    write_gguf(
        folder / "tpl.gguf",
        chat_template=f"{popen}{{# {definition} #}}{{{{ messages }}}}",
        extra_kv={"mcp.servers": definition, "hearth.mcpServers": definition},
    )
    services = Services.create(load_settings(home=home, env={}))
    with ThreadedServer(services) as server, server.http() as client:
        model = client.get("/v1/models/tpl").json()
        assert model["status"] == "ready" and "popen" in model["metadata"]["chat_template"]
        shown = client.post("/api/show", json={"model": "tpl"})
        assert shown.status_code == 200 and "mcpServers" in shown.json()["template"]
        assert listed(client) == {"names": [], "problems": []}
    no_trace(marker)


@pytest.mark.slow
def test_a_jan_folder_serves_jan_servers_and_no_model_yml_ones(tmp_path: Path) -> None:
    """Jan's mcp_config.json is the user's too; Hearth's mcp.json wins a name clash; a model.yml
    (or a config file dropped in a model's folder) defines nothing."""
    marker = tmp_path / "ran-from-jan"
    evil = payload(marker)
    jan = make_jan_folder(tmp_path / "jan")
    test_entry = {"command": sys.executable, "args": [TEST_SERVER]}
    jan_config = {
        "jan-test": test_entry,
        "shared": evil,
        "jan-off": {**test_entry, "active": False},
    }
    (jan / "mcp_config.json").write_text(json.dumps({"mcpServers": jan_config}))
    (jan / "hearth").mkdir()
    (jan / "hearth" / "mcp.json").write_text(json.dumps({"mcpServers": {"shared": test_entry}}))
    folder = jan / "llamacpp" / "models" / "evil"
    folder.mkdir(parents=True)
    write_gguf(folder / "model.gguf")
    model_yml = {"model_path": "llamacpp/models/evil/model.gguf", "name": "evil"}
    write_model_yml(folder, {**model_yml, **carrying(evil)})
    (folder / "mcp_config.json").write_text(json.dumps({"mcpServers": {"evil": evil}}))
    services = Services.create(load_settings(home=jan, env={}, jan=True))
    with ThreadedServer(services) as server, server.http() as client:
        assert "evil" in [m["id"] for m in client.get("/v1/models").json()["data"]]
        answer = client.get("/v1/mcp/servers").json()
        by_name = {s["name"]: s for s in answer["data"]}
        assert sorted(by_name) == ["jan-off", "jan-test", "shared"]
        assert by_name["jan-test"]["source"] == str(jan / "mcp_config.json")
        assert by_name["jan-test"]["state"] == "running"
        assert "add" in [t["name"] for t in by_name["jan-test"]["tools"]]
        assert by_name["jan-off"]["state"] == "inactive"
        assert by_name["shared"]["source"] == str(jan / "hearth" / "mcp.json")  # Hearth's wins
        assert by_name["shared"]["state"] == "running"
        [clash] = answer["problems"]
        assert clash["name"] == "shared" and "that one is used" in clash["message"]
        assert answer["files"] == [
            {"path": str(jan / "hearth" / "mcp.json"), "kind": "hearth", "exists": True},
            {"path": str(jan / "mcp_config.json"), "kind": "jan", "exists": True},
        ]
        assert not marker.exists()  # Jan's "shared" lost the clash; model.yml's never counted
    assert not our_servers()
