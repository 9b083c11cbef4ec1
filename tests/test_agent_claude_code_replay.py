"""Claude Code's first request, recorded (tests/data/agents/), replayed through the Anthropic
face's translation and rendered by real chat templates: SmolLM2's own (read from its GGUF)
and a strict one that raises on a system message anywhere but first and on turns that do not
alternate (as Llama 2's, Gemma's and Mistral's do). No server: the real Claude Code runs in
tests/test_agent_claude_code.py (slow).

The recording is Claude Code 2.1.337 in its default configuration: the `anthropic-beta`
header lists betas Hearth does not have, the body carries `thinking: {"type": "adaptive"}`,
`context_management`, `output_config`, `cache_control` on blocks, a tool with
`defer_loading`, and a `{"role": "system"}` message right after the first user message
(the `mid-conversation-system` beta): all of it a 400 before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.smollm import smollm2_path

from hearth.core.errors import InvalidParameter
from hearth.engines.templates import render_chat_template
from hearth.models.gguf import read_gguf_header
from hearth.server.anthropic.translate import messages_call

RECORDING = Path(__file__).parent / "data" / "agents" / "claude_code_2.1.337_first_request.json"
#: Raises unless the one system message is first and user/assistant turns alternate.
STRICT = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' and not loop.first -%}"
    "{{ raise_exception('System role only supported at the start') }}{%- endif -%}"
    "{%- set turn = loop.index0 - (1 if messages[0].role == 'system' else 0) -%}"
    "{%- if m.role != 'system' and (m.role == 'user') != (turn % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/...') }}"
    "{%- endif -%}"
    "[{{ m.role }}]{{ m.content }}\n"
    "{%- endfor -%}[assistant]"
)


def recorded() -> dict[str, Any]:
    return json.loads(RECORDING.read_text(encoding="utf-8"))


def smollm2_template() -> str:
    template = read_gguf_header(smollm2_path()).chat_template
    assert template, "SmolLM2's GGUF carries its chat template"
    return template


def test_the_recording_is_what_claude_code_sends() -> None:
    request = recorded()
    body = request["body"]
    assert "mid-conversation" in request["headers"]["anthropic-beta"] or any(
        m["role"] == "system" for m in body["messages"]
    )
    assert [m["role"] for m in body["messages"]] == ["user", "system"]
    assert body["thinking"]["type"] == "adaptive"
    assert {"context_management", "output_config", "metadata"} <= set(body)


def test_claude_codes_first_request_translates() -> None:
    call = messages_call(recorded()["body"])
    messages = call.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert system.startswith("x-anthropic-billing-header") and "Claude agent" in system
    # the mid-conversation system message joins the user turn it follows, after the user's text
    assert user.index("Say hello.") < user.index("<system>\n# Environment")
    assert user.rstrip().endswith("</system>")
    names = [t["function"]["name"] for t in call.body["tools"]]
    assert "Read" in names and "DeferredToolPlaceholder" not in names  # defer_loading: left out
    assert set(call.body) >= {"model", "max_tokens", "tools", "stream"}
    assert not {"thinking", "context_management", "output_config", "metadata"} & set(call.body)


@pytest.mark.parametrize("template", ["smollm2", "strict"])
def test_claude_codes_first_request_renders(template: str) -> None:
    messages = messages_call(recorded()["body"]).body["messages"]
    source = smollm2_template() if template == "smollm2" else STRICT
    prompt = render_chat_template(source, messages)
    assert prompt.count("Say hello.") == 1 and "# Environment" in prompt
    assert prompt.index("You are a Claude agent") < prompt.index("Say hello.")


def test_the_strict_template_refuses_what_used_to_be_sent() -> None:
    """The check is real: a system message second is what STRICT raises on."""
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "later"},
    ]
    with pytest.raises(InvalidParameter, match="System role only"):
        render_chat_template(STRICT, messages)


@pytest.mark.parametrize(
    ("raw", "roles", "folded"),
    [
        # after an assistant turn: waits for the next user turn, joined before its text
        ([("user", "a"), ("assistant", "b"), ("system", "S"), ("user", "c")],
         ["user", "assistant", "user"], 2),
        # leading system messages join the top system prompt
        ([("system", "S"), ("user", "a")], ["user"], None),
        # several in a row fold into one user turn; a last one stands as a user turn
        ([("user", "a"), ("system", "S"), ("system", "T"), ("assistant", "b"), ("system", "U")],
         ["user", "assistant", "user"], 0),
    ],
)  # fmt: skip
def test_system_messages_anywhere(
    raw: list[tuple[str, str]], roles: list[str], folded: int | None
) -> None:
    body = {"model": "m", "max_tokens": 4, "system": "top",
            "messages": [{"role": r, "content": c} for r, c in raw]}  # fmt: skip
    messages = messages_call(body).body["messages"]
    assert [m["role"] for m in messages] == ["system", *roles]
    assert messages[0]["content"].startswith("top")
    if folded is not None:
        assert "<system>\nS\n</system>" in messages[1 + folded]["content"]
    render_chat_template(STRICT, messages)  # alternates, one system message first


def test_a_system_note_after_tool_calls_follows_the_results() -> None:
    """Tool results must follow the assistant's calls: a system note waiting for the next
    user turn goes after them, with the user's text."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {"type": "text", "text": "file text"},
            {"type": "tool_reference", "tool_name": "Bash"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}},
        ],
    }
    body = {"model": "m", "max_tokens": 4, "messages": [
        {"role": "user", "content": "read it"},
        {"role": "assistant", "content": [call]},
        {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": {}}]},
        {"role": "user", "content": [result, {"type": "text", "text": "go on"}]},
    ]}  # fmt: skip
    messages = messages_call(body).body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[2]["content"].startswith("file text\nTool loaded: Bash\n[image left out")
    assert messages[3]["content"] == "<system>\nS\n</system>\n\ngo on"


@pytest.mark.parametrize(
    "message",
    [
        {"role": "system", "content": 5},
        {"role": "system", "content": [{"type": "image"}]},
        {"role": "developer", "content": "x"},
    ],
)
def test_bad_system_messages_are_still_400(message: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 4,
            "messages": [{"role": "user", "content": "a"}, message]}  # fmt: skip
    with pytest.raises(InvalidParameter, match=r"messages\.1"):
        messages_call(body)
