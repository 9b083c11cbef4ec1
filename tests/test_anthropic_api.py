"""Anthropic's Messages API on Hearth's port, spoken to by the real `anthropic` client.

One server, started with an API key (sent as `x-api-key`, as Anthropic's clients do), and two
SmolLM2 models for the module: `smol` with its own template, `smol-tools` with a Hermes-style
template (the `<tool_call>` format of Qwen2.5) so that tools reach the prompt. SmolLM2-135M is
not tool-trained and does not call tools on its own: the tool_use answer shape is checked by
unit tests on recorded engine streams (tests/test_anthropic_translate.py), and here that tools
reach the prompt (count_tokens grows by the rendered tool list) and that a tool_result round
trip is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

KEY = "anthropic-test-key"
COLD = {"temperature": 0}  # the SDK no longer has sampling arguments: sent as extra body
HELLO = [{"role": "user", "content": "Say hello."}]
WEATHER = {
    "name": "get_weather",
    "description": "The current weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()
#: ChatML that raises on a system message anywhere but first (as Llama 2's, Gemma's, ...).
STRICT = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' and not loop.first -%}"
    "{{ raise_exception('System role only supported at the start') }}{%- endif -%}"
    "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
#: Claude Code's shape (its mid-conversation-system beta): a system message after the user's.
MIDDLE = [
    *HELLO,
    {
        "role": "system",
        "content": [
            {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}
        ],
    },
]
ORDER = ["message_start", "content_block_start", "ping", "content_block_delta",
         "content_block_stop", "message_delta", "message_stop"]  # fmt: skip


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("anthropic") / "home"
    (home / "models").mkdir(parents=True)
    # sampling pinned for every request (streams too), so what the model writes is the same
    add_smol(home, "smol", model_parameters={**COLD, "seed": 42})
    add_smol(home, "smol-tools", {"chat_template": HERMES}, model_parameters={**COLD, "seed": 42})
    add_smol(home, "strict", {"chat_template": STRICT}, model_parameters={**COLD, "seed": 42})
    settings = load_settings(home=home, flags={"api_key": KEY}, env={})
    with ThreadedServer(Services.create(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=srv.url, api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    with srv.http(trust_env=False, headers=headers) as h:
        yield h


def test_plain_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="smol", max_tokens=16, messages=HELLO, extra_body=COLD)
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == "smol"
    assert message.content and message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens") and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 16


def test_system_prompt_reaches_the_model(client: anthropic.Anthropic) -> None:
    plain = client.messages.count_tokens(model="smol", messages=HELLO)
    with_system = client.messages.count_tokens(
        model="smol", messages=HELLO, system=[{"type": "text", "text": "You are a pirate."}]
    )
    # SmolLM2's template puts its own system prompt in when there is none: different, not more
    assert with_system.input_tokens != plain.input_tokens and plain.input_tokens > 0
    message = client.messages.create(
        model="smol", max_tokens=8, system="You are a pirate.", messages=HELLO, extra_body=COLD
    )
    assert message.usage.input_tokens == with_system.input_tokens


def test_max_tokens_stops_the_answer(client: anthropic.Anthropic) -> None:
    story = [{"role": "user", "content": "Tell me a long story about a dragon."}]
    message = client.messages.create(model="smol", max_tokens=3, messages=story, extra_body=COLD)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_stop_sequence_is_named(client: anthropic.Anthropic) -> None:
    count = [{"role": "user", "content": "Count from 1 to 10 separated by commas."}]
    message = client.messages.create(
        model="smol", max_tokens=40, messages=count, extra_body=COLD, stop_sequences=[","]
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == ","
    text = "".join(b.text for b in message.content if b.type == "text")
    assert "," not in text


def test_stop_sequence_answer_counts_its_input(client: anthropic.Anthropic) -> None:
    """The answer Hearth cuts at a stop sequence still says how long its prompt was, whole and
    streamed (llama.cpp's counters, asked for in every chunk)."""
    count = [{"role": "user", "content": "Count from 1 to 10 separated by commas."}]
    expected = client.messages.count_tokens(model="smol", messages=count).input_tokens
    asked: Any = {"model": "smol", "max_tokens": 40, "messages": count, "stop_sequences": [","]}
    message = client.messages.create(**asked, extra_body=COLD)
    assert message.stop_reason == "stop_sequence" and message.usage.input_tokens == expected
    with client.messages.stream(**asked, extra_body=COLD) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.usage.input_tokens == expected


@pytest.mark.parametrize("model", ["smol", "strict"])
def test_system_message_mid_conversation(
    client: anthropic.Anthropic, http: httpx.Client, model: str
) -> None:
    """What Claude Code sends (a system message right after the user's) renders on SmolLM2's
    own template and on one that raises on a system message anywhere but first, with beta
    headers and body fields Hearth does not have."""
    headers = {"anthropic-beta": "mid-conversation-system-2026-04-07,no-such-beta-2099-01-01"}
    extra = {**COLD, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
             "context_management": {"edits": [{"type": "clear_thinking_20251015"}]}}  # fmt: skip
    message = client.messages.create(
        model=model,
        max_tokens=4,
        messages=MIDDLE,
        extra_body=extra,
        extra_headers=headers,  # type: ignore[arg-type]
    )
    assert message.usage.input_tokens > 0 and message.content
    if model == "strict":  # the check is real: sent as it came, the template refuses it
        chat = [*HELLO, {"role": "system", "content": "Answer in French."}]
        reply = http.post("/v1/chat/completions", json={"model": model, "messages": chat,
                                                        "max_tokens": 4})  # fmt: skip
        assert reply.status_code == 400, reply.text


def test_stream_events_in_anthropic_order(http: httpx.Client) -> None:
    body = {"model": "smol", "max_tokens": 8, "messages": HELLO, "stream": True}
    with http.stream("POST", "/v1/messages", json=body) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = reply.read().decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    names, datas = [], []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        names.append(event_line[7:])
        datas.append(json.loads(data_line[6:]))
        assert datas[-1]["type"] == names[-1]
    # message_start, ping, then one text block: start, deltas, stop; then the end
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert datas[0]["message"]["content"] == [] and datas[0]["message"]["stop_reason"] is None
    assert all(d["delta"]["type"] == "text_delta" for d in datas[3:-3])
    assert datas[-2]["delta"]["stop_reason"] in ("end_turn", "max_tokens")
    assert datas[-2]["usage"]["output_tokens"] > 0


def test_stream_through_the_client(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="smol", max_tokens=12, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_tools_reach_the_prompt(client: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    bare = client.messages.count_tokens(model="smol-tools", messages=ask)
    tooled = client.messages.count_tokens(model="smol-tools", messages=ask, tools=[WEATHER])
    assert tooled.input_tokens > bare.input_tokens + 40  # the rendered tool list
    for choice in ({"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "get_weather"}):
        message = client.messages.create(
            model="smol-tools", max_tokens=8, messages=ask, tools=[WEATHER],
            tool_choice=choice, extra_body=COLD,  # type: ignore[arg-type]
        )  # fmt: skip
        assert message.stop_reason in ("end_turn", "max_tokens", "tool_use")
        for block in message.content:
            if block.type == "tool_use":
                assert block.name == "get_weather" and isinstance(block.input, dict)


def test_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    turns: list[Any] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
             "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 24 C"},
        ]},
    ]  # fmt: skip
    message = client.messages.create(
        model="smol-tools", max_tokens=24, messages=turns, tools=[WEATHER], extra_body=COLD
    )
    assert message.content and message.usage.input_tokens > 0
    counted = client.messages.count_tokens(model="smol-tools", messages=turns, tools=[WEATHER])
    assert counted.input_tokens == message.usage.input_tokens


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=4, messages=HELLO)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"


