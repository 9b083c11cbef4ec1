"""Jan's prompt templates → Jinja chat templates, and a sandboxed renderer for any template.

Jan (and nitro/cortex before it) describe a chat format as one string with two placeholders,
e.g. ``<|im_start|>system\\n{system_message}<|im_end|>\\n<|im_start|>user\\n{prompt}<|im_end|>
\\n<|im_start|>assistant``, or as a trio of role prefixes (`system_prompt`, `user_prompt`,
`ai_prompt`; note: in Jan these are *prefixes*, not the system message itself).

The conversion (the same split nitro used, so single-turn prompts are byte-identical to Jan's):

    template = SYS + "{system_message}" + USER + "{prompt}" + AI     (SYS part optional)

    rendered = SYS + <all system messages joined by a blank line>     (only if the template
             + USER + user₁ + AI + assistant₁ + TERM                    has {system_message})
             + USER + user₂ + AI ...                                   + AI   (generation prompt)

- Without ``{system_message}``, system messages are prepended to the first user message.
- TERM ends an assistant turn that is followed by more messages: the special token that AI
  starts with (``<|end|>`` for Phi-3), unless USER already starts with it (ChatML's
  ``<|im_end|>``); if AI starts with no special token, the model's ``eos_token`` (Llama-2).
- Everything outside the placeholders is literal: braces, ``{{``, ``{%`` and quotes in a Jan
  template are emitted as Jinja string literals split at every brace, so no engine's Jinja
  parser can read them as syntax.

Templates Hearth renders itself (this module's `render_chat_template`) run in Jinja's
`ImmutableSandboxedEnvironment`: a GGUF's chat template is untrusted input (CVE-2024-34359).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from hearth.core.errors import InvalidParameter

SYSTEM = "{system_message}"
PROMPT = "{prompt}"
_SPECIAL = re.compile(r"^(<[^<>\s]+>|\[/?[A-Z_]+\])")


# A chat template tried to reach Python internals: both a 400 and a Jinja SecurityError.
from hearth.core.errors import UnsafeChatTemplate  # noqa: E402  (one error tree: errors.py)


def _lit(text: str) -> str:
    """A Jinja expression for `text` that contains no brace inside any string literal."""
    pieces = [p for p in re.split(r"([{}])", text) if p]
    if not pieces:
        return '""'
    return " ~ ".join(json.dumps(p, ensure_ascii=False) for p in pieces)


def _term(user: str, ai: str) -> str:
    """Jinja code that closes an assistant turn (see the module docstring)."""
    match = _SPECIAL.match(ai)
    if match is None:
        return "{%- if eos_token is defined and eos_token -%}{{- eos_token -}}{%- endif -%}"
    token = match.group(1)
    return "" if user.lstrip().startswith(token) else "{{- " + _lit(token) + " -}}"


def _build(sys_prefix: str | None, user: str, ai: str) -> str:
    """The Jinja template; `sys_prefix` None means the format has no system slot."""
    content = '{%- if m["content"] -%}{{- m["content"] -}}{%- endif -%}'
    out = [
        '{%- set ns = namespace(system="", seen=false, last="") -%}',
        "{%- for m in messages -%}",
        '{%- if m["role"] == "system" and m["content"] -%}',
        '{%- if ns.system -%}{%- set ns.system = ns.system ~ "\\n\\n" -%}{%- endif -%}',
        '{%- set ns.system = ns.system ~ m["content"] -%}',
        "{%- endif -%}",
        "{%- endfor -%}",
    ]
    if sys_prefix is not None:
        out.append("{{- " + _lit(sys_prefix) + " ~ ns.system -}}")
    out += [
        "{%- for m in messages -%}",
        '{%- if m["role"] == "user" -%}',
        "{{- " + _lit(user) + " -}}",
    ]
    if sys_prefix is None:
        out.append('{%- if ns.system and not ns.seen -%}{{- ns.system ~ "\\n\\n" -}}{%- endif -%}')
    out += [
        "{%- set ns.seen = true -%}",
        content,
        '{%- set ns.last = "user" -%}',
        '{%- elif m["role"] == "assistant" -%}',
        "{{- " + _lit(ai) + " -}}",
        content,
        "{%- if not loop.last -%}" + _term(user, ai) + "{%- endif -%}",
        '{%- set ns.last = "assistant" -%}',
        "{%- endif -%}",
        "{%- endfor -%}",
        '{%- if add_generation_prompt and ns.last != "assistant" -%}',
        "{{- " + _lit(ai) + " -}}",
        "{%- endif -%}",
    ]
    return "".join(out)


def jan_to_jinja(prompt_template: str) -> str:
    """Convert Jan's `prompt_template` ({system_message}, {prompt}) to a Jinja chat template."""
    if prompt_template.count(PROMPT) != 1 or prompt_template.count(SYSTEM) > 1:
        raise InvalidParameter(
            f"prompt_template must contain '{PROMPT}' exactly once and '{SYSTEM}' at most once; "
            f'got {prompt_template!r}. Example: "<|user|>\\n{{prompt}}<|end|>\\n<|assistant|>".',
            param="prompt_template",
        )
    p = prompt_template.index(PROMPT)
    if SYSTEM not in prompt_template:
        return _build(None, prompt_template[:p], prompt_template[p + len(PROMPT) :])
    s = prompt_template.index(SYSTEM)
    if s > p:
        raise InvalidParameter(
            f"prompt_template has '{SYSTEM}' after '{PROMPT}'; put the system part first.",
            param="prompt_template",
        )
    return _build(
        prompt_template[:s],
        prompt_template[s + len(SYSTEM) : p],
        prompt_template[p + len(PROMPT) :],
    )


def trio_to_jinja(system_prompt: str | None, user_prompt: str | None, ai_prompt: str | None) -> str:
    """Convert Jan's role prefixes to a Jinja chat template (no system slot without one)."""
    return _build(system_prompt or None, user_prompt or "", ai_prompt or "")


def _raise(message: str) -> NoReturn:
    raise TemplateError(message)


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox renders a blocked attribute as an empty Undefined; we fail loudly, so a
    hostile template is reported instead of quietly producing a different prompt."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


_ENV = _StrictSandbox(trim_blocks=True, lstrip_blocks=True)
_ENV.globals["raise_exception"] = _raise
_ENV.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)


def render_chat_template(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str:
    """Render any chat template (a GGUF's, a user's) safely, with HF's conventions.

    Raises UnsafeChatTemplate (a jinja2 SecurityError) when the template reaches for Python
    internals, InvalidParameter for any other template error.
    """
    try:
        compiled = _ENV.from_string(template)
        return compiled.render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )
    except SecurityError as exc:
        raise UnsafeChatTemplate(
            f"The chat template tried an unsafe operation and was stopped ({exc}). "
            "Use a template from a trusted source.",
            param="chat_template",
        ) from exc
    except TemplateError as exc:
        raise InvalidParameter(
            f"The chat template failed to render: {exc}. Fix the template or remove it.",
            param="chat_template",
        ) from exc
