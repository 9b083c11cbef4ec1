"""The real Claude Code (npm @anthropic-ai/claude-code, pinned in support/claude_code.py) against
a real `hearth serve` and SmolLM2-135M: it answers one prompt, and it completes one tool round
trip (Read of a file in its working folder).

The model is SmolLM2 with a Hermes/Qwen2.5-style chat template in its model.json
(`engine_parameters.chat_template`): a model that can take tools. Its context is 8192 tokens
(SmolLM2's trained context, which llama.cpp will not exceed), so Claude Code runs with
`--tools Read`: its default tool set makes a 12k-token first request, a few hundred tokens too
many for this model (a real agent model has 32k or more; see README, "Agents").

What the model writes is pinned, so nothing passes by chance: a loopback proxy
(`RecordingProxy`) between Claude Code and Hearth sets temperature 0, top_k 1, a small
max_tokens and stop sequences that end the answer at its first sentence on every request
(the model also has temperature 0 and seed 42). In the tool test
it also forces the call on the FIRST request only: tool_choice names Read, and Read's
file_path is pinned to the one file (an `enum` in its schema, which the engine's grammar
enforces); later requests say tool_choice none, so the answer after the tool is text. The
tool's result must reach Hearth in the next request as a tool_result holding the file's text.

Slow: each run reads a ~2.5k-token prompt. On two CPU cores shared with other work (load
average ~14, prompts read at ~26 tokens/s) the prompt test took 106 s and the tool test 215 s.
The npm package (~400 MB, the native binary) is installed once into ~/.cache/hearth-tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.claude_code import RecordingProxy, claude_bin, run_claude
from support.engines import add_smol
from support.server import HearthProcess

pytestmark = pytest.mark.slow

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
MODEL = "smollm2"
SECRET = "The password is pelican-42."
#: The answer ends at its first line or sentence: Claude Code takes "max_tokens" as a cue to
#: ask the model to go on (more requests), "stop_sequence" as the end of the turn.
STOPS = ["\n", ".", "!", "?"]


@pytest.fixture(scope="module")
def hearth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HearthProcess]:
    claude_bin()  # installed (once per machine) before the server's clock matters
    home = tmp_path_factory.mktemp("claude") / "home"
    (home / "models").mkdir(parents=True)
    engine = {"chat_template": HERMES, "ctx_len": 8192}
    add_smol(home, MODEL, engine, model_parameters={"temperature": 0, "seed": 42})
    with HearthProcess(home, env={"HEARTH_STARTER": "0"}) as server:
        yield server


def pinned(max_tokens: int, first: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """The proxy's rewrite: sampling pinned and the answer bounded on every request; `first`
    changes the first request only."""

    def rewrite(index: int, body: dict[str, Any]) -> dict[str, Any]:
        body.update(temperature=0, top_k=1, max_tokens=max_tokens, stop_sequences=STOPS)
        if index == 0 and first is not None:
            first(body)
        elif body.get("tools"):
            body["tool_choice"] = {"type": "none"}
        return body

    return rewrite


def result_of(out: Any) -> dict[str, Any]:
    """Claude Code's JSON result, checked to be a success (what it said, if not)."""
    try:
        result = json.loads(out.stdout)
    except ValueError:
        raise AssertionError((out.returncode, out.stdout[-3000:], out.stderr[-3000:])) from None
    said = {k: result.get(k) for k in ("result", "terminal_reason", "num_turns", "subtype")}
    assert out.returncode == 0 and result.get("is_error") is False, (said, out.stderr[-1000:])
    return result


def test_claude_code_answers_a_prompt(hearth: HearthProcess, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with RecordingProxy(hearth.url, pinned(12)) as proxy:
        out = run_claude(tmp_path / "home", work, proxy.url, MODEL, "--tools", "Read",
                         "--", "Say hello.")  # fmt: skip
    result = result_of(out)
    assert result["result"].strip(), result
    first = proxy.messages()[0]
    assert first.status == 200
    assert any(m["role"] == "system" for m in first.body["messages"])  # what used to be a 400
    assert result["usage"]["input_tokens"] > 1000  # Claude Code's prompt, counted by Hearth


def test_claude_code_runs_a_tool(hearth: HearthProcess, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    note = work / "note.txt"
    note.write_text(SECRET + "\n", encoding="utf-8")

    def force_read(body: dict[str, Any]) -> None:
        for tool in body["tools"]:
            if tool["name"] == "Read":
                tool["input_schema"] = {
                    "type": "object",
                    "properties": {"file_path": {"type": "string", "enum": [str(note)]}},
                    "required": ["file_path"],
                    "additionalProperties": False,
                }
        body["tool_choice"] = {"type": "tool", "name": "Read"}

    with RecordingProxy(hearth.url, pinned(60, force_read)) as proxy:
        out = run_claude(tmp_path / "home", work, proxy.url, MODEL, "--tools", "Read",
                         "--", "What does note.txt say?")  # fmt: skip
    result = result_of(out)
    assert result["result"].strip(), result
    sent = proxy.messages()
    assert len(sent) >= 2 and all(r.status == 200 for r in sent), [r.status for r in sent]
    results = [
        block
        for message in sent[1].body["messages"]
        if message["role"] == "user" and isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert results, sent[1].body["messages"][-1]
    assert SECRET in json.dumps(results) and not results[0].get("is_error"), results