def test_missing_max_tokens_is_invalid(http: httpx.Client) -> None:
    reply = http.post("/v1/messages", json={"model": "smol", "messages": HELLO})
    assert reply.status_code == 400
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "smol", "max_tokens": 4, "messages": []},
        {"model": "smol", "max_tokens": 4, "messages": [{"role": "system", "content": "x"}]},
        {"model": "smol", "max_tokens": 4, "messages": [*HELLO, {"role": "system"}]},
        {"model": "smol", "max_tokens": 4, "messages": [*HELLO, {"role": "developer",
                                                                  "content": "x"}]},
        {"model": "smol", "max_tokens": 4, "messages": HELLO, "stop_sequences": "x"},
        {"model": "smol", "max_tokens": 4, "messages": HELLO, "tools": [{"name": "bad name"}]},
        {"model": "smol", "max_tokens": 4, "messages": HELLO, "tools": [WEATHER],
         "tool_choice": {"type": "tool", "name": "other"}},
    ],
)  # fmt: skip
def test_bad_bodies_are_invalid_request(client: anthropic.Anthropic, body: Any) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.post("/v1/messages", cast_to=httpx.Response, body=body)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_bad_key_is_authentication_error(srv: ThreadedServer) -> None:
    with (
        anthropic.Anthropic(base_url=srv.url, api_key="nope", max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        wrong.messages.create(model="smol", max_tokens=4, messages=HELLO)
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    with httpx.Client(base_url=srv.url, trust_env=False) as bare:
        reply = bare.post("/v1/messages/count_tokens", json={"model": "smol", "messages": HELLO})
    assert reply.status_code == 401 and reply.json()["error"]["type"] == "authentication_error"


def test_bearer_key_works_too(srv: ThreadedServer) -> None:
    with anthropic.Anthropic(base_url=srv.url, auth_token=KEY, max_retries=0) as bearer:
        assert bearer.messages.count_tokens(model="smol", messages=HELLO).input_tokens > 0
