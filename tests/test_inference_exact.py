"""Exactness of the OpenAI face (issue 10, points 2 and 5) with the official `openai` client and
a real SmolLM2 engine: `n` choices, legacy completions in the legacy shape, `dimensions`, images
sent to a model that cannot see, and the engine's refusals in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

ASK = [{"role": "user", "content": "Tell me a long story about a cat."}]
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    home = tmp_path_factory.mktemp("exact") / "home"
    (home / "models").mkdir(parents=True)
    # pinned sampling: greedy, so whether an answer stops early is the same every run
    add_smol(home, "smol", {"n_parallel": 2}, model_parameters={"temperature": 0, "seed": 42})
    add_smol(home, "embed", {"embedding": True, "pooling": "mean"})
    with ThreadedServer(Services.create(load_settings(home=home, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> openai.OpenAI:
    return srv.openai()


def test_n_choices_with_indices_and_summed_usage(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="smol", messages=ASK, n=3, max_tokens=4, seed=7  # type: ignore[arg-type]
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" and c.message.content for c in answer.choices)
    assert answer.usage is not None and answer.usage.completion_tokens == 12
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 12


def test_n_choices_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smol",
        messages=ASK,  # type: ignore[arg-type]
        n=2,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: dict[int, str] = {0: "", 1: ""}
    finished: dict[int, str] = {}
    usage = None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert texts[0] and texts[1] and finished == {0: "length", 1: "length"}
    assert usage is not None and usage.completion_tokens == 8


@pytest.mark.parametrize("n", [0, 17, "2", True])
def test_bad_n_is_a_400(client: openai.OpenAI, n: object) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smol", messages=ASK, n=n, max_tokens=2)  # type: ignore[arg-type]
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "n"


def test_legacy_completion_has_the_legacy_shape(client: openai.OpenAI) -> None:
    answer = client.completions.create(
        model="smol", prompt="Once upon a time", max_tokens=5, logprobs=2
    )
    assert answer.id.startswith("cmpl-") and answer.object == "text_completion"
    choice = answer.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset or [])
    assert all(isinstance(lp, float) and lp <= 0 for lp in logprobs.token_logprobs)
    assert all(1 <= len(top) <= 2 for top in logprobs.top_logprobs or [])
    offsets = logprobs.text_offset or []
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert answer.usage is not None and answer.usage.completion_tokens == len(logprobs.tokens)


def test_legacy_completion_streamed_and_echo(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="smol", prompt="Once upon a time", max_tokens=4, logprobs=1, stream=True
    )
    tokens: list[str] = []
    text = ""
    for chunk in stream:
        assert chunk.id.startswith("cmpl-")
        for choice in chunk.choices:
            text += choice.text
            if choice.logprobs is not None:
                tokens += choice.logprobs.tokens or []
    assert text and "".join(tokens) == text
    echoed = client.completions.create(model="smol", prompt="Once upon", max_tokens=3, echo=True)
    assert echoed.choices[0].text.startswith("Once upon")


def test_dimensions_are_honoured_or_refused(client: openai.OpenAI) -> None:
    own = client.embeddings.create(model="embed", input="a cat")
    size = len(own.data[0].embedding)
    same = client.embeddings.create(model="embed", input="a cat", dimensions=size)
    assert len(same.data[0].embedding) == size
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="embed", input="a cat", dimensions=8)
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "dimensions"
    assert str(size) in body["message"]


def test_an_image_for_a_text_only_model_is_a_400_naming_mmproj(client: openai.OpenAI) -> None:
    image = {"type": "image_url", "image_url": {"url": PIXEL}}
    content = [{"type": "text", "text": "What is this?"}, image]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": content}], max_tokens=4  # type: ignore[list-item]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "messages"
    assert "mmproj" in body["message"] and body["code"] == "images_not_supported"


def test_engine_refusal_has_a_string_code(srv: ThreadedServer) -> None:
    body = {"model": "smol", "prompt": "hi", "max_tokens": "many"}
    with srv.http() as http:
        response = http.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["type"] == "invalid_request_error"
    assert "max_tokens" in error["message"]


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("completions", {"n": 2, "echo": True, "logprobs": 1}, "echo"),
        ("chat/completions", {"n": 2, "stream": True, "stream_options": "x"}, "stream_options"),
        ("chat/completions", {"n": 2, "stream": 1}, "stream"),
    ],
)
def test_bad_fields_with_n_are_400s(
    srv: ThreadedServer, path: str, extra: dict[str, object], param: str
) -> None:
    body = {"model": "smol", "max_tokens": 2, **extra}
    body.update({"prompt": "hi"} if path == "completions" else {"messages": ASK})
    with srv.http() as http:
        response = http.post(f"/v1/{path}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_several_prompts_are_several_choices(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="smol", prompt=["One", "Two"], max_tokens=2)
    assert answer.id.startswith("cmpl-")
    assert [c.index for c in answer.choices] == [0, 1]
    assert all(c.text for c in answer.choices)


def test_a_client_leaving_n_streams_frees_the_engine(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smol", messages=ASK, n=2, max_tokens=400, stream=True  # type: ignore[arg-type]
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    again = client.with_options(timeout=60).chat.completions.create(
        model="smol", messages=ASK, max_tokens=2  # type: ignore[arg-type]
    )
    assert again.choices[0].message.content
