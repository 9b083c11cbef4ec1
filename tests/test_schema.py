"""model.json: the spec's defaults, Jan's real-world variants, lossless merge-patches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.engines.rules import RULES
from hearth.models.schema import SchemaError, merge_patch, normalize

FOLDER = Path("/home/me/hearth/models/zephyr-7b")


def norm(raw: Any) -> Any:
    return normalize(raw, folder=FOLDER, default_created=1700000000, engines=RULES)


def test_empty_object_gets_every_spec_default() -> None:
    info = norm({})
    assert info.model_dump(mode="json") == {
        "id": "zephyr-7b",
        "object": "model",
        "name": "zephyr-7b",
        "owned_by": "you",
        "version": "1",
        "created": 1700000000,
        "description": None,
        "format": "ggufv3",
        "engine": "llama-cpp",
        "engine_parameters": {},
        "model_parameters": {},
        "metadata": {},
        "assets": [str(FOLDER)],
        "sources": [],
    }


JAN_2023_SOURCE_URL = {
    "source_url": "https://huggingface.co/TheBloke/Mistral-7B-Instruct-v0.2-GGUF/resolve/main/mistral-7b-instruct-v0.2.Q4_K_M.gguf",
    "id": "mistral-ins-7b-q4",
    "object": "model",
    "name": "Mistral Instruct 7B Q4",
    "version": "1.0",
    "description": "Trained with a focus on following instructions.",
    "format": "gguf",
    "settings": {"ctx_len": 4096, "prompt_template": "[INST] {prompt} [/INST]"},
    "parameters": {"max_tokens": 4096},
    "metadata": {"author": "MistralAI, The Bloke", "tags": ["Featured", "7B"], "size": 4370000000},
    "engine": "nitro",
}
JAN_2024_SOURCES = {
    "sources": [
        {
            "filename": "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
            "url": "https://huggingface.co/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/resolve/main/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
        }
    ],
    "id": "tinyllama-1.1b",
    "object": "model",
    "name": "TinyLlama Chat 1.1B Q4",
    "version": "1.0",
    "description": "TinyLlama is a tiny model with only 1.1B.",
    "format": "gguf",
    "settings": {
        "ctx_len": 4096,
        "prompt_template": "<|system|>\n{system_message}<|user|>\n{prompt}<|assistant|>",
        "llama_model_path": "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
    },
    "parameters": {
        "temperature": 0.7,
        "top_p": 0.95,
        "stream": True,
        "max_tokens": 2048,
        "stop": [],
        "frequency_penalty": 0,
        "presence_penalty": 0,
    },
    "metadata": {"author": "TinyLlama", "tags": ["Tiny"], "size": 669000000},
    "engine": "nitro",
}
JAN_EARLY_STRINGS = {
    "source_url": "https://example.com/llama-2-7b-chat.Q4_K_M.gguf",
    "id": "llama2-chat-7b-q4",
    "object": "model",
    "name": "Llama 2 Chat 7B Q4",
    "version": 1,
    "format": "gguf",
    "settings": {"ctx_len": "2048", "ngl": "100", "embedding": "true"},
    "parameters": {"stream": "true", "max_tokens": "2048", "temperature": "0.7", "stop": None},
    "engine": "nitro",
}
JAN_REMOTE = {
    "sources": [{"url": "https://openai.com"}],
    "id": "gpt-4",
    "object": "model",
    "name": "OpenAI GPT 4",
    "version": "1.0",
    "description": "OpenAI GPT 4 model is extremely good",
    "format": "api",
    "settings": {},
    "parameters": {"max_tokens": 4096, "temperature": 0.7},
    "metadata": {"author": "OpenAI", "tags": ["General", "Big Context Length"]},
    "engine": "openai",
}
JAN_PLACEHOLDER_SOURCES = {  # Jan's "no file yet": loads, names no file
    "sources": [{"url": "", "filename": ""}],
    "id": "my-import",
    "object": "model",
    "name": "My import",
    "version": "1.0",
    "format": "gguf",
    "settings": {"ctx_len": 2048},
    "parameters": {},
    "engine": "nitro",
}
JAN_PLACEHOLDER_SOURCE_URL = {
    "source_url": "",
    "id": "placeholder-2023",
    "name": "Placeholder",
    "format": "gguf",
    "settings": {"ctx_len": 2048},
    "engine": "nitro",
}
JAN_REMOTE_PROFILE_URL = {  # the very URL of the built-in "openai" profile
    "sources": [{"url": "https://openai.com"}],
    "id": "gpt-4o",
    "object": "model",
    "name": "OpenAI GPT 4o",
    "version": "1.1",
    "format": "api",
    "settings": {"base_url": "https://api.openai.com/v1"},
    "parameters": {"max_tokens": 4096, "temperature": 0.7, "stream": True},
    "engine": "openai",
}
JAN_CORTEX = {
    "id": "llama3.2-1b-instruct",
    "source": [{"filename": "Llama-3.2-1B-Instruct-Q8_0.gguf", "url": "https://x/y.gguf"}],
    "settings": {"ctx_len": 131072, "ngl": 33},
    "parameters": {"stop": ["<|eot_id|>"]},
    "engine": "llama-cpp",
}


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (
            JAN_2023_SOURCE_URL,
            {
                "id": "mistral-ins-7b-q4",
                "engine": "llama-cpp",
                "format": "gguf",
                "engine_parameters.ctx_len": 4096,
                "model_parameters.max_tokens": 4096,
                "sources.0.filename": "mistral-7b-instruct-v0.2.Q4_K_M.gguf",
                "version": "1.0",
            },
        ),
        (
            JAN_2024_SOURCES,
            {
                "sources.0.filename": "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
                "model_parameters.stream": True,
                "model_parameters.stop": [],
                "engine_parameters.llama_model_path": "tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
            },
        ),
        (
            JAN_EARLY_STRINGS,
            {
                "version": "1",
                "engine_parameters.ctx_len": 2048,
                "engine_parameters.ngl": 100,
                "engine_parameters.embedding": True,
                "model_parameters.stream": True,
                "model_parameters.max_tokens": 2048,
                "model_parameters.temperature": 0.7,
            },
        ),
        (JAN_REMOTE, {"format": "api", "engine": "openai", "sources.0.url": "https://openai.com"}),
        (
            JAN_CORTEX,
            {
                "sources.0.filename": "Llama-3.2-1B-Instruct-Q8_0.gguf",
                "engine_parameters.ctx_len": 131072,
                "model_parameters.stop": ["<|eot_id|>"],
                "name": "zephyr-7b",
            },
        ),
        (JAN_PLACEHOLDER_SOURCES, {"sources": [], "engine": "llama-cpp"}),
        (JAN_PLACEHOLDER_SOURCE_URL, {"sources": [], "engine_parameters.ctx_len": 2048}),
        (
            JAN_REMOTE_PROFILE_URL,
            {"engine": "openai", "engine_parameters.base_url": "https://api.openai.com/v1"},
        ),
        (
            {"engine": "openai", "engine_parameters": {"base_url": "https://api.openai.com/v1"}},
            {"engine": "openai"},
        ),
        ({"engine": "groq", "settings": {"base_url": "https://api.groq.com/openai/v1"}}, {}),
        ({"engine": "llama.cpp"}, {"engine": "llama-cpp"}),
        ({"engine": "llama_cpp"}, {"engine": "llama-cpp"}),
        ({"engine": "cortex.llamacpp"}, {"engine": "llama-cpp"}),
        ({"version": 2}, {"version": "2"}),
        ({"parameters": {"stop": "</s>"}}, {"model_parameters.stop": ["</s>"]}),
        (
            {"engine_parameters": {"ctx_len": 1}, "settings": {"ctx_len": 2}},
            {"engine_parameters.ctx_len": 1},
        ),
    ],
)
def test_jan_variants_map_onto_spec_fields(raw: dict[str, Any], expect: dict[str, Any]) -> None:
    dumped = norm(raw).model_dump(mode="json")
    for dotted, value in expect.items():
        node: Any = dumped
        for part in dotted.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node == value, dotted
    assert "settings" not in dumped and "parameters" not in dumped


def test_stop_null_means_no_stop() -> None:
    assert "stop" not in norm({"parameters": {"stop": None}}).model_parameters


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"settings": {"ctx_len": "lots"}}, "engine_parameters.ctx_len", "whole number"),
        ({"parameters": {"stream": "maybe"}}, "model_parameters.stream", "true or false"),
        ({"parameters": {"temperature": "hot"}}, "model_parameters.temperature", "a number"),
        ({"parameters": {"stop": [1, 2]}}, "model_parameters.stop", "list of strings"),
        ({"id": "../etc"}, "id", "letters, digits"),
        ({"id": 7}, "id", "letters, digits"),
        ({"settings": [1]}, "engine_parameters", "must be an object"),
        ({"sources": [3]}, "sources[0]", "must be an object"),
        ({"sources": [{"size": 1}]}, "sources[0]", "needs a 'filename'"),
        ({"created": "yesterday"}, "created", "whole number"),
        ({"created": 10**40}, "created", "from 0 to 253,402,300,799,999"),
        ({"created": -1}, "created", "from 0 to"),
        ({"settings": {"ctx_len": 10**30}}, "engine_parameters.ctx_len", "1 to 16,777,216"),
        ({"settings": {"ctx_len": "1e30"}}, "engine_parameters.ctx_len", "1 to 16,777,216"),
        ({"settings": {"n_parallel": 10**9}}, "engine_parameters.n_parallel", "1 to 256"),
        ({"settings": {"ngl": -5}}, "engine_parameters.ngl", "-1 to 100,000"),
        ({"settings": {"cpu_threads": 10**6}}, "engine_parameters.cpu_threads", "-1 to 4,096"),
        ({"engine": "openai", "format": "api", "settings": {"ctx_len": 0}},
         "engine_parameters.ctx_len", "1 to 16,777,216"),
        ({"parameters": {"temperature": 1e300}}, "model_parameters.temperature", "0 to 100"),
        ({"parameters": {"temperature": float("nan")}}, "model_parameters.temperature",
         "not a finite number"),
        ({"parameters": {"top_p": 1.5}}, "model_parameters.top_p", "0 to 1"),
        ({"parameters": {"max_tokens": 10**12}}, "model_parameters.max_tokens", "-1 to"),
        ({"parameters": {"seed": 2**64}}, "model_parameters.seed", "-1 to"),
        ({"parameters": {"mirostat": 3}}, "model_parameters.mirostat", "0 to 2"),
        ({"parameters": {"typical_p": "x"}}, "model_parameters.typical_p", "a number"),
        ({"sources": [{"filename": "a.gguf", "size": 2**60}]}, "sources[0].size", "0 to"),
        ({"sources": "x"}, "sources", "not a URL"),
        ({"sources": ["x"]}, "sources[0]", "not a URL"),
        ({"source_url": "just-a-name"}, "source_url", "not a URL"),
        ({"metadata": "x"}, "metadata", "valid dictionary"),
        ([], "(root)", "JSON object"),
    ],
)
def test_impossible_values_name_the_field_and_the_fix(raw: Any, field: str, fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        norm(raw)
    assert info.value.field == field
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1/chat",  # a trailing path
        "https://api.openai.com",  # a shorter one
        "https://api.openai.com:8443/v1",  # another port
        "https://api.openai.com:443/v1",  # the same port, spelled: still not the same text
        "http://api.openai.com/v1",  # plain http
        "https://me:pw@api.openai.com/v1",  # user info
        "https://api.openai.com.evil.example/v1",
        "https://API.OPENAI.COM/v1",
        "https://api.openai.com/v1?x=1",
        "https://api.groq.com/openai/v1",  # another profile's URL
        " https://api.openai.com/v1",
    ],
)
def test_a_remote_base_url_other_than_its_profiles_is_refused(url: str) -> None:
    """Only the very URL of the engine's built-in profile may stand in a model.json (Jan wrote
    it; it sends nothing anywhere new); anything else is where a secret could leak."""
    for key in ("settings", "engine_parameters"):
        with pytest.raises(SchemaError) as info:
            norm({"engine": "openai", "format": "api", key: {"base_url": url}})
        assert info.value.field == "engine_parameters.base_url"
        assert "engines/openai/engine.json" in info.value.message
    with pytest.raises(SchemaError):  # no profile at all: no URL is anyone's
        norm({"engine": "box", "format": "api", "settings": {"base_url": url}})


def test_unknown_fields_are_kept_and_visible() -> None:
    info = norm({"x_custom": {"a": 1}, "tags": ["b"]})
    assert info.model_extra == {"x_custom": {"a": 1}, "tags": ["b"]}


def test_merge_patch_writes_under_the_files_own_names() -> None:
    out = merge_patch(JAN_2024_SOURCES, {"engine_parameters": {"ctx_len": 8192}})
    assert "engine_parameters" not in out
    assert out["settings"]["ctx_len"] == 8192
    assert out["settings"]["prompt_template"] == JAN_2024_SOURCES["settings"]["prompt_template"]
    out = merge_patch({}, {"engine_parameters": {"ctx_len": 8192}})
    assert out == {"engine_parameters": {"ctx_len": 8192}}
    out = merge_patch({"a": 1, "metadata": {"x": 1, "y": 2}}, {"metadata": {"x": None}, "a": None})
    assert out == {"metadata": {"y": 2}}


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
valid_known = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(min_size=1, max_size=20),
        "description": st.none() | st.text(max_size=20),
        "version": st.integers(0, 9) | st.text(min_size=1, max_size=4),
        "format": st.sampled_from(["gguf", "ggufv3", "ggufv2", "api"]),
        "engine": st.sampled_from(["nitro", "llama-cpp", "llama.cpp", "llama_cpp"]),
        "settings": st.fixed_dictionaries(
            {},
            optional={
                "ctx_len": st.integers(1, 10**6) | st.integers(1, 10**6).map(str),
                "x": json_values,
            },
        ),
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "stream": st.booleans() | st.sampled_from(["true", "false"]),
                "stop": st.none() | st.lists(st.text(max_size=4), max_size=2),
            },
        ),
        "metadata": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        "source_url": st.just("https://example.com/a/model.gguf"),
    },
)
unknown = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(
        lambda k: (
            k
            not in {
                "id",
                "name",
                "description",
                "version",
                "format",
                "engine",
                "settings",
                "parameters",
                "metadata",
                "source_url",
                "sources",
                "source",
                "engine_parameters",
                "model_parameters",
                "created",
                "assets",
                "owned_by",
                "object",
            }
        )
    ),
    json_values,
    max_size=4,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(known=valid_known, extra=unknown, new_description=st.text(max_size=30))
@pytest.mark.slow
def test_any_model_json_round_trips_through_an_edit(
    known: dict[str, Any], extra: dict[str, Any], new_description: str, tmp_path: Path
) -> None:
    """Editing a model through Hearth never drops or changes what another tool wrote."""
    from hearth.models.store import ModelStore

    raw = {**extra, **known}
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(raw))
    store = ModelStore(tmp_path / "models", engines=RULES)
    store.update("m", {"description": new_description})
    after = json.loads((folder / "model.json").read_text())
    assert after.pop("description") == new_description
    before = dict(raw)
    before.pop("description", None)
    assert after == before


def test_no_module_under_models_imports_the_engines() -> None:
    """models/ sits below engines/ (issue 23): the engine kinds' rules are handed in
    (`EngineRules`), never imported, not even inside a function or under TYPE_CHECKING."""
    import ast

    import hearth.models

    offenders: list[str] = []
    for path in sorted(Path(hearth.models.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n == "hearth.engines" or n.startswith("hearth.engines.") for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_without_the_engines_rules_a_store_knows_only_the_default_engine(
    tmp_path: Path,
) -> None:
    """A store opened without the engines (a tool, a unit test) keeps names as written and
    checks no kind's parameters; with them, Jan's names and the parameter checks apply."""
    from hearth.models.schema import PlainRules

    raw = {"engine": "nitro", "settings": {"ctx_lenn": 1}}
    plain = normalize(raw, folder=FOLDER, default_created=1, engines=PlainRules())
    assert plain.engine == "nitro" and plain.is_remote
    assert not norm({}).is_remote and norm({"format": "api"}).is_remote
    info = norm({"engine": "nitro", "settings": {"ctx_len": 1}})
    assert info.engine == "llama-cpp" and not info.is_remote
