"""A Jan model's id, nested as Jan nests it, through every route and dialect (issue 25,
point 2): `/v1` (openai), `/api` (ollama), `/v1/messages` (anthropic), `/v1/responses`,
`/v1/running`; the engine gets model.yml's ctx_size, and Jan's hostile llama.cpp settings
(`llamacpp_env`, a device) never reach its command line or its environment.

One server, SmolLM2 imported into a Jan folder as Jan imports (model.yml pointing at the file
where it lies) under a nested id, an embedding model beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anthropic
import httpx
import ollama
import psutil
import pytest
from support.cli import CliRunner
from support.janfolder import add_imported_model, make_jan_folder, write_llamacpp_settings
from support.server import ThreadedServer
from support.smollm import smollm2_path

from hearth.cli.main import main
from hearth.core.config import load_settings
from hearth.services import Services

pytestmark = pytest.mark.slow  # SmolLM2 engines: see pyproject.toml

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct-Q4_1"
EMBED = "nomic-ai/smol-embed"
HELLO = [{"role": "user", "content": "Say hello."}]
EVIL = "/tmp/hearth-test-evil.so"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_jan_folder(tmp_path_factory.mktemp("jan") / "data")
    add_imported_model(root, SMOL, smollm2_path(), ctx_size=1536, temperature=0, top_k=1)
    add_imported_model(
        root, EMBED, smollm2_path(), embedding=True, pooling="mean", ctx_size=512, batch_size=512,
        ubatch_size=512,
    )  # fmt: skip
    write_llamacpp_settings(
        root,
        {
            "llamacpp_env": f"LD_PRELOAD={EVIL};HEARTH_JAN_HOSTILE=1",
            "device": "Vulkan9",
            "split_mode": "row --api-key stolen",
            "threads": 2,
            "n_predict": 48,  # bounds what the model may write where a client sets no limit
            "version_backend": "../../evil/bin",
        },
    )
    return root


@pytest.fixture(scope="module")
def srv(data: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(Services.create(load_settings(home=data, env={}))) as server:
        yield server


@pytest.fixture(scope="module")
def http(srv: ThreadedServer) -> Iterator[httpx.Client]:
    with srv.http(trust_env=False) as h:
        yield h


def test_openai_client_lists_retrieves_and_chats_by_the_nested_id(srv: ThreadedServer) -> None:
    client = srv.openai()
    ids = [m.id for m in client.models.list().data]
    assert SMOL in ids and EMBED in ids
    assert client.models.retrieve(SMOL).id == SMOL  # sent as HuggingFaceTB%2FSmolLM2-...
    chat = client.chat.completions.create(
        model=SMOL,
        messages=HELLO,
        temperature=0,
        seed=7,
        max_tokens=8,  # type: ignore[arg-type]
    )
    assert chat.model == SMOL and chat.choices[0].message.content
    done = client.completions.create(model=SMOL, prompt="1, 2, 3,", max_tokens=4, temperature=0)
    assert done.choices[0].text
    answer = client.responses.create(model=SMOL, input="Say hello.", max_output_tokens=16)
    assert answer.model == SMOL and answer.output_text
    vectors = client.embeddings.create(model=EMBED, input="hello")
    assert len(vectors.data[0].embedding) > 0


def test_the_engine_got_model_ymls_context_and_none_of_the_hostile_settings(
    http: httpx.Client,
) -> None:
    started = http.post(f"/v1/models/{quote(SMOL, safe='')}/start", json={})  # as the page
    assert started.status_code == 200, started.text
    running = {m["id"]: m for m in http.get("/v1/running").json()["data"]}
    assert SMOL in running, running
    engine = running[SMOL]
    assert engine["engine_parameters"]["ctx_len"] == 1536
    proc = psutil.Process(engine["pid"])
    argv = proc.cmdline()
    assert argv[argv.index("-c") + 1] == "1536"
    assert argv[argv.index("-t") + 1] == "2"  # Jan's threads: a whitelisted setting
    assert argv[argv.index("--n-predict") + 1] == "48"
    line = " ".join(argv)
    for hostile in ("Vulkan9", "stolen", "evil", "LD_PRELOAD", "row"):
        assert hostile not in line
    env = proc.environ()
    assert "LD_PRELOAD" not in env and "HEARTH_JAN_HOSTILE" not in env
    assert not any(EVIL in value for value in env.values())


def test_ollama_client_by_the_nested_name(srv: ThreadedServer) -> None:
    client = srv.keep(ollama.Client(host=srv.url, timeout=120, trust_env=False))
    names = [m.model for m in client.list().models]
    assert f"{SMOL}:latest" in names
    shown = client.show(f"{SMOL}:latest")
    assert shown.modelfile and shown.details is not None
    options = {"temperature": 0, "seed": 7, "num_predict": 6}
    chat = client.chat(model=f"{SMOL}:latest", messages=HELLO, options=options)
    assert chat.model == f"{SMOL}:latest" and chat.message.content
    said = client.generate(model=SMOL, prompt="1, 2, 3,", options=options)
    assert said.response
    assert client.embed(model=f"{EMBED}:latest", input="hello").embeddings[0]


def test_anthropic_client_by_the_nested_id(srv: ThreadedServer) -> None:
    with anthropic.Anthropic(base_url=srv.url, api_key="k", max_retries=0, timeout=120) as c:
        message = c.messages.create(
            model=SMOL, max_tokens=8, messages=HELLO, extra_body={"temperature": 0}
        )
        assert message.model == SMOL and message.content[0].type == "text"
        assert c.models.retrieve(SMOL).id == SMOL


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/..%2F..%2Fhearth%2Fsettings.json",
        "/v1/models/HuggingFaceTB%2F..%2F..%2F..%2Fsettings.json",
        "/v1/models/%2Fetc%2Fpasswd",
        "/v1/models/HuggingFaceTB%2F%2E%2E%2Fx",
        "/v1/models/.hearth%2Fx",
    ],
)
def test_attacks_on_nested_ids_are_bad_ids(http: httpx.Client, path: str) -> None:
    for method, suffix in (("GET", ""), ("POST", "/start"), ("POST", "/stop"), ("DELETE", "")):
        r = http.request(method, path + suffix)
        assert r.status_code == 400, (method, path, r.text)
        assert r.json()["error"]["code"] == "invalid_model_id"


def test_attacks_in_a_body_are_bad_ids_in_each_dialect(http: httpx.Client) -> None:
    for bad in ("../../etc/passwd", "/etc/passwd", "a/../b", "HuggingFaceTB//x"):
        r = http.post("/v1/chat/completions", json={"model": bad, "messages": HELLO})
        assert r.status_code in (400, 404), r.text
        assert "passwd" not in r.text or "not a valid" in r.text or "does not exist" in r.text
        assert http.post("/api/show", json={"model": bad}).status_code in (400, 404)
        msg = http.post("/v1/messages", json={"model": bad, "max_tokens": 4, "messages": HELLO})
        assert msg.status_code in (400, 404) and msg.json()["type"] == "error"


def test_a_jan_id_never_reaches_a_hearth_folder(data: Path, http: httpx.Client) -> None:
    """Jan's older tree (`<data>/models/old/model.json`) is the id `old`, never `models/old`,
    and `HuggingFaceTB` (a folder of Jan's, not a model) is no model."""
    old = data / "models" / "old"
    old.mkdir(parents=True, exist_ok=True)
    (old / "model.json").write_text("{}")
    for model_id in ("models/old", "HuggingFaceTB", "hearth/settings.json"):
        r = http.get(f"/v1/models/{model_id}")
        assert r.status_code in (400, 404), (model_id, r.text)


def _cli(data: Path, srv: ThreadedServer | None, *args: str) -> str:
    env = {
        "HOME": str(data.parent),
        "XDG_DATA_HOME": str(data.parent / "xdg"),
        "JAN_DATA_FOLDER": str(data),
        "HEARTH_HOME": None,
        "HEARTH_PORT": str(srv.port) if srv is not None else None,
    }
    result = CliRunner().invoke(main, [*args, "--jan"], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_lists_shows_and_runs_by_the_nested_id(data: Path, srv: ThreadedServer) -> None:
    listed = json.loads(_cli(data, None, "ls", "--json"))  # no server: the folder itself
    assert {SMOL, EMBED} <= {m["id"] for m in listed}
    assert SMOL in _cli(data, srv, "ls")
    shown = _cli(data, srv, "show", SMOL)
    assert "ctx_len" in shown and "1536" in shown
    said = _cli(data, srv, "run", SMOL, "Say hello.")
    assert said.strip()
