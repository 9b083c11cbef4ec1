"""Engine kinds as plugins, and replicas, end to end through a real Hearth process.

The `echo` kind lives outside Hearth (tests/support/echo_plugin.py) and is found through the
`hearth.engines` entry-point group, as an installed plugin would be. It serves requests through
Hearth's proxy like llama.cpp does, so replicas can be killed and watched cheaply here; the
same replica code on real llama.cpp processes is tested in test_replicas_llamacpp.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.echo_plugin import install_echo_plugin
from support.engines import gone, running, until
from support.server import HearthProcess
from support.smollm import FILENAME, smollm2_path

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml


def _model(home: Path, model_id: str, raw: dict[str, Any]) -> None:
    folder = home / "models" / model_id
    folder.mkdir(parents=True)
    os.link(smollm2_path(), folder / FILENAME)  # a model file, so the model reads "ready"
    (folder / "model.json").write_text(json.dumps(raw), encoding="utf-8")


@pytest.fixture(scope="module")
def hearth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthProcess]:
    root = tmp_path_factory.mktemp("plugin")
    plugins = install_echo_plugin(root / "site")
    home = root / "home"
    _model(home, "echo-one", {"engine": "echo", "engine_parameters": {"greeting": "hi there"}})
    _model(home, "echo-bad", {"engine": "echo", "engine_parameters": {"greeting": 5}})
    _model(
        home,
        "echo-two",
        {"engine": "echo", "engine_parameters": {"replicas": 2, "replica_routing": "least-busy"}},
    )
    _model(home, "echo-many", {"engine": "echo", "engine_parameters": {"replicas": 99}})
    with HearthProcess(home, env={"PYTHONPATH": str(plugins)}) as proc:
        yield proc


def _chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **extra}


def test_a_plugin_engine_kind_serves_through_hearth(hearth: HearthProcess) -> None:
    import openai

    client = hearth.keep(
        openai.OpenAI(base_url=f"{hearth.url}/v1", api_key="unused", max_retries=0)
    )
    reply = client.chat.completions.create(model="echo-one", **_chat("Say hi"))
    assert reply.model == "echo-one"
    assert (reply.choices[0].message.content or "").endswith("> hi there: Say hi")
    stream = client.chat.completions.create(model="echo-one", stream=True, **_chat("again"))
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("<") and text.endswith("> hi there: again")
    with httpx.Client(base_url=hearth.url, timeout=30) as http:
        loaded = running(http)["echo-one"]
        assert loaded["engine"] == "echo" and loaded["engine_parameters"] == {
            "greeting": "hi there"
        }
        (replica,) = loaded["replicas"]
        assert replica["pid"] == loaded["pid"] and replica["status"] == "running"
        assert replica["requests_served"] == 2 and replica["active_requests"] == 0
        # The kind's own parameters are checked like llama.cpp's, in files and in edits.
        bad = http.get("/v1/models/echo-bad").json()
        assert bad["status"] == "invalid" and "'greeting'" in bad["error"]
        assert "must be a short text" in bad["error"]
        typo = http.patch("/v1/models/echo-one", json={"engine_parameters": {"greting": "x"}})
        assert typo.status_code == 400 and "Did you mean 'greeting'" in typo.text
        many = http.get("/v1/models/echo-many").json()
        assert many["status"] == "invalid" and "from 1 to 16" in many["error"]


def _open_stream(http: httpx.Client, delay: float) -> tuple[Any, Iterator[str], int]:
    """Start a slow streamed chat; return it, its line iterator and the serving engine's pid."""
    body = _chat("slow", stream=True, echo_delay=delay, model="echo-two")
    response = http.send(http.build_request("POST", "/v1/chat/completions", json=body), stream=True)
    lines = response.iter_lines()
    first = next(line for line in lines if line.startswith("data: "))
    content = json.loads(first[6:])["choices"][0]["delta"]["content"]  # "<pid>", then a pause
    return response, lines, int(content.strip("<>"))


