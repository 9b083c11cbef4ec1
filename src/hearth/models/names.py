"""Ollama model names (`llama3.2`, `qwen2.5:0.5b`, `ollama.com/OWNER/NAME:TAG`) and Hearth ids.

People type the names every tutorial uses; Hearth keeps its own id grammar (`ids.py`: letters,
digits, `.`, `_`, `-`), so a name maps to an id by one pure rule, shared by `hearth pull` and the
Ollama-compatible API:

    llama3.2            -> llama3.2           (the tag `latest` is left out)
    llama3.2:latest     -> llama3.2
    qwen2.5:0.5b        -> qwen2.5-0.5b       (`:` becomes `-`)
    ollama.com/jo/tool:7b -> jo-tool-7b       (a user namespace is kept, joined by `-`)

Which text is an Ollama name at all (the disambiguation against Hugging Face references):

- `ollama://...`, `ollama.com/...`, `registry.ollama.ai/...` (with or without `https://`) always
  mean Ollama: `[library/]NAME[:TAG]` or `OWNER/NAME[:TAG]`;
- a bare `NAME[:TAG]` (no `/`, no scheme) means Ollama's library, unless it is a model id in the
  home already or a local file (the caller checks those first);
- `OWNER/REPO[:QUANT]` without a prefix stays a Hugging Face reference, as it always was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hearth.core.errors import InvalidRequest
from hearth.models.ids import MAX_ID_LENGTH, validate_model_id

LIBRARY = "library"
DEFAULT_TAG = "latest"
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9_])?"  # Ollama's name parts, 1-80 chars
_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"  # the OCI tag grammar
_NAME_RE = re.compile(rf"(?:(?P<ns>{_PART})/)?(?P<name>{_PART})(?::(?P<tag>{_TAG}))?")
_PREFIX_RE = re.compile(
    r"^(?:ollama://|(?:https?://)?(?:www\.)?(?:ollama\.com|registry\.ollama\.ai)/)", re.IGNORECASE
)
_BAD_ID_RUN = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class OllamaRef:
    """One model in an Ollama registry. `explicit`: written with an Ollama prefix."""

    namespace: str
    name: str
    tag: str = DEFAULT_TAG
    explicit: bool = False

    @property
    def repository(self) -> str:
        """The registry path: `library/llama3.2` or `OWNER/NAME`."""
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        shown = self.name if self.namespace == LIBRARY else self.repository
        return f"{shown}:{self.tag}"


def parse_ollama_ref(text: str) -> OllamaRef | None:
    """`NAME[:TAG]`, or with an Ollama prefix also `OWNER/NAME[:TAG]`; None for anything else.

    Names and namespaces are lower-cased (the registry's own spelling); tags keep their case
    (`q4_K_M` tags exist). A name ending in `.gguf` is a file, never a model name.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    prefix = _PREFIX_RE.match(text)
    explicit = prefix is not None
    rest = text[prefix.end() :] if prefix else text
    match = _NAME_RE.fullmatch(rest)
    if match is None or ".." in rest:
        return None
    namespace = match["ns"]
    if namespace is not None and not explicit:
        return None  # OWNER/REPO without a prefix is a Hugging Face reference
    name = match["name"].lower()
    if name.endswith(".gguf"):
        return None
    return OllamaRef((namespace or LIBRARY).lower(), name, match["tag"] or DEFAULT_TAG, explicit)


def ollama_model_id(reference: str | OllamaRef) -> str:
    """The Hearth model id for an Ollama name: `x:latest` -> `x`, `qwen2.5:0.5b` -> `qwen2.5-0.5b`.

    Lower-case; `:` and `/` (and anything else outside the id grammar) become `-`; at most 128
    characters. Raises InvalidRequest when `reference` is not an Ollama name.
    """
    ref = parse_ollama_ref(reference) if isinstance(reference, str) else reference
    if ref is None:
        raise InvalidRequest(
            f"{str(reference)[:80]!r} is not an Ollama model name (NAME[:TAG], or "
            "ollama.com/OWNER/NAME[:TAG]).",
            param="source",
        )
    parts = [ref.name] if ref.namespace == LIBRARY else [ref.namespace, ref.name]
    if ref.tag.lower() != DEFAULT_TAG:
        parts.append(ref.tag)
    candidate = _BAD_ID_RUN.sub("-", "-".join(parts).lower())
    candidate = re.sub(r"-{2,}", "-", candidate).strip("-.")
    candidate = candidate[:MAX_ID_LENGTH].rstrip("-.")
    return validate_model_id(candidate or "model")
