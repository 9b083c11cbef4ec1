"""Jan prompt templates → Jinja chat templates, and the sandboxed renderer.

The real engine renders these templates too: see test_engine_process.py (/apply-template)."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from hearth.core.errors import InvalidParameter
from hearth.engines.templates import (
    UnsafeChatTemplate,
    jan_to_jinja,
    render_chat_template,
    trio_to_jinja,
)

CHATML = (
    "<|im_start|>system\n{system_message}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
PHI3 = "{system_message}\n<|user|>\n{prompt}<|end|>\n<|assistant|>"
PHI3_NO_SYSTEM = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n"
LLAMA2 = "[INST] {prompt} [/INST]"

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]


@pytest.mark.parametrize("template", [CHATML, PHI3, PHI3_NO_SYSTEM, LLAMA2])
def test_single_turn_matches_jans_substitution(template: str) -> None:
    messages = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q?"}]
    rendered = render_chat_template(jan_to_jinja(template), messages)
    if "{system_message}" in template:
        assert rendered == template.replace("{system_message}", "SYS").replace("{prompt}", "Q?")
    else:
        assert rendered == template.replace("{prompt}", "SYS\n\nQ?")


def test_chatml_multi_turn() -> None:
    rendered = render_chat_template(jan_to_jinja(CHATML), CHAT)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    )


def test_phi3_multi_turn_closes_assistant_turns() -> None:
    rendered = render_chat_template(jan_to_jinja(PHI3_NO_SYSTEM), CHAT)
    assert rendered == (
        "<|user|>\nBe brief.\n\nHi<|end|>\n<|assistant|>\nHello!<|end|>"
        "<|user|>\nBye<|end|>\n<|assistant|>\n"
    )


def test_llama2_multi_turn_uses_eos() -> None:
    rendered = render_chat_template(jan_to_jinja(LLAMA2), CHAT, eos_token="</s>")
    assert rendered == "[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Bye [/INST]"


def test_no_generation_prompt_and_no_system() -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    rendered = render_chat_template(jan_to_jinja(CHATML), messages, add_generation_prompt=False)
    assert rendered == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo"
    )


@pytest.mark.parametrize(
    "literal",
    ["{{ 7*7 }}", "{% if x %}", "{# c #}", "}} {{", '"quoted" \\ back', "{ json: 1 }", "ünï"],
)
def test_literal_braces_and_jinja_syntax_stay_literal(literal: str) -> None:
    template = f"<s>{literal}\n{{prompt}}\n{literal}</s>"
    rendered = render_chat_template(jan_to_jinja(template), [{"role": "user", "content": "x"}])
    assert rendered == template.replace("{prompt}", "x")


def test_trio() -> None:
    template = trio_to_jinja("### System:\n", "\n### User:\n", "\n### Assistant:\n")
    rendered = render_chat_template(template, CHAT[:2])
    assert rendered == "### System:\nBe brief.\n### User:\nHi\n### Assistant:\n"
    no_system = trio_to_jinja(None, "U: ", "\nA: ")
    assert render_chat_template(no_system, CHAT[:2]) == "U: Be brief.\n\nHi\nA: "


@pytest.mark.parametrize(
    "bad",
    ["no placeholder", "{prompt} {prompt}", "{prompt} {system_message}", "{system_message}x2"],
)
def test_bad_prompt_templates(bad: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        jan_to_jinja(bad)
    assert info.value.param == "prompt_template"


@pytest.mark.parametrize(
    "evil",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{% set l = [] %}{{ l.append(1) }}",  # the immutable sandbox refuses mutation
        "{{ raise_exception.__globals__ }}",
    ],
)
def test_sandbox_blocks_malicious_templates(evil: str) -> None:
    with pytest.raises(SecurityError) as info:
        render_chat_template(evil, [{"role": "user", "content": "hi"}])
    assert isinstance(info.value, UnsafeChatTemplate)
    assert isinstance(info.value, InvalidParameter)
    assert info.value.status == 400


def test_broken_template_is_an_invalid_parameter() -> None:
    with pytest.raises(InvalidParameter, match="failed to render"):
        render_chat_template("{% for %}", [])
    with pytest.raises(InvalidParameter, match="nope"):
        render_chat_template("{{ raise_exception('nope') }}", [])


def test_hf_style_template_renders() -> None:
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}{{ messages | tojson }}"
    )
    out = render_chat_template(template, CHAT[:2])
    assert out.startswith("<|system|>Be brief.\n<|user|>Hi\n<|assistant|>[{")
