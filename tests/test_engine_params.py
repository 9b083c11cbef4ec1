"""Engine parameters: merging, coercion of old Jan strings, unknown names, llama-server flags,
and the openai-compatible engine's parameters. Pure functions: no engine needed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearth.core.errors import EngineError, InvalidParameter
from hearth.engines.base import LogRing, redact_args, redact_env, redact_text
from hearth.engines.params import build_server_args, merge_engine_params
from hearth.engines.remote import RemoteEngine


@pytest.mark.parametrize(
    ("base", "model", "request_", "expected"),
    [
        (None, None, None, {"ctx_len": 4096, "n_parallel": 1}),
        ({"ngl": 10}, {"ngl": 20}, {"ngl": 30}, {"ngl": 30}),
        ({"ngl": 10}, {"ngl": 20}, None, {"ngl": 20}),
        ({"ngl": 10}, None, {"ngl": None}, {"ngl": 10}),  # null means "not set here"
        (None, {"ctx_len": "2048"}, None, {"ctx_len": 2048}),
        (None, {"ctx_len": 2048.0}, None, {"ctx_len": 2048}),
        (None, {"embedding": "true", "mlock": "0"}, None, {"embedding": True, "mlock": False}),
        (None, {"cont_batching": "False"}, None, {"cont_batching": False}),
        (None, {"flash_attn": True}, None, {"flash_attn": "on"}),
        (None, {"flash_attn": "AUTO"}, None, {"flash_attn": "auto"}),
        (None, {"cache_type": "q8_0"}, None, {"cache_type_k": "q8_0", "cache_type_v": "q8_0"}),
        (None, {"cache_type": "q8_0", "cache_type_v": "f16"}, None, {"cache_type_v": "f16"}),
        (None, {"extra_args": "--seed 7"}, None, {"extra_args": ["--seed", "7"]}),
        (
            None,
            {"llama_model_path": "x.gguf", "vision_model": False},
            None,
            {"vision_model": False},
        ),
        ({"binary": "/opt/llama-server"}, None, None, {"binary": "/opt/llama-server"}),
    ],
)
def test_merge_and_coerce(
    base: dict[str, Any] | None,
    model: dict[str, Any] | None,
    request_: dict[str, Any] | None,
    expected: dict[str, Any],
) -> None:
    merged = merge_engine_params(base, model, request_)
    for key, value in expected.items():
        assert merged[key] == value
    assert "cache_type" not in merged


def test_real_jan_settings_are_accepted() -> None:
    jan = {
        "ctx_len": 4096,
        "prompt_template": "<|user|>\n{prompt}<|end|>\n<|assistant|>\n",
        "llama_model_path": "Phi-3-mini-4k-instruct-q4.gguf",
        "ngl": 33,
    }
    assert merge_engine_params({}, jan, {}) == {**jan, "n_parallel": 1}


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        ({"ctx_lenn": 1}, "Did you mean 'ctx_len'?"),
        ({"gpu_layers": 1}, "Unknown engine parameter 'gpu_layers'"),
        ({"ctx_len": "lots"}, "'ctx_len' in models/foo/model.json engine_parameters must be an"),
        ({"ctx_len": 0}, "an integer from 1 to 16,777,216"),
        ({"ngl": True}, "'ngl'"),
        ({"embedding": "maybe"}, "true or false"),
        ({"flash_attn": "fast"}, "on, off, auto"),
        ({"cache_type_k": "q9"}, "one of f32, f16"),
        ({"extra_args": [1, 2]}, "a list of strings"),
        ({"prompt_template": 5}, "a string"),
    ],
)
def test_bad_parameters_name_the_parameter_and_file(layer: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        merge_engine_params(
            None, layer, None, model_source="models/foo/model.json engine_parameters"
        )
    assert fragment in info.value.message
    assert info.value.param == next(iter(layer))
    assert "models/foo/model.json" in info.value.message


def test_unknown_parameter_message_lists_known_names() -> None:
    with pytest.raises(InvalidParameter) as info:
        merge_engine_params(None, None, {"bogus": 1})
    assert "the request body" in info.value.message
    assert "ctx_len" in info.value.message and "ngl" in info.value.message


def test_layer_must_be_an_object() -> None:
    with pytest.raises(InvalidParameter, match="JSON object"):
        merge_engine_params(["ctx_len"], None, None)  # type: ignore[arg-type]


def _args(params: dict[str, Any], tmp_path: Path) -> list[str]:
    return build_server_args(
        merge_engine_params(None, params, None),
        model_path=tmp_path / "m.gguf",
        port=4321,
        alias="my-model",
        template_dir=tmp_path / "t",
    )


def test_server_args_minimal(tmp_path: Path) -> None:
    args = _args({}, tmp_path)
    assert args == [
        "-m", str(tmp_path / "m.gguf"), "--host", "127.0.0.1", "--port", "4321",
        "--alias", "my-model", "-c", "4096", "-np", "1", "--jinja",
    ]  # fmt: skip


def test_server_args_context_is_per_slot(tmp_path: Path) -> None:
    args = _args({"ctx_len": 2048, "n_parallel": 4}, tmp_path)
    assert args[args.index("-c") + 1] == "8192"
    assert args[args.index("-np") + 1] == "4"


def test_server_args_everything(tmp_path: Path) -> None:
    args = _args(
        {
            "ngl": 99,
            "embedding": True,
            "pooling": "last",
            "cpu_threads": 6,
            "cont_batching": False,
            "flash_attn": "off",
            "mmproj": "mmproj.gguf",
            "cache_type_k": "q8_0",
            "cache_type_v": "q4_0",
            "mlock": True,
            "extra_args": ["--seed", "1"],
        },
        tmp_path,
    )
    joined = " ".join(args)
    for part in (
        "-ngl 99",
        "--embedding",
        "--pooling last",
        "-t 6",
        "--no-cont-batching",
        "-fa off",
        f"--mmproj {tmp_path / 'mmproj.gguf'}",
        "-ctk q8_0",
        "-ctv q4_0",
        "--mlock",
    ):
        assert part in joined
    assert args[:2] == ["--seed", "1"]  # first: Hearth's own flags come later and win


def test_model_layers_cannot_name_a_program_or_unsafe_flags() -> None:
    for layer in ({"binary": "/bin/sh"}, {"extra_args": ["--host", "0.0.0.0"]}):
        with pytest.raises(InvalidParameter) as info:
            merge_engine_params(None, layer, None)
        assert info.value.code == "parameter_not_allowed"
        with pytest.raises(InvalidParameter):
            merge_engine_params(None, None, layer)  # a start request's body
    with pytest.raises(InvalidParameter, match=r"engine\.json"):
        merge_engine_params(None, {"extra_args": ["--log-file", "/tmp/x"]}, None)
    with pytest.raises(InvalidParameter, match="whole number"):
        merge_engine_params(None, {"extra_args": ["--seed", "$(id)"]}, None)
    for flag, value in (("--threads-http", "999999"), ("-ub", "100000000"), ("-b", "-5")):
        with pytest.raises(InvalidParameter, match="whole number from -1 to"):
            merge_engine_params(None, {"extra_args": [flag, value]}, None)
    for path in ("/etc/passwd", "../other/x.gguf", "a/../../x", "x\x00y"):
        with pytest.raises(InvalidParameter, match="inside the model's folder"):
            merge_engine_params(None, {"mmproj": path}, None)
    merged = merge_engine_params(None, {"extra_args": "--seed=3 --no-mmap -b 256"}, None)
    assert merged["extra_args"] == ["--seed=3", "--no-mmap", "-b", "256"]


def test_engine_json_may_name_a_binary_but_not_move_the_listener(tmp_path: Path) -> None:
    merged = merge_engine_params({"binary": "/opt/llama-server", "extra_args": ["--mlock"]}, {}, {})
    assert merged["binary"] == "/opt/llama-server"
    for flag in ("--host", "--port=9", "--api-key", "--path", "-a"):
        with pytest.raises(InvalidParameter, match="Hearth sets"):
            merge_engine_params({"extra_args": [flag, "x"]}, None, None)


def test_server_args_default_threads_are_left_to_the_engine(tmp_path: Path) -> None:
    assert "-t" not in _args({"cpu_threads": -1}, tmp_path)


def test_server_args_write_a_template_file_when_one_is_needed(tmp_path: Path) -> None:
    args = _args({"prompt_template": "<|user|>\n{prompt}<|end|>\n<|assistant|>\n"}, tmp_path)
    path = Path(args[args.index("--chat-template-file") + 1])
    assert path.parent == tmp_path / "t"
    assert "<|assistant|>" in path.read_text()
    own = _args({"chat_template": "{{ messages[0]['content'] }}"}, tmp_path)
    assert Path(own[own.index("--chat-template-file") + 1]).read_text() == (
        "{{ messages[0]['content'] }}"
    )


def test_redaction() -> None:
    cmd = ["llama-server", "--api-key", "sk-123", "--api-key-file=/k", "-m", "x", "--hf-token", "t"]
    assert redact_args(cmd) == [
        "llama-server", "--api-key", "***", "--api-key-file=***", "-m", "x", "--hf-token", "***",
    ]  # fmt: skip
    assert redact_env({"OPENAI_API_KEY": "sk", "PATH": "/bin"}) == {
        "OPENAI_API_KEY": "***",
        "PATH": "/bin",
    }
    assert redact_text("Authorization: Bearer abcdef; key sk-secret", ["sk-secret"]) == (
        "Authorization: Bearer ***; key ***"
    )


def test_log_ring_keeps_the_tail() -> None:
    ring = LogRing(capacity=10)
    ring.write(b"0123456789abc")
    assert ring.tail() == "3456789abc"
    assert ring.total == 13


# -- openai-compatible remote engine ------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "fragment", "param"),
    [
        ({}, "needs 'base_url'", "base_url"),
        ({"base_url": "ftp://x/v1"}, "http:// or https://", "base_url"),
        ({"base_url": "localhost:8080"}, "http:// or https://", "base_url"),
        ({"base_url": "https://x/v1", "api_key_env": "sk-abc-123"}, "environment", "api_key_env"),
        ({"base_url": "https://x/v1", "api_key": "k"}, "Unknown parameter 'api_key'", "api_key"),
        ({"base_url": "https://x/v1", "model": 3}, "upstream model name", "model"),
    ],
)
def test_remote_params_are_validated(params: dict[str, Any], fragment: str, param: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        RemoteEngine.from_params(params, model_id="gpt")
    assert fragment in info.value.message
    assert info.value.param == param


def test_remote_reads_the_key_at_request_time(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RemoteEngine.from_params(
        {"base_url": "https://api.example.com/v1/", "api_key_env": "HEARTH_T_KEY", "model": "up"},
        model_id="local-name",
    )
    assert engine.base_url == "https://api.example.com/v1"
    monkeypatch.delenv("HEARTH_T_KEY", raising=False)
    with pytest.raises(EngineError, match="HEARTH_T_KEY"):
        engine.headers()
    monkeypatch.setenv("HEARTH_T_KEY", "sk-first")
    assert engine.headers() == {"Authorization": "Bearer sk-first"}
    monkeypatch.setenv("HEARTH_T_KEY", "sk-second")
    assert engine.headers() == {"Authorization": "Bearer sk-second"}
    assert "sk-second" not in repr(vars(engine))
    assert engine.rewrite_body({"model": "local-name", "messages": []}) == {
        "model": "up",
        "messages": [],
    }


def test_remote_model_defaults_to_the_hearth_id() -> None:
    engine = RemoteEngine.from_params({"base_url": "http://127.0.0.1:9/v1"}, model_id="m1")
    assert engine.upstream_model == "m1"
    assert engine.headers() == {}
