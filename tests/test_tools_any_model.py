"""Tools on every model (issue 24, point 5): SmolLM2 with its own chat template, which has no
place for tools, gets them through Hearth's tool prompt (`services/toolprompt.py`), in every
dialect, through the real clients (`openai`, `anthropic`, `ollama`) and a real engine.

What the model writes is pinned (greedy sampling and a seed, the model's defaults, so every
face's request gets them) and bounded (`maxLength` arguments, `max_tokens`). "auto" is shown a
conversation in which the model called the tool twice before (few-shot): SmolLM2 then calls it
again; asked to say hello, it answers in text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import ollama
import openai
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines

HERMES = (Path(__file__).parent / "support" / "hermes_template.jinja").read_text()


def _tool(name: str, description: str, prop: str) -> dict[str, Any]:
    parameters = {
        "type": "object",
        "properties": {prop: {"type": "string", "maxLength": 24}},
        "required": [prop],
    }
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


WEATHER = _tool("get_weather", "The current weather in a city.", "city")
TOOLS = [WEATHER, _tool("get_time", "The current time in a time zone.", "timezone")]

PINNED = {"temperature": 0, "seed": 42}
CALL_TOKENS = 200
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
HELLO = [{"role": "user", "content": "Say hello."}]


def _shot(city: str, sky: str, n: int) -> list[dict[str, Any]]:
    call = {
        "id": f"c{n}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
    }
    return [
        {"role": "user", "content": f"What is the weather in {city}?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": sky},
        {"role": "assistant", "content": f"It is {sky} in {city}."},
    ]


#: Two earlier rounds of calls and results, then a third question: the model calls again.
FEW_SHOT = [
    *_shot("London", "raining", 1),
    *_shot("Berlin", "snowing", 2),
    {"role": "user", "content": "What is the weather in Paris?"},
]


#: Ollama's client rewrites the tools (it drops `maxLength`): its prompt differs, and the model
#: follows a third round.
THREE_SHOT = [*FEW_SHOT[:-1], *_shot("Tokyo", "sunny", 3), FEW_SHOT[-1]]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("anytools") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "plain", model_parameters=PINNED)  # SmolLM2's own template: no tools
    add_smol(home, "hermes", {"chat_template": HERMES}, model_parameters=PINNED)
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> openai.OpenAI:
    return srv.openai()


def _one_call(message: Any) -> tuple[str, dict[str, Any]]:
    assert message.tool_calls and len(message.tool_calls) == 1, message
    call = message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    return call.function.name, json.loads(call.function.arguments)


def test_required_and_named_calls_on_a_template_without_tools(client: openai.OpenAI) -> None:
    """Before: 400 tools_not_supported."""
    answer = client.chat.completions.create(
        model="plain", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=CALL_TOKENS
    )
    name, arguments = _one_call(answer.choices[0].message)
    assert name in ("get_weather", "get_time") and answer.choices[0].finish_reason == "tool_calls"
    assert set(arguments) == ({"city"} if name == "get_weather" else {"timezone"})
    named = {"type": "function", "function": {"name": "get_time"}}
    stream = client.chat.completions.create(
        model="plain",
        messages=ASK,
        tools=TOOLS,
        tool_choice=named,
        max_tokens=CALL_TOKENS,  # type: ignore[arg-type]
        stream=True,
    )
    deltas = [c.choices[0] for c in stream if c.choices]
    calls = [d.delta.tool_calls[0] for d in deltas if d.delta.tool_calls]
    assert calls[0].function and calls[0].function.name == "get_time" and calls[0].id
    text = "".join((c.function.arguments or "") for c in calls if c.function)
    assert set(json.loads(text)) == {"timezone"} and deltas[-1].finish_reason == "tool_calls"


def test_auto_calls_or_answers_in_text(client: openai.OpenAI) -> None:
    """The few-shot conversation (earlier calls and results rendered as text) ends in a call;
    "Say hello." in text, streamed as content deltas, no call."""
    answer = client.chat.completions.create(
        model="plain",
        messages=FEW_SHOT,
        tools=[WEATHER],
        max_tokens=60,  # type: ignore[arg-type]
    )
    assert _one_call(answer.choices[0].message) == ("get_weather", {"city": "Paris"})
    assert answer.choices[0].finish_reason == "tool_calls"
    assert answer.usage and answer.usage.completion_tokens > 0
    text = client.chat.completions.create(
        model="plain",
        messages=HELLO,
        tools=[WEATHER],
        max_tokens=16,  # type: ignore[arg-type]
    )
    assert text.choices[0].message.content and not text.choices[0].message.tool_calls
    stream = client.chat.completions.create(
        model="plain",
        messages=FEW_SHOT,
        tools=[WEATHER],
        max_tokens=60,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    calls = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert calls[0].function and calls[0].function.name == "get_weather"
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {
        "city": "Paris"
    }
    assert chunks[-1].usage and chunks[-1].usage.total_tokens > 0


def test_anthropic_tool_use_and_text(srv: ThreadedServer) -> None:
    client = srv.keep(anthropic.Anthropic(base_url=srv.url, api_key="unused"))
    tools: Any = [
        {
            "name": t["function"]["name"],
            "description": t["function"]["description"],
            "input_schema": t["function"]["parameters"],
        }
        for t in TOOLS
    ]
    ask: Any = [{"role": "user", "content": "Weather in Paris?"}]
    for choice, wanted in (
        ({"type": "any"}, None),
        ({"type": "tool", "name": "get_time"}, "get_time"),
    ):
        message = client.messages.create(
            model="plain",
            max_tokens=CALL_TOKENS,
            messages=ask,
            tools=tools,
            tool_choice=choice,  # type: ignore[arg-type]
        )
        uses = [block for block in message.content if block.type == "tool_use"]
        assert message.stop_reason == "tool_use" and len(uses) == 1
        assert uses[0].name == (wanted or uses[0].name) and uses[0].input
    text = client.messages.create(
        model="plain",
        max_tokens=16,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=tools,
    )
    assert text.content and text.content[0].type == "text" and text.content[0].text


def test_responses_function_call_and_text(client: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "name": "get_weather",
        "description": "The weather.",
        "parameters": WEATHER["function"]["parameters"],
    }
    response = client.responses.create(
        model="plain",
        input="Weather in Paris?",
        tools=[tool],
        tool_choice="required",
        max_output_tokens=CALL_TOKENS,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert set(json.loads(calls[0].arguments)) == {"city"}
    text = client.responses.create(
        model="plain", input="Say hello.", tools=[tool], max_output_tokens=16
    )
    assert text.output_text and not [i for i in text.output if i.type == "function_call"]


def test_ollama_chat_with_tools_calls_or_answers(srv: ThreadedServer) -> None:
    """Ollama's chat has no tool_choice: "auto". Open WebUI's native tools send this."""
    client = srv.keep(ollama.Client(host=srv.url, timeout=120, trust_env=False))
    shot: Any = [
        {
            **m,
            "tool_calls": [
                {
                    "function": {
                        "name": "get_weather",
                        "arguments": json.loads(c["function"]["arguments"]),
                    }
                }
                for c in m["tool_calls"]
            ],
        }
        if m.get("tool_calls")
        else {k: v for k, v in m.items() if k != "tool_call_id"}
        for m in THREE_SHOT
    ]
    for m in shot:
        if m["role"] == "assistant" and m.get("content") is None:
            m["content"] = ""
    answer = client.chat(model="plain", messages=shot, tools=[WEATHER], options={"num_predict": 60})
    calls = answer.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather", answer.message
    assert dict(calls[0].function.arguments) == {"city": "Paris"}
    text = client.chat(model="plain", messages=HELLO, tools=[WEATHER], options={"num_predict": 16})
    assert text.message.content and not text.message.tool_calls
    shown = client.show("plain")
    assert shown.capabilities and "tools" in shown.capabilities
    assert (shown.modelinfo or {}).get("hearth.tool_format") == "hearth"
    assert (client.show("hermes").modelinfo or {}).get("hearth.tool_format") == "template"


def test_every_chat_model_lists_tools_with_its_format(srv: ThreadedServer) -> None:
    with srv.http() as http:
        records = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert (
        "tools" in records["plain"]["capabilities"] and "tools" in records["hermes"]["capabilities"]
    )
    assert records["plain"]["tool_format"] == "hearth"
    assert records["hermes"]["tool_format"] == "template"


def test_tool_schemas_stay_bounded_on_this_path(srv: ThreadedServer) -> None:
    """Hearth's schema limits apply before the tool prompt is written."""
    huge = {"type": "string", "enum": [f"v{i}" for i in range(3000)]}  # over 2,000 values
    parameters = {"type": "object", "properties": {"x": huge}}
    tool = {"type": "function", "function": {"name": "pick", "parameters": parameters}}
    body = {"model": "plain", "messages": ASK, "tools": [tool], "tool_choice": "required"}
    with srv.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert "The parameter schema of tool 'pick'" in response.json()["error"]["message"]


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_a_message_that_is_not_an_object_is_a_400_naming_it(
    srv: ThreadedServer, choice: str
) -> None:
    """Hearth's tool prompt rewrites the conversation: a message that is not an object is the
    caller's mistake, named, never a 500."""
    body = {"model": "plain", "messages": [*ASK, "hi"], "tools": [WEATHER], "tool_choice": choice}
    with srv.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == f"messages[{len(ASK)}]"
