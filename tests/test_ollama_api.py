"""Ollama's API on Hearth's port, spoken to by the real `ollama` client and LangChain.

One server and one SmolLM2 load for the module (`smol`; `smol-embed` embeds; `smol-ctx` takes
the context reloads so `smol` is never restarted). A fake Ollama registry on loopback serves a
small synthetic GGUF for the pulls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from support.engines import add_smol
from support.fault_server import FaultServer
from support.gguf_factory import gguf_bytes
from support.ollama_registry import publish
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

TINY = gguf_bytes(name="Tiny Llama", context_length=4096, n_tensors=4, tensor_shape=(64, 64))
HELLO = [{"role": "user", "content": "Say hello."}]
FAST = {"num_predict": 6, "temperature": 0}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ollama") / "home"
    (path / "models").mkdir(parents=True)
    add_smol(path, "smol")
    add_smol(path, "smol-embed", {"embedding": True, "pooling": "mean"})
    add_smol(path, "smol-ctx")
    return path


@pytest.fixture(scope="module")
def registry() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        publish(srv, "tiny", "1b", [("model", TINY), ("system", b"Be brief.")])
        yield srv


@pytest.fixture(scope="module")
def srv(home: Path, registry: FaultServer) -> Iterator[ThreadedServer]:
    settings = load_settings(home=home, env={"HEARTH_OLLAMA_REGISTRY": registry.base})
    with ThreadedServer(Services.create(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def client(srv: ThreadedServer) -> ollama.Client:
    return srv.keep(ollama.Client(host=srv.url, timeout=120, trust_env=False))


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http(trust_env=False) as h:
        yield h


def plausible_final(final: Any) -> None:
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert final["eval_count"] > 0 and final["prompt_eval_count"] > 0
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert final[key] > 0, key
    assert final["total_duration"] >= final["eval_duration"]
    assert final["created_at"].endswith("Z") and "T" in final["created_at"]


# ---- liveness, version, list, show ------------------------------------------------------


def test_liveness_probe_answers_by_accept(http: httpx.Client) -> None:
    probe = http.get("/")
    assert probe.status_code == 200 and probe.text == "Ollama is running"
    assert http.head("/").status_code == 200
    page = http.get("/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert http.get("/api/version").json()["version"]


def test_list_and_show_describe_the_gguf(client: ollama.Client) -> None:
    names = {m.model: m for m in client.list().models}
    assert {"smol:latest", "smol-embed:latest"} <= set(names)
    details = names["smol:latest"].details
    assert details is not None and details.format == "gguf" and details.family == "llama"
    assert details.parameter_size and details.quantization_level == "Q4_1"
    shown = client.show("smol")
    assert shown.capabilities is not None and "completion" in shown.capabilities
    assert "embedding" in (client.show("smol-embed:latest").capabilities or [])
    assert shown.template and "im_start" in shown.template
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert "num_ctx" in (shown.parameters or "")


# ---- inference --------------------------------------------------------------------------


def test_chat_whole_and_streamed(client: ollama.Client) -> None:
    whole = client.chat(model="smol", messages=HELLO, options=FAST, stream=False)
    assert whole.message.role == "assistant" and whole.message.content
    plausible_final(whole)
    assert whole.eval_count is not None and whole.eval_count <= 6
    parts = list(client.chat(model="smol:latest", messages=HELLO, options=FAST, stream=True))
    assert all(not p.done for p in parts[:-1]) and len(parts) >= 2
    assert "".join(p.message.content or "" for p in parts)
    plausible_final(parts[-1])
    assert parts[-1].model == "smol:latest"


def test_generate_whole_streamed_and_raw(client: ollama.Client) -> None:
    whole = client.generate(model="smol", prompt="Name a color.", options=FAST)
    assert whole.response and whole.done
    plausible_final(whole)
    parts = list(client.generate(model="smol", prompt="Count: 1, 2,", options=FAST, stream=True))
    assert "".join(p.response or "" for p in parts) and parts[-1].done
    plausible_final(parts[-1])
    raw = client.generate(model="smol", prompt="Once upon a time", raw=True, options=FAST)
    assert raw.response and raw.eval_count


def test_json_format_and_unknown_options(client: ollama.Client) -> None:
    reply = client.chat(
        model="smol",
        messages=[{"role": "user", "content": "Give a JSON object with a name."}],
        format="json",
        options={"num_predict": 24, "temperature": 0, "num_gpu": 99, "made_up": "x"},
    )
    assert reply.message.content and reply.message.content.lstrip().startswith("{")


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    reply = client.embed(model="smol-embed", input=["a cat", "a dog"])
    assert len(reply.embeddings) == 2 and len(reply.embeddings[0]) == 576
    assert reply.prompt_eval_count and reply.total_duration
    cut = client.embed(model="smol-embed", input="a cat", dimensions=8)
    assert len(cut.embeddings[0]) == 8
    assert abs(sum(x * x for x in cut.embeddings[0]) - 1.0) < 1e-3
    assert len(client.embeddings(model="smol-embed", prompt="a cat").embedding) == 576


def test_ps_lists_loaded_models_with_context(client: ollama.Client) -> None:
    client.chat(model="smol", messages=HELLO, options=FAST)
    loaded = {m.model: m for m in client.ps().models}
    assert loaded["smol:latest"].context_length == 1024
    assert loaded["smol:latest"].expires_at is not None


def test_num_ctx_reloads_and_is_clamped_to_the_trained_context(client: ollama.Client) -> None:
    client.chat(model="smol-ctx", messages=HELLO, options={**FAST, "num_ctx": 2048})
    assert {m.model: m for m in client.ps().models}["smol-ctx:latest"].context_length == 2048
    client.chat(model="smol-ctx", messages=HELLO, options={**FAST, "num_ctx": 10**12})
    assert {m.model: m for m in client.ps().models}["smol-ctx:latest"].context_length == 8192
    unloaded = client.chat(model="smol-ctx", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "smol-ctx:latest" not in {m.model for m in client.ps().models}


# ---- copy, create, delete, pull ---------------------------------------------------------


def test_copy_create_then_chat_uses_system_and_parameters(
    client: ollama.Client, home: Path
) -> None:
    assert client.copy("smol", "smol-copy:latest").status == "success"
    assert "smol-copy:latest" in {m.model for m in client.list().models}
    done = client.create(
        model="pirate",
        from_="smol-copy",
        system="You are a pirate. Always say ARRR.",
        parameters={"num_predict": 3, "temperature": 0},
        template="{{ .Prompt }}",
        license="MIT",
    )
    assert done.status == "success"
    raw = json.loads((home / "models" / "pirate" / "model.json").read_text())
    assert raw["metadata"]["system_prompt"].startswith("You are a pirate")
    assert raw["metadata"]["ollama"]["template"] == "{{ .Prompt }}"
    assert raw["model_parameters"]["max_tokens"] == 3 and raw["metadata"]["license"] == "MIT"
    shown = client.show("pirate")
    assert "num_predict" in (shown.parameters or "") and shown.license == "MIT"
    plain = client.chat(model="smol", messages=HELLO, options=FAST)
    pirate = client.chat(model="pirate", messages=HELLO)
    assert pirate.eval_count is not None and pirate.eval_count <= 3
    # SYSTEM replaced the template's default system prompt: another prompt, another count
    assert pirate.prompt_eval_count != plain.prompt_eval_count
    for name in ("pirate", "smol-copy"):
        assert client.delete(name).status == "success"
    with pytest.raises(ollama.ResponseError) as gone:
        client.show("pirate")
    assert gone.value.status_code == 404
    assert (home / "models" / "smol" / "model.json").exists()


def test_create_refuses_strangers_paths_and_blobs(
    client: ollama.Client, http: httpx.Client, home: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(TINY)
    for source in (str(outside), "/etc/passwd.gguf", str(home / ".." / ".." / "x.gguf")):
        r = http.post("/api/create", json={"model": "evil", "from": source})
        assert r.status_code in (403, 404), (source, r.text)
        assert isinstance(r.json()["error"], str)
    blobs = http.post("/api/create", json={"model": "evil", "files": {"a.gguf": "sha256:00"}})
    assert blobs.status_code == 400 and "not supported" in blobs.json()["error"]
    assert not (home / "models" / "evil").exists()
    inside = home / "imports" / "tiny.gguf"
    inside.parent.mkdir(exist_ok=True)
    inside.write_bytes(TINY)
    made = client.create(model="tiny-made:v2", from_=str(inside), system="Hi", stream=False)
    assert made.status == "success"
    assert "tiny-made:v2" in {m.model for m in client.list().models}
    client.delete("tiny-made:v2")


def test_pull_streams_ollamas_status_lines(client: ollama.Client) -> None:
    lines = list(client.pull("tiny:1b", stream=True))
    statuses = [line.status for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses and "writing manifest" in statuses
    pulling = [line for line in lines if (line.status or "").startswith("pulling ") and line.total]
    assert pulling and pulling[-1].completed == pulling[-1].total == len(TINY)
    assert pulling[-1].digest and pulling[-1].digest.startswith("sha256:")
    assert "tiny:1b" in {m.model for m in client.list().models}
    assert client.pull("tiny:1b", stream=False).status == "success"  # already there
    assert 'SYSTEM """Be brief."""' in (client.show("tiny:1b").modelfile or "")
    with pytest.raises(ollama.ResponseError):
        list(client.pull("no-such-model:7b", stream=True))


# ---- errors and security ----------------------------------------------------------------


def test_errors_are_ollama_shaped(client: ollama.Client, http: httpx.Client) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nope", messages=HELLO)
    assert missing.value.status_code == 404 and 'model "nope" not found' in missing.value.error
    cases: list[tuple[str, Any]] = [
        ("/api/chat", [1]),
        ("/api/chat", {"messages": HELLO}),
        ("/api/chat", {"model": "smol", "messages": [{"role": "robot"}]}),
        ("/api/chat", {"model": "smol", "messages": HELLO, "options": {"temperature": "hot"}}),
        ("/api/chat", {"model": "smol", "messages": HELLO, "options": {"num_ctx": -5}}),
        ("/api/chat", {"model": "smol", "messages": HELLO, "format": 7}),
        ("/api/generate", {"model": "smol", "prompt": "x", "images": ["%%%"]}),
        ("/api/embed", {"model": "smol-embed", "input": [1, 2]}),
    ]
    for path, body in cases:
        r = http.post(path, json=body)
        assert r.status_code == 400, (path, body, r.text)
        assert isinstance(r.json()["error"], str)
    json_type = {"content-type": "application/json"}
    bad_json = http.post("/api/chat", content=b"{nope", headers=json_type)
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    png = {"model": "smol", "prompt": "x", "images": ["iVBORw0KGgo="]}
    images = http.post("/api/generate", json=png)
    assert images.status_code == 400 and "images" in images.json()["error"]
    assert http.post("/api/show", json={"model": "nope"}).json()["error"].startswith('model "nope"')


def test_the_api_key_guards_api_routes(home: Path) -> None:
    settings = load_settings(home=home, env={"HEARTH_API_KEY": "sekrit", "HEARTH_WATCH": "0"})
    with ThreadedServer(Services.create(settings)) as server:
        with server.http(trust_env=False) as h:
            refused = h.get("/api/tags")
            assert refused.status_code == 401 and isinstance(refused.json()["error"], str)
            assert h.get("/api/tags", headers={"authorization": "Bearer wrong"}).status_code == 401
        keyed = server.keep(
            ollama.Client(host=server.url, headers={"Authorization": "Bearer sekrit"})
        )
        assert "smol:latest" in {m.model for m in keyed.list().models}


# ---- LangChain ----------------------------------------------------------------------------


def test_langchain_chat_and_embeddings(srv: ThreadedServer) -> None:
    from langchain_ollama import ChatOllama, OllamaEmbeddings

    chat = ChatOllama(model="smol", base_url=srv.url, num_predict=6, temperature=0)
    assert chat.invoke("Say hi.").content
    assert "".join(str(c.content) for c in chat.stream("Say hi."))
    vectors = OllamaEmbeddings(model="smol-embed", base_url=srv.url)
    assert len(vectors.embed_query("a cat")) == 576
    for model in (chat, vectors):  # langchain-ollama never closes the ollama.Client it opens
        srv.keep(model._client)
