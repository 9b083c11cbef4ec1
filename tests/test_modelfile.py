"""The Modelfile parser (`hearth create -f`): Ollama's common subset, and clear errors by line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.core.modelfile_text import quote, quote_parameter
from hearth.models.modelfile import ModelfileError, is_path, parse

FULL = '''# A pirate, from a local file
FROM ./weights/model.gguf

PARAMETER temperature 0.7
PARAMETER num_ctx 4096
parameter top_k 40
PARAMETER top_p 0.9
PARAMETER min_p 0.05
PARAMETER repeat_penalty 1.1
PARAMETER presence_penalty 0.5
PARAMETER frequency_penalty -0.5
PARAMETER seed 42
PARAMETER num_predict 128
PARAMETER stop "<|im_end|>"
PARAMETER stop </s>

SYSTEM """You are a pirate.
Answer in "pirate" speak.
"""
TEMPLATE """{{ if .System }}<|system|>{{ .System }}{{ end }}{{ .Prompt }}"""
LICENSE """MIT License

Copyright (c) someone"""
LICENSE Apache-2.0
MESSAGE user Who are you?
MESSAGE assistant """Arr,
a pirate."""
'''


def test_a_full_modelfile() -> None:
    mf = parse(FULL, Path("/work/models"))
    assert mf.source == "./weights/model.gguf"
    assert mf.path == Path("/work/models/weights/model.gguf")
    assert mf.parameters == {
        "temperature": 0.7,
        "num_ctx": 4096,
        "top_k": 40,
        "top_p": 0.9,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 42,
        "num_predict": 128,
        "stop": ["<|im_end|>", "</s>"],
    }
    assert isinstance(mf.parameters["num_ctx"], int) and isinstance(mf.parameters["top_p"], float)
    assert mf.system == 'You are a pirate.\nAnswer in "pirate" speak.'
    assert mf.template == "{{ if .System }}<|system|>{{ .System }}{{ end }}{{ .Prompt }}"
    assert mf.license == ["MIT License\n\nCopyright (c) someone", "Apache-2.0"]
    assert mf.messages == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "Arr,\na pirate."},
    ]


def test_from_a_model_name_and_the_create_body() -> None:
    mf = parse('from qwen2.5:0.5b\nsystem "Be brief."\nPARAMETER num_ctx 2048\n')
    assert mf.source == "qwen2.5:0.5b" and mf.path is None
    assert mf.create_body("brief") == {
        "model": "brief",
        "from": "qwen2.5:0.5b",
        "stream": False,
        "system": "Be brief.",
        "parameters": {"num_ctx": 2048},
    }
    assert parse("FROM smol").create_body("x") == {"model": "x", "from": "smol", "stream": False}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/abs/m.gguf", Path("/abs/m.gguf")),
        ("m.GGUF", Path("/here/m.GGUF")),
        ("../up/m.gguf", Path("/up/m.gguf")),
        ("./sub/../m.gguf", Path("/here/m.gguf")),
    ],
)
def test_from_paths_are_relative_to_the_modelfile(source: str, expected: Path) -> None:
    assert parse(f"FROM {source}", Path("/here")).path == expected


def test_home_relative_paths_and_names_that_are_not_paths() -> None:
    assert parse("FROM ~/m.gguf").path == Path.home() / "m.gguf"
    for name in ("llama3.2", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "x:latest"):
        assert not is_path(name), name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nADAPTER ./lora.gguf", "line 2: ADAPTER"),
        ("FROM x\n\nPARAMETER num_gpu 2", "line 3: unknown parameter 'num_gpu'"),
        ("FROM x\nPARAMETER num_ctx big", "line 2: PARAMETER num_ctx must be a whole number"),
        ("FROM x\nPARAMETER temperature hot", "must be a number, not 'hot'"),
        ("FROM x\nPARAMETER temperature", "line 2: PARAMETER temperature needs a value"),
        ("FROM x\nPARAMETER", "line 2: PARAMETER needs a name"),
        ("FROM x\nQUANTIZE q4", "line 2: unknown instruction QUANTIZE"),
        ("FROM x\nFROM y", "line 2: a second FROM"),
        ("FROM", "line 1: FROM needs"),
        ("# only a comment\nSYSTEM hi", "no FROM line"),
        ('FROM x\nSYSTEM """never closed\nstill open', 'line 2: a """ value is never closed'),
        ('FROM x\nSYSTEM """a\nb""" trailing', 'line 3: text after the closing """'),
        ("FROM x\nMESSAGE robot hello", "line 2: MESSAGE needs a role"),
        ("FROM x\n!!!", "line 2: expected an instruction"),
    ],
)
def test_mistakes_name_their_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse(text)
    assert message in caught.value.message
    assert caught.value.status == 400


