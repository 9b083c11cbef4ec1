"""Tool calling through Hearth (issue 10, point 1): a real server, the official `openai` client,
LangChain's `ChatOpenAI`, the Anthropic and Responses faces, and real SmolLM2 engines.

SmolLM2 was not trained for tools, so it is given tool templates written for the tests: Qwen2.5's
Hermes-style `<tool_call>` template and a Llama 3.1-style one ("parameters" JSON). With
`tool_choice` "required" or a named function Hearth constrains the output to a call, so even this
small model must return a well-formed one; "auto" is the engine's own parsing (passed through)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

SUPPORT = Path(__file__).parent / "support"
HERMES = (SUPPORT / "hermes_template.jinja").read_text()
LLAMA31 = (SUPPORT / "llama31_template.jinja").read_text()


def _tool(name: str, description: str, prop: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {prop: {"type": "string", "maxLength": 24}},
                "required": [prop],
            },
        },
    }


WEATHER = _tool("get_weather", "The current weather in a city.", "city")
TIME = _tool("get_time", "The current time in a time zone.", "timezone")
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
#: What the model writes is pinned (greedy sampling, a seed: the models' defaults, so every
#: face's request gets them) and bounded (each argument a `maxLength` string), and a forced
#: call gets enough tokens to finish (CALL_TOKENS): at 60 a long argument could cut it short.
PINNED = {"temperature": 0, "seed": 42}
CALL_TOKENS = 200


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("tools") / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "hermes", {"chat_template": HERMES}, model_parameters=PINNED)
    add_smol(home, "llama31", {"chat_template": LLAMA31}, model_parameters=PINNED)
    add_smol(home, "plain", model_parameters=PINNED)  # its own template: no tools
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> openai.OpenAI:
    return srv.openai()


def _call(message: Any) -> tuple[str, dict[str, Any]]:
    """The one tool call of a message: its name and parsed arguments."""
    assert message.tool_calls and len(message.tool_calls) == 1, message
    call = message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    return call.function.name, json.loads(call.function.arguments)


def _streamed_call(stream: Any) -> tuple[str, dict[str, Any], str, Any]:
    """A streamed call reassembled as the `openai` client's users do: (name, arguments,
    finish_reason, usage)."""
    name, arguments, ident, finish, usage = "", "", None, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                assert delta.index == 0
                if delta.id:
                    assert ident is None, "the call's id comes once, first"
                    ident = delta.id
                    name = delta.function.name
                arguments += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert ident is not None and ident.startswith("call_")
    return name, json.loads(arguments), str(finish), usage


@pytest.mark.parametrize("model", ["hermes", "llama31"])
def test_required_returns_a_well_formed_call(client: openai.OpenAI, model: str) -> None:
    answer = client.chat.completions.create(
        model=model, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=CALL_TOKENS
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    name, arguments = _call(choice.message)
    assert name in ("get_weather", "get_time")
    wanted = "city" if name == "get_weather" else "timezone"
    assert set(arguments) == {wanted} and isinstance(arguments[wanted], str)
    assert answer.usage is not None and answer.usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["hermes", "llama31"])
def test_named_function_is_the_one_called(client: openai.OpenAI, model: str) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    answer = client.chat.completions.create(
        model=model, messages=ASK, tools=TOOLS, tool_choice=named, max_tokens=CALL_TOKENS  # type: ignore[arg-type]
    )
    assert answer.choices[0].finish_reason == "tool_calls"
    name, arguments = _call(answer.choices[0].message)
    assert name == "get_time" and set(arguments) == {"timezone"}


def test_streamed_required_call_in_openai_delta_shape(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="hermes",
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=CALL_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    name, arguments, finish, usage = _streamed_call(stream)
    assert finish == "tool_calls" and name in ("get_weather", "get_time")
    assert len(arguments) == 1
    assert usage is not None and usage.completion_tokens > 0


def test_streamed_named_call(client: openai.OpenAI) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    stream = client.chat.completions.create(
        model="llama31", messages=ASK, tools=TOOLS, tool_choice=named,  # type: ignore[arg-type]
        max_tokens=CALL_TOKENS, stream=True,
    )
    name, arguments, finish, _ = _streamed_call(stream)
    assert (name, finish) == ("get_weather", "tool_calls") and set(arguments) == {"city"}


def test_tool_result_round_trip_and_auto(client: openai.OpenAI) -> None:
    """The call, its result sent back as a `tool` message, and a text answer: the template
    renders both; "auto" is the engine's own (SmolLM2 answers in text)."""
    first = client.chat.completions.create(
        model="hermes", messages=ASK, tools=[WEATHER], tool_choice="required",
        max_tokens=CALL_TOKENS,
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages: list[Any] = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "c": 21}'},
    ]
    second = client.chat.completions.create(
        model="hermes", messages=messages, tools=[WEATHER], tool_choice="auto", max_tokens=20
    )
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content
    none = client.chat.completions.create(
        model="hermes", messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=8
    )
    assert none.choices[0].message.tool_calls in (None, [])


