"""Pulling by Ollama names end to end: a real Hearth server, a fake registry on loopback.

The registry is a FaultServer laid out as registry.ollama.ai is (`support.ollama_registry`), so a
blob can redirect, drop its connection halfway, or not match its digest. The real SmolLM2 GGUF is
pulled once and chatted with; the other cases use a small synthetic GGUF to stay quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fault_server import FaultServer
from support.gguf_factory import gguf_bytes
from support.ollama_registry import blob_path, publish, publish_manifest
from support.server import ThreadedServer, free_port
from support.smollm import smollm2_path
from support.waiting import job_done

from hearth.core.config import load_settings
from hearth.core.errors import DownloadFailed
from hearth.downloads.ollama import Layer, Where, map_params, model_json, parse_manifest
from hearth.models.names import OllamaRef
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml

MODEL = gguf_bytes(name="Tiny Llama", context_length=4096, n_tensors=4, tensor_shape=(256, 256))
PARAMS = json.dumps(
    {
        "temperature": 0.3,
        "top_k": 20,
        "num_predict": 64,
        "num_ctx": 2048,
        "stop": ["<|im_end|>", "<|endoftext|>"],
        "repeat_penalty": 1.1,
        "seed": 7,
        "use_mmap": True,  # an option Hearth has no use for: ignored
        "top_p": "high",  # the wrong type: ignored
    }
).encode()
TEMPLATE = b"{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}{{ .Prompt }}"
SYSTEM = b"You are a cheerful assistant."
LICENSE = b"Apache License 2.0, of course."
TEXT_LAYERS = [
    ("template", TEMPLATE),
    ("params", PARAMS),
    ("system", SYSTEM),
    ("license", LICENSE),
    ("application/vnd.ollama.image.future-thing", b"not for us"),  # unknown: ignored
]


@pytest.fixture
def registry() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        publish(srv, "tiny", "latest", [("model", MODEL), *TEXT_LAYERS])
        publish(srv, "tiny", "1b", [("model", MODEL), ("params", b'{"temperature": 0.9}')])
        yield srv


def serve(home: Path, registry: str, **env: str) -> ThreadedServer:
    settings = load_settings(home=home, env={"HEARTH_OLLAMA_REGISTRY": registry, **env})
    return ThreadedServer(Services.create(settings))


@pytest.fixture
def live(home: Path, registry: FaultServer) -> Iterator[ThreadedServer]:
    with serve(home, registry.base) as srv:
        yield srv


def pull(live: ThreadedServer, source: str, **body: Any) -> httpx.Response:
    with live.http(trust_env=False) as http:
        return http.post("/v1/models/pull", json={"source": source, **body})


def pulled(live: ThreadedServer, source: str) -> dict[str, Any]:
    """Pull `source`, wait for its job, answer the model as GET /v1/models/{id} lists it."""
    r = pull(live, source)
    assert r.status_code == 202, r.text
    done = job_done(live.url, r.json()["id"])
    assert done["state"] == "completed", done
    return model(live, r.json()["model_id"])


def model(live: ThreadedServer, model_id: str) -> dict[str, Any]:
    with live.http(trust_env=False) as http:
        return http.get(f"/v1/models/{model_id}").json()


def test_pull_the_real_model_through_a_redirect_and_a_drop_then_chat(
    home: Path, registry: FaultServer
) -> None:
    data = smollm2_path().read_bytes()
    publish(registry, "smollm2", "135m", [("model", data), *TEXT_LAYERS])
    blob = blob_path("smollm2", data)
    registry.add("/cdn/smollm2.gguf", data)  # where the registry sends blob requests
    registry.fault(blob, redirect_to=registry.url("/cdn/smollm2.gguf"), times=None)
    registry.fault("/cdn/smollm2.gguf", close_after=len(data) // 2)
    with serve(home, registry.base) as live:
        item = pulled(live, "smollm2:135m")
        assert item["id"] == "smollm2-135m" and item["status"] == "ready"
        folder = home / "models" / "smollm2-135m"
        assert (folder / "smollm2-135m.gguf").read_bytes() == data
        assert sorted(p.name for p in folder.iterdir()) == ["model.json", "smollm2-135m.gguf"]
        # a drop at 50% costs a resume, not a second download (a few KiB in flight at most)
        refetched = registry.bytes_sent("/cdn/smollm2.gguf") - len(data)
        assert len(registry.requests_for("/cdn/smollm2.gguf")) >= 2 and refetched < 1 << 20
        reply = live.openai().chat.completions.create(
            model="smollm2-135m",
            messages=[{"role": "user", "content": "Say hi"}],
            max_tokens=5,
        )
    assert reply.model == "smollm2-135m" and reply.choices[0].message.content


def test_layers_fill_model_json_and_unknown_ones_are_ignored(
    live: ThreadedServer, registry: FaultServer, home: Path
) -> None:
    item = pulled(live, "ollama.com/library/tiny")
    assert item["id"] == "tiny" and item["name"] == "Tiny Llama"  # from the GGUF header
    assert item["model_parameters"] == {
        "temperature": 0.3,
        "top_k": 20,
        "max_tokens": 64,
        "stop": ["<|im_end|>", "<|endoftext|>"],
        "repeat_penalty": 1.1,
        "seed": 7,
    }
    assert item["engine_parameters"]["ctx_len"] == 2048  # num_ctx wins over the header's 4096
    meta = item["metadata"]
    assert meta["system_prompt"] == SYSTEM.decode() and meta["license"] == LICENSE.decode()
    assert meta["ollama"]["template"] == TEMPLATE.decode()  # recorded, never rendered
    assert meta["ollama"]["ignored_params"] == ["top_p", "use_mmap"]
    assert meta["ollama"]["name"] == "tiny:latest" and meta["architecture"] == "llama"
    digest = blob_path("tiny", MODEL).rsplit(":", 1)[1]
    assert item["sources"] == [
        {
            "filename": "tiny.gguf",
            "url": f"{registry.base}/v2/library/tiny/blobs/sha256:{digest}",
            "size": len(MODEL),
            "sha256": digest,
        }
    ]
    assert not any(r.path.endswith("future-thing") for r in registry.requests)
    assert sorted(p.name for p in (home / "models" / "tiny").iterdir()) == [
        "model.json",
        "tiny.gguf",
    ]
    # the folder is an ordinary model: its missing file comes back through its sources
    (home / "models" / "tiny" / "tiny.gguf").unlink()
    with live.http(trust_env=False) as http:
        again = http.post("/v1/models/tiny/download")
    assert job_done(live.url, again.json()["id"])["state"] == "completed"
    assert (home / "models" / "tiny" / "tiny.gguf").read_bytes() == MODEL


def test_a_second_tag_of_the_same_blob_is_hard_linked_not_fetched(
    home: Path, registry: FaultServer
) -> None:
    env = {**os.environ, "HEARTH_OLLAMA_REGISTRY": registry.base}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "hearth", "--home", str(home), "pull", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    first = cli("tiny")
    assert first.returncode == 0, first.stdout + first.stderr
    second = cli("tiny:1b")
    assert second.returncode == 0, second.stdout + second.stderr
    a = home / "models" / "tiny" / "tiny.gguf"
    b = home / "models" / "tiny-1b" / "tiny-1b.gguf"
    assert a.stat().st_ino == b.stat().st_ino and a.stat().st_nlink == 2
    assert registry.bytes_sent(blob_path("tiny", MODEL)) == len(MODEL)  # fetched once
    info = json.loads((home / "models" / "tiny-1b" / "model.json").read_text())
    assert info["model_parameters"]["temperature"] == 0.9 and info["name"] == "Tiny Llama"
    assert info["format"] == "ggufv3"  # filled from the header although nothing was downloaded
    again = cli("tiny:1b")  # pulled already: the manifest is read, nothing is downloaded
    assert again.returncode == 0 and "already complete" in again.stdout
    with serve(home, registry.base) as live:
        assert model(live, "tiny-1b")["status"] == "ready"
        with live.http(trust_env=False) as http:
            assert http.delete("/v1/models/tiny").status_code == 200
        assert b.read_bytes() == MODEL and model(live, "tiny-1b")["status"] == "ready"


def test_a_wrong_digest_fails_and_is_never_ready(
    live: ThreadedServer, registry: FaultServer, home: Path
) -> None:
    publish(registry, "liar", "latest", [("model", MODEL)])
    corrupt = MODEL[:-1] + bytes([MODEL[-1] ^ 1])
    registry.replace(blob_path("liar", MODEL), corrupt)  # same size, other bytes
    r = pull(live, "liar")
    assert r.status_code == 202, r.text
    done = job_done(live.url, r.json()["id"])
    assert done["state"] == "failed" and "sha256 mismatch" in done["error"]
    assert model(live, "liar")["status"] == "failed"
    assert [p.name for p in (home / "models" / "liar").iterdir()] == ["model.json"]


def test_unknown_names_and_tags_are_clear_404s(live: ThreadedServer) -> None:
    r = pull(live, "tiny:70b")
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert "no model tiny:70b" in message and "hearth search --library" in message
    assert "not a model id here" in message  # a bare name might have meant a local model
    r = pull(live, "ollama://someone/nothing:1b")
    assert r.status_code == 404 and "someone/nothing:1b" in r.json()["error"]["message"]
    assert "not a model id here" not in r.json()["error"]["message"]


def test_an_unreachable_registry_names_the_setting(home: Path) -> None:
    with serve(home, f"http://127.0.0.1:{free_port()}") as live:
        r = pull(live, "llama3.2")
    assert r.status_code == 502
    assert "HEARTH_OLLAMA_REGISTRY" in r.json()["error"]["message"]
    assert not (home / "models" / "llama3.2").exists()  # nothing written before the manifest


def test_sizes_are_capped_before_any_download(home: Path, registry: FaultServer) -> None:
    publish(registry, "big", "latest", [("model", MODEL)])
    with serve(home, registry.base, HEARTH_MAX_DOWNLOAD_BYTES=str(len(MODEL) - 1)) as live:
        r = pull(live, "big")
    assert r.status_code == 502 and "max_download_bytes" in r.json()["error"]["message"]
    assert registry.requests_for(blob_path("big", MODEL)) == []
    publish_manifest(registry, "huge", "latest", b" " * (2 << 20))  # a 2 MiB "manifest"
    with serve(home, registry.base) as live:
        r = pull(live, "huge")
    assert r.status_code == 502 and "larger than" in r.json()["error"]["message"]


PUBLIC = "http://93.184.216.34"  # a literal public address, served by the loopback proxy below


@pytest.mark.parametrize("allow", [False, True])
def test_a_blob_redirect_into_a_private_network_needs_the_setting(
    home: Path, monkeypatch: pytest.MonkeyPatch, allow: bool
) -> None:
    with FaultServer() as proxy:
        publish(proxy, "tiny", "latest", [("model", MODEL)])
        proxy.add("/inner/tiny.gguf", MODEL)
        port = proxy.base.rsplit(":", 1)[1]
        inner = f"http://127.0.0.2:{port}/inner/tiny.gguf"
        proxy.fault(blob_path("tiny", MODEL), redirect_to=inner, times=None)
        monkeypatch.setenv("HTTP_PROXY", proxy.base)  # every http request goes through it...
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # ...but the test's own
        flag = {"HEARTH_ALLOW_PRIVATE_REDIRECTS": "1"} if allow else {}
        with serve(home, PUBLIC, **flag) as live:
            r = pull(live, "tiny")
            assert r.status_code == 202, r.text
            done = job_done(live.url, r.json()["id"])
        inner_asked = proxy.requests_for("/inner/tiny.gguf")
    if allow:
        assert done["state"] == "completed" and inner_asked
    else:
        assert done["state"] == "failed" and "private address" in done["error"]
        assert inner_asked == []


# ---- the manifest and the parameters, unit by unit ------------------------------------------

WHERE = Where(OllamaRef("library", "x"), "http://registry.test")
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"layers": {}}', "no 'layers' list"),
        (json.dumps({"layers": [{}] * 65}).encode(), "no 'layers' list"),
        (b'{"layers": ["x"]}', "layer 0 is not an object"),
        (b'{"layers": [{"mediaType": 1}]}', "no media type"),
        (
            json.dumps({"layers": [{"mediaType": "m", "digest": "sha256:../../etc", "size": 1}]}),
            "valid sha256 digest",
        ),
        (json.dumps({"layers": [{"mediaType": "m", "digest": DIGEST, "size": -1}]}), "size"),
        (json.dumps({"layers": [{"mediaType": "m", "digest": DIGEST, "size": True}]}), "size"),
    ],
)
def test_hostile_manifests_are_refused(body: bytes | str, fragment: str) -> None:
    data = body.encode() if isinstance(body, str) else body
    with pytest.raises(DownloadFailed, match=fragment) as caught:
        parse_manifest(data, WHERE)
    assert "etc" not in caught.value.message


def test_unknown_media_types_are_dropped_uncapped_and_unfetched() -> None:
    layers = [
        {"mediaType": "application/vnd.ollama.image.adapter", "digest": DIGEST, "size": 10**15},
        {"mediaType": "text/x-anything", "digest": DIGEST, "size": 10**15},
        {"mediaType": "application/vnd.ollama.image.model", "digest": DIGEST, "size": 5},
    ]
    assert parse_manifest(json.dumps({"layers": layers}).encode(), WHERE) == [
        Layer("model", DIGEST, 5)
    ]


def test_a_manifest_needs_exactly_one_model_layer(
    live: ThreadedServer, registry: FaultServer
) -> None:
    publish(registry, "twin", "latest", [("model", MODEL), ("model", MODEL + b"x")])
    publish(registry, "none", "latest", [("params", b"{}")])
    for name in ("twin", "none"):
        r = pull(live, name)
        assert r.status_code == 502 and "exactly one" in r.json()["error"]["message"]


def test_parameters_map_to_hearths_names() -> None:
    docs = [
        json.dumps({"num_predict": -1, "num_ctx": 131072, "min_p": 0.05, "stop": "</s>"}),
        json.dumps({"presence_penalty": 1, "frequency_penalty": 0.5, "seed": 3.0, "top_k": 1.5}),
        json.dumps({"temperature": 1e300, "top_p": 7, "mirostat": 9}),  # outside model.json's
        "not json",
        "[1, 2]",
    ]
    model_params, engine, ignored = map_params(docs)
    assert model_params == {
        "min_p": 0.05,
        "stop": ["</s>"],
        "presence_penalty": 1.0,
        "frequency_penalty": 0.5,
        "seed": 3,
    }
    assert engine == {"ctx_len": 8192}  # capped as an import caps a GGUF's context
    assert ignored == ["mirostat", "temperature", "top_k", "top_p"]  # 1.5: not whole; ranges
    assert model_json({}, WHERE) == {"metadata": {"ollama": {"registry": WHERE.registry,
                                                             "name": "x:latest"}}}  # fmt: skip


def test_the_services_accept_the_same_names_offline(home: Path, registry: FaultServer) -> None:
    """`Services.pull` is what the CLI runs without a server: the same rules, no HTTP."""

    async def run() -> tuple[str, str]:
        settings = load_settings(home=home, env={"HEARTH_OLLAMA_REGISTRY": registry.base})
        services = Services.create(settings)
        try:
            model_id, job = await services.pull("registry.ollama.ai/library/tiny:1b")
            assert job is not None
            return model_id, (await job.wait()).state
        finally:
            await services.stop()

    assert asyncio.run(run()) == ("tiny-1b", "completed")