def test_replicas_fail_alone_and_come_back(hearth: HearthProcess) -> None:
    with httpx.Client(base_url=hearth.url, timeout=60) as http:
        start = http.post("/v1/models/echo-two/start", json={})
        assert start.status_code == 200, start.text
        replicas = start.json()["replicas"]
        assert [r["status"] for r in replicas] == ["running", "running"]
        pids = {r["pid"] for r in replicas}
        assert len(pids) == 2 and None not in pids

        # Least-busy: two requests in flight run on the two replicas, one each.
        first, first_lines, first_pid = _open_stream(http, delay=4)
        second, second_lines, second_pid = _open_stream(http, delay=4)
        assert {first_pid, second_pid} == pids

        os.kill(first_pid, signal.SIGKILL)  # one replica dies with a request in flight
        t0 = time.monotonic()
        rest = list(first_lines)
        assert time.monotonic() - t0 < 3, "the dead replica's request must fail fast"
        errors = [json.loads(line[6:]) for line in rest if line.startswith('data: {"error"')]
        assert errors and "exited unexpectedly" in errors[0]["error"]["message"]
        assert "other replicas keep serving" in errors[0]["error"]["message"]
        first.close()

        # The other replica's request is untouched and completes.
        tail = list(second_lines)
        second.close()
        assert tail[-1] == "data: [DONE]" or "data: [DONE]" in tail
        assert not any('"error"' in line for line in tail)

        # The dead replica is restarted under a new pid; the survivor kept its process.
        def restarted() -> bool:
            table = running(http)["echo-two"]["replicas"]
            return (
                all(r["status"] == "running" for r in table)
                and sum(r["restarts"] for r in table) == 1
            )

        assert until(restarted, 30), running(http)["echo-two"]
        table = running(http)["echo-two"]["replicas"]
        assert second_pid in {r["pid"] for r in table} and first_pid not in {
            r["pid"] for r in table
        }
        assert gone(first_pid)
        assert http.get("/v1/models/echo-two").json()["status"] == "running"
        reply = http.post("/v1/chat/completions", json={**_chat("after"), "model": "echo-two"})
        assert reply.status_code == 200 and "after" in reply.text

        # Stopping the model stops every replica.
        all_pids = {r["pid"] for r in table}
        assert http.post("/v1/models/echo-two/stop").status_code == 200
        assert until(lambda: all(gone(pid) for pid in all_pids), 15)


def test_plugins_can_be_turned_off(tmp_path: Path) -> None:
    plugins = install_echo_plugin(tmp_path / "site")
    home = tmp_path / "home"
    _model(home, "echo-off", {"engine": "echo"})
    env = {"PYTHONPATH": str(plugins), "HEARTH_NO_PLUGINS": "1"}
    with HearthProcess(home, env=env) as proc, httpx.Client(base_url=proc.url) as http:
        reply = http.post("/v1/chat/completions", json={**_chat("hi"), "model": "echo-off"})
        assert reply.status_code == 400
        assert reply.json()["error"]["code"] == "unknown_engine"


KINDS_MODULE = '''
from typing import Any, ClassVar

from hearth.engines.registry import EngineKind, Launch, LocalKind, RemoteKind


class Vague(EngineKind):  # neither local nor remote: says nothing of what it is
    name: ClassVar[str] = "vague"


class OldRemote(EngineKind):  # the old flag, which once made any kind a remote silently
    name: ClassVar[str] = "old-remote"
    local: ClassVar[bool] = False


class Box(LocalKind):
    name: ClassVar[str] = "box-engine"

    def launch(self, spec: Any, *, host: str, port: int, key: str, workdir: str) -> Launch:
        return Launch(["true"])


class Cloud(RemoteKind):
    name: ClassVar[str] = "my-cloud"


def not_a_kind() -> None:
    pass
'''


def test_a_plugin_kind_must_say_whether_it_is_local_or_remote(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A plugin's kind is a LocalKind or a RemoteKind subclass. Anything else (a bare
    EngineKind, one with the old `local = False`, a function, a module that does not import) is
    refused with an error in the log that says what to subclass, never turned into a remote."""
    from importlib.metadata import EntryPoint

    from hearth.engines import registry

    (tmp_path / "hearth_kinds_t.py").write_text(KINDS_MODULE, encoding="utf-8")
    (tmp_path / "hearth_broken_t.py").write_text("import no_such_module_here\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.names()  # the built-in kinds, before the table is swapped for this test's copy
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))

    def load(name: str, value: str) -> Any:
        point = EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)
        return registry.load_plugin(point)

    caplog.set_level("ERROR", logger="hearth.engines.registry")
    for name, value in [
        ("vague", "hearth_kinds_t:Vague"),
        ("old-remote", "hearth_kinds_t:OldRemote"),
        ("fn", "hearth_kinds_t:not_a_kind"),
    ]:
        assert load(name, value) is None
        assert registry.get(name) is None and not registry.is_local(name)
    assert load("broken", "hearth_broken_t:Kind") is None
    messages = [r.getMessage() for r in caplog.records if r.name == "hearth.engines.registry"]
    assert len(messages) == 4 and all("failed to load" in m for m in messages)
    for message in messages[:3]:
        assert "is not an engine kind Hearth can use" in message
        assert "subclass hearth.engines.registry.LocalKind" in message and "RemoteKind" in message
    assert "hearth_kinds_t.Vague" in messages[0] and "hearth_kinds_t.OldRemote" in messages[1]
    assert "no_such_module_here" in messages[3]
    assert capsys.readouterr().err == ""  # through the logger, not written to stderr

    # Explicit kinds register as what they say they are.
    box, cloud = load("box-engine", "hearth_kinds_t:Box"), load("my-cloud", "hearth_kinds_t:Cloud")
    assert registry.local_kind("box-engine") is box and box is not None
    assert registry.remote_kind("my-cloud") is cloud and not registry.is_local("my-cloud")
    assert registry.remote_kind("gpu-box").name == "openai-compatible"
    with pytest.raises(TypeError, match="not an engine kind Hearth can use"):
        registry.register(object())  # type: ignore[arg-type]
