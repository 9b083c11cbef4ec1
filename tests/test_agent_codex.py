"""The real Codex CLI (npm `@openai/codex`, pinned in `support/codex.py`) against a real
`hearth serve` and SmolLM2, through a loopback proxy that records what Codex sends.

Two ways a user connects Codex to Hearth, each as README's "Agents" section gives them:

- a custom provider in config.toml (`base_url` = Hearth's /v1, `wire_api = "responses"`, the key
  from an environment variable). Codex's default tools include a `namespace` tool and OpenAI's
  hosted `web_search`, each a 400 before Hearth flattened namespaces and left hosted tools out.
- `--oss` (Codex's Ollama mode), pointed at Hearth's port by CODEX_OSS_BASE_URL: it reads
  /api/version (0.13.4 or newer, or it stops), /api/tags, pulls a model it does not find by its
  exact name, then talks to /v1/responses.

What the tests set beyond Codex's defaults, and why:

- `model_instructions_file`: a two-line system prompt instead of Codex's 17 kB one. Codex's
  default first request is 9.2k tokens and SmolLM2-135M's trained context is 8192; with the
  short instructions it is about 5.4k (Codex's tools are all still sent).
- the model's chat template is a Hermes/Qwen2.5 one with tools (`engine_parameters.
  chat_template`): SmolLM2's own has no place for tools, and this tests "a model that can".
  Sampling is pinned in model.json (temperature 0, seed 42).
- for the tool round trip only, the proxy pins Codex's FIRST request: `tool_choice` names
  `exec_command` (Codex's shell tool) and that tool's parameters are narrowed to one `cmd`,
  `echo hearth-tool-ok`, so a 135M model cannot pass or fail by what it happens to write.
  Hearth enforces the named tool with its grammar; Codex then really runs the command, and the
  test checks its output came back to Hearth in the next request and Codex printed an answer.
  Later requests go through untouched.
- `stream_idle_timeout_ms` on the custom provider: reading a 5k-token prompt on a busy 2-core
  machine can take minutes, and these tests do not depend on Hearth's keep-alive.

Slow (minutes: model load and 5k-token prompts on CPU); run with `pytest -m slow`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.codex import RecordingProxy, codex_binary, run_codex, write_home
from support.engines import add_smol
from support.server import HearthProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
COMMAND = "echo hearth-tool-ok"
KEY = "hearth-test-key"


@pytest.fixture(scope="module")
def codex() -> Path:
    return codex_binary()


@pytest.fixture(scope="module")
def hearth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthProcess]:
    home = tmp_path_factory.mktemp("codex-hearth") / "home"
    (home / "models").mkdir(parents=True)
    pinned = {"temperature": 0, "seed": 42}
    add_smol(home, "smol", {"chat_template": HERMES, "ctx_len": 8192}, model_parameters=pinned)
    with HearthProcess(home) as server:
        yield server


def _provider_config(base_url: str, home: Path) -> str:
    return f"""
model = "smol"
model_provider = "hearth"
model_instructions_file = "{home / "instructions.md"}"

[model_providers.hearth]
name = "Hearth"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "HEARTH_API_KEY"
stream_idle_timeout_ms = 1800000
"""


def _exec(codex: Path, tmp: Path, proxy: RecordingProxy, prompt: str) -> Any:
    home = tmp / "codex-home"
    write_home(home, _provider_config(proxy.url, home))
    work = tmp / "work"
    work.mkdir()
    args = ["exec", "--skip-git-repo-check", prompt]
    return run_codex(codex, args, home=home, cwd=work, env={"HEARTH_API_KEY": KEY}, timeout=1500)


def test_codex_answers_one_prompt(codex: Path, hearth: HearthProcess, tmp_path: Path) -> None:
    with RecordingProxy(hearth.url) as proxy:
        done = _exec(codex, tmp_path, proxy, "Say hello.")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), done.stderr[-3000:]  # codex exec prints the final answer
    first = proxy.responses()[0]
    kinds = {tool["type"] for tool in first.body["tools"]}
    assert {"namespace", "web_search"} <= kinds  # Codex's defaults: each a 400 before
    assert first.status == 200
    assert first.headers["x-hearth-tools-left-out"] == "web_search"


def _pin_shell(body: dict[str, Any]) -> None:
    """The first request: the shell tool, named, with one command it may write."""
    body["tool_choice"] = {"type": "function", "name": "exec_command"}
    body["temperature"] = 0
    for tool in body["tools"]:
        if tool.get("name") == "exec_command":
            tool["parameters"] = {
                "type": "object",
                "properties": {"cmd": {"type": "string", "enum": [COMMAND]}},
                "required": ["cmd"],
                "additionalProperties": False,
            }


def _items(exchange: Any, kind: str) -> list[dict[str, Any]]:
    return [item for item in exchange.body["input"] if item.get("type") == kind]


def test_codex_tool_round_trip(codex: Path, hearth: HearthProcess, tmp_path: Path) -> None:
    with RecordingProxy(hearth.url, first_request=_pin_shell) as proxy:
        done = _exec(codex, tmp_path, proxy, f"Run the shell command: {COMMAND}")
    assert done.returncode == 0, done.stderr[-3000:]
    asked, *later = proxy.responses()
    assert asked.status == 200 and later, done.stderr[-3000:]
    answer = asked.answer.decode()
    assert '"name":"exec_command"' in answer.replace(" ", "")
    call = _items(later[0], "function_call")[-1]
    assert call["name"] == "exec_command" and json.loads(call["arguments"]) == {"cmd": COMMAND}
    output = next(o for o in _items(later[0], "function_call_output")
                  if o["call_id"] == call["call_id"])  # fmt: skip
    assert "hearth-tool-ok" in json.dumps(output["output"])  # the command really ran
    assert "exited with code 0" in json.dumps(output["output"])
    assert later[-1].status == 200 and done.stdout.strip()  # and Codex printed an answer


def test_codex_oss_mode_answers_one_prompt(
    codex: Path, hearth: HearthProcess, tmp_path: Path
) -> None:
    home = tmp_path / "codex-home"
    write_home(home, f'model_instructions_file = "{home / "instructions.md"}"\n')
    work = tmp_path / "work"
    work.mkdir()
    with RecordingProxy(hearth.url) as proxy:
        args = ["exec", "--oss", "--local-provider", "ollama", "-m", "smol",
                "--skip-git-repo-check", "Say hello."]  # fmt: skip
        env = {"CODEX_OSS_BASE_URL": f"{proxy.url}/v1"}
        done = run_codex(codex, args, home=home, cwd=work, env=env, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), done.stderr[-3000:]
    called = [(e.method, e.path, e.status) for e in proxy.exchanges]
    assert ("GET", "/api/version", 200) in called
    assert ("GET", "/api/tags", 200) in called
    assert ("POST", "/api/pull", 200) in called  # "smol" is listed as "smol:latest"
    assert called[-1] == ("POST", "/v1/responses", 200)