def test_none_on_a_template_without_tools_drops_them(client: openai.OpenAI) -> None:
    """"none" asks for no call: the tools are moot, the request is answered (other choices
    on such a template: tests/test_tools_any_model.py)."""
    answer = client.chat.completions.create(
        model="plain", messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=4
    )
    assert answer.choices[0].message.content


@pytest.mark.parametrize(
    ("tool_choice", "tools", "param"),
    [
        ({"type": "function", "function": {"name": "nope"}}, TOOLS, "tool_choice"),
        ("sometimes", TOOLS, "tool_choice"),
        ("required", [{"type": "function", "function": {"parameters": {}}}], "tools[0]"),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(
    srv: ThreadedServer, tool_choice: Any, tools: Any, param: str
) -> None:
    body = {"model": "hermes", "messages": ASK, "tools": tools, "tool_choice": tool_choice}
    with srv.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_capabilities_are_in_the_model_record(client: openai.OpenAI, srv: ThreadedServer) -> None:
    with srv.http() as http:
        records = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert "tools" in records["hermes"]["capabilities"]
    assert "tools" in records["llama31"]["capabilities"]
    assert "tools" in records["plain"]["capabilities"]  # in Hearth's tool prompt
    assert (records["hermes"]["tool_format"], records["plain"]["tool_format"]) == (
        "template",
        "hearth",
    )


def test_langchain_bind_tools_and_structured_output(srv: ThreadedServer) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Weather(BaseModel):
        """The weather in a city."""

        city: str = Field(description="the city", max_length=24)

    llm = ChatOpenAI(
        model="hermes",
        base_url=srv.url + "/v1",
        api_key="unused",  # type: ignore[arg-type]
        max_tokens=CALL_TOKENS,  # type: ignore[call-arg]
        temperature=0,
    )
    message = llm.bind_tools([Weather], tool_choice="Weather").invoke("Weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "Weather"
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
    structured = llm.with_structured_output(Weather, method="function_calling")
    result = structured.invoke("What is the weather in Rome?")
    assert isinstance(result, Weather) and result.city


def test_anthropic_any_tool_choice_returns_tool_use(srv: ThreadedServer) -> None:
    client = srv.keep(anthropic.Anthropic(base_url=srv.url, api_key="unused"))
    message = client.messages.create(
        model="hermes",
        max_tokens=CALL_TOKENS,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[
            {
                "name": "get_weather",
                "description": "The weather in a city.",
                "input_schema": WEATHER["function"]["parameters"],
            }
        ],
        tool_choice={"type": "any"},
    )
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert uses and uses[0].name == "get_weather" and "city" in uses[0].input


def test_responses_api_required_returns_a_function_call(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "The weather.",
            "parameters": WEATHER["function"]["parameters"]}  # fmt: skip
    response = client.responses.create(
        model="hermes", input="Weather in Paris?", tools=[tool], tool_choice="required",  # type: ignore[list-item]
        max_output_tokens=CALL_TOKENS,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert "city" in json.loads(calls[0].arguments)


def test_engine_errors_reach_clients_in_openai_shape(srv: ThreadedServer) -> None:
    body = {"model": "plain", "messages": ASK, "temperature": "hot"}
    with srv.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["type"] == "invalid_request_error"
    assert "temperature" in error["message"]
    # over the trained context (8,192): no reload can hold it (under it, the model is reloaded
    # with a larger context: test_context_fit.py)
    long = {"model": "plain", "messages": [{"role": "user", "content": "word " * 9000}]}
    with srv.http() as http:
        response = http.post("/v1/chat/completions", json=long, timeout=120)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and "trained for 8,192" in error["message"]


def test_request_without_tools_stays_the_byte_pass_through(srv: ThreadedServer) -> None:
    """A plain request is not rewritten: the engine's own id and `timings` come back."""
    body = {"model": "hermes", "messages": ASK, "max_tokens": 2}
    with srv.http() as http:
        answer = http.post("/v1/chat/completions", json=body).json()
    assert answer["id"].startswith("chatcmpl-") and "timings" in answer