def test_adapter_is_refused_with_a_way_forward() -> None:
    with pytest.raises(ModelfileError, match="not supported") as caught:
        parse("FROM x\nADAPTER ./lora.gguf")
    assert "FROM" in caught.value.message


def test_comments_blank_lines_and_a_template_kept_verbatim() -> None:
    text = 'FROM x\n  # indented comment\n\nTEMPLATE """\n{{ .Prompt }}\n  # not a comment\n"""\n'
    mf = parse(text)
    assert mf.template == "{{ .Prompt }}\n  # not a comment"
    assert mf.system is None and mf.parameters == {} and mf.license == []


def test_a_single_line_triple_quoted_value_and_windows_line_ends() -> None:
    mf = parse('FROM x\r\nSYSTEM """one line"""\r\nPARAMETER stop "a b"\r\n')
    assert mf.system == "one line" and mf.parameters == {"stop": ["a b"]}


# ---- writing: `quote` (what /api/show's Modelfile holds) reads back exactly -----------------

BREAKOUTS = [
    '"""\nFROM /etc/passwd\nPARAMETER num_ctx 1\nSYSTEM """owned',
    'Be nice."""\nADAPTER /tmp/evil.bin\n"""',
    'ends in a quote"',
    '"starts with one',
    '""""',
    "\nFROM leading newline",
    "trailing newline\nFROM x\n",
    "first line ends in spaces   \nsecond",
    "windows\r\nFROM line\r\nends",
    "other breaks\u2028FROM a\x85FROM b\x0bFROM c\x1cFROM d",
    'a JSON-looking value: "\\n" and C:\\new\\table and \\"',
    "",
    "# a comment?\nPARAMETER stop x",
]


@pytest.mark.parametrize("text", BREAKOUTS)
def test_quoted_values_read_back_exactly_and_add_no_instruction(text: str) -> None:
    """A `\"\"\"` inside a system prompt once ended the value and let the rest be read as new
    instructions (issue 22): every value `quote` writes reads back as the very text."""
    written = f"FROM base\nSYSTEM {quote(text)}\nTEMPLATE {quote(text)}\nLICENSE {quote(text)}\n"
    mf = parse(written)
    assert (mf.source, mf.path, mf.system, mf.template) == ("base", None, text, text)
    assert mf.license == [text] and mf.parameters == {} and mf.messages == []


@pytest.mark.parametrize("text", [t for t in BREAKOUTS if t.strip()])
def test_quoted_stop_strings_and_paths_read_back_exactly(text: str) -> None:
    mf = parse(f"FROM {quote('/m/' + text, bare=True)}\nPARAMETER stop {quote_parameter(text)}\n")
    assert mf.parameters == {"stop": [text]}
    assert mf.source == ("/m/" + text).strip()


def test_plain_values_are_written_as_ollama_writes_them() -> None:
    assert quote("You are a pirate.\nSpeak so.") == '"""You are a pirate.\nSpeak so."""'
    assert quote_parameter("<|im_end|>") == '"<|im_end|>"'
    assert quote("<|im_end|>", bare=True) == "<|im_end|>"
    assert quote("/home/me/model.gguf", bare=True) == "/home/me/model.gguf"


@given(st.text())
def test_any_text_reads_back_exactly(text: str) -> None:
    mf = parse(f"FROM base\nSYSTEM {quote(text)}\nTEMPLATE {quote(text)}\n")
    assert mf.system == text and mf.template == text and mf.parameters == {}


@given(st.text().filter(str.strip))
def test_any_stop_string_reads_back_exactly(text: str) -> None:
    assert parse(f"FROM base\nPARAMETER stop {quote_parameter(text)}\n").parameters == {
        "stop": [text]
    }
