"""What a model can do, from what its files say: Ollama's `capabilities` list.

Ollama's clients (Open WebUI, editor plugins) read `capabilities` from /api/show to decide what
to offer: a chat box, an image button, a tool picker, a "think" toggle. The answer is derived
here once, purely, from facts Hearth already has (the GGUF header's architecture and chat
template, and the model's engine parameters), so the Ollama face, the CLI's `show` and the
tool-calling work all say the same thing:

    completion  the model generates text (every architecture but encoder-only embedders)
    embedding   `engine_parameters.embedding` is on, or the architecture only embeds
    vision      a projector is attached (`engine_parameters.mmproj`)
    tools       every model that generates text: through its template's own tool format when
                the template renders `tools` (llama.cpp then parses the calls), else through
                Hearth's tool prompt (`services/toolprompt.py`); `tool_format` says which
    thinking    the chat template knows a reasoning block (`<think>`, `enable_thinking`, ...)

The template checks are textual on purpose: rendering a stranger's template to find out would
execute it, and llama.cpp's own detection works on the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Architectures that only embed: no text generation, whatever the engine parameters say.
EMBEDDING_ARCHITECTURES = frozenset(
    {
        "bert",
        "nomic-bert",
        "nomic-bert-moe",
        "jina-bert-v2",
        "jina-bert-v3",
        "t5encoder",
        "modern-bert",
        "neo-bert",
        "gte",
        "xlm-roberta",
    }
)
ORDER = ("completion", "embedding", "vision", "tools", "thinking")
_TOOLS = re.compile(r"\btools\b|tool_call")
_THINKING = re.compile(r"<think>|enable_thinking|reasoning_content|\bthinking\b|<\|channel\|>")


def capabilities(
    *,
    architecture: str | None,
    chat_template: str | None,
    engine_parameters: Mapping[str, Any] | None = None,
) -> list[str]:
    """The capabilities, in Ollama's order, of a model with these facts."""
    params = engine_parameters or {}
    arch = (architecture or "").lower()
    template = chat_template or ""
    found: set[str] = set()
    if arch not in EMBEDDING_ARCHITECTURES:
        found.add("completion")
    if arch in EMBEDDING_ARCHITECTURES or _truthy(params.get("embedding")):
        found.add("embedding")
    mmproj = params.get("mmproj")
    if isinstance(mmproj, str) and mmproj:
        found.add("vision")
    if "completion" in found:
        found.add("tools")
    if "completion" in found and _THINKING.search(template):
        found.add("thinking")
    return [name for name in ORDER if name in found]


def shows_tools(chat_template: str | None) -> bool:
    """Whether a chat template renders `tools` itself (else Hearth's tool prompt shows them)."""
    return bool(_TOOLS.search(chat_template or ""))


def tool_format(caps: list[str], chat_template: str | None) -> str | None:
    """How a model with these capabilities is shown tools: "template" (its chat template's
    own format), "hearth" (Hearth's tool prompt), or None (it cannot call tools)."""
    if "tools" not in caps:
        return None
    return "template" if shows_tools(chat_template) else "hearth"


#: Jan's prompt formats: Hearth converts them to a chat template that has no place for tools.
_JAN_TEMPLATE_KEYS = ("prompt_template", "system_prompt", "user_prompt", "ai_prompt")


def effective_template(gguf_template: str | None, engine_parameters: Mapping[str, Any]) -> str:
    """The chat template the engine will use: the user's `engine_parameters.chat_template`,
    else the one converted from Jan's prompt format (no tools), else the GGUF's own."""
    override = engine_parameters.get("chat_template")
    if isinstance(override, str) and override:
        return override
    if any(engine_parameters.get(key) for key in _JAN_TEMPLATE_KEYS):
        return ""
    return gguf_template or ""


def record_capabilities(info: Any) -> list[str]:
    """The model record's `capabilities` (a `ModelInfo`), from what import recorded of the GGUF
    (`metadata.architecture`, `metadata.chat_template`) and the engine parameters: no file is
    read, so listing thousands of models stays a scan of their model.json files. A remote
    model answers what its upstream can: text, with tools passed through."""
    if info.is_remote:
        return ["completion", "tools"]
    meta = info.metadata if isinstance(info.metadata, Mapping) else {}
    arch = meta.get("architecture")
    return capabilities(
        architecture=arch if isinstance(arch, str) else None,
        chat_template=record_template(info),
        engine_parameters=info.engine_parameters,
    )


def record_template(info: Any) -> str:
    """The chat template the engine will use, from what import recorded (a `ModelInfo`)."""
    meta = info.metadata if isinstance(info.metadata, Mapping) else {}
    template = meta.get("chat_template")
    return effective_template(
        template if isinstance(template, str) else None, info.engine_parameters
    )


def _truthy(value: Any) -> bool:
    """model.json values may be written as strings (Jan's files): "true" counts as on."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
