"""Legacy text completions (`POST /v1/completions`) in the legacy shape.

llama.cpp answers `/v1/completions` with `chatcmpl-` ids and chat-style log probabilities
(`logprobs.content[]`), so clients of the legacy API (LangChain's `OpenAI`, lm-eval-harness,
the `openai` client's `completions.create`) find `tokens`, `token_logprobs`, `top_logprobs` and
`text_offset` all null. Each chunk is rewritten here: `cmpl-` ids, the legacy log probabilities
(`text_offset` counting characters from the start of the returned text, as vLLM does), and
`echo` (the prompt put in front of the text).

Chunks are rewritten in place rather than rebuilt from typed events: the legacy shape is the
engine's chunk with a few fields re-labelled, and the log probabilities it carries are no event
(rebuilding would lose them and re-serialise every token for nothing gathered).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

from hearth.core.errors import InvalidParameter
from hearth.engines.events import engine_error


def legacy_options(body: dict[str, Any]) -> tuple[str, bool]:
    """Take `echo` out of the body (the engine does not know it) and normalise `logprobs`;
    answer (the text to echo, whether top log probabilities are wanted)."""
    echo = body.pop("echo", False)
    logprobs = body.get("logprobs")
    if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int)):
        raise InvalidParameter(
            "logprobs is the number of most likely tokens to return for each position, an "
            "integer from 0 to 20 (or leave it out).",
            param="logprobs",
        )
    top_wanted = bool(logprobs)
    if logprobs == 0:
        body["logprobs"] = 1  # llama.cpp returns nothing for 0; OpenAI returns the chosen ones
    if not echo:
        return "", top_wanted
    prompt = body.get("prompt")
    if logprobs is not None or not isinstance(prompt, str):
        raise InvalidParameter(
            "echo works here with one text prompt and without logprobs (the engine does not "
            "score the prompt). Leave echo out and put the prompt in front yourself.",
            param="echo",
        )
    return prompt, top_wanted


def legacy_logprobs(
    logprobs: Mapping[str, Any], offset: int, *, top_wanted: bool
) -> tuple[dict[str, Any], int]:
    """llama.cpp's `{"content": [{token, logprob, top_logprobs}]}` as the legacy lists."""
    tokens: list[str] = []
    token_logprobs: list[Any] = []
    top: list[dict[str, Any]] = []
    offsets: list[int] = []
    for item in logprobs.get("content") or []:
        if not isinstance(item, dict):
            continue
        token = str(item.get("token", ""))
        tokens.append(token)
        token_logprobs.append(item.get("logprob"))
        alternatives = item.get("top_logprobs") if top_wanted else None
        top.append({str(a.get("token")): a.get("logprob") for a in alternatives or []})
        offsets.append(offset)
        offset += len(token)
    legacy = {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top,
              "text_offset": offsets}  # fmt: skip
    return legacy, offset


class LegacyShape:
    """Rewrites one answer's chunks (or its whole body) in the legacy shape."""

    def __init__(self, echo: str, *, top_wanted: bool) -> None:
        self.echo = echo
        self.top_wanted = top_wanted
        self._offsets: dict[int, int] = {}
        self._echoed: set[int] = set()

    def rewrite(self, chunk: dict[str, Any]) -> dict[str, Any]:
        ident = chunk.get("id")
        if isinstance(ident, str) and ident.startswith("chatcmpl-"):
            chunk["id"] = "cmpl-" + ident[len("chatcmpl-") :]
        chunk["object"] = "text_completion"
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                self._choice(choice)
        return chunk

    def _choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        if self.echo and index not in self._echoed:
            self._echoed.add(index)
            choice["text"] = self.echo + str(choice.get("text") or "")
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and "content" in logprobs:
            start = self._offsets.get(index, 0)
            choice["logprobs"], self._offsets[index] = legacy_logprobs(
                logprobs, start, top_wanted=self.top_wanted
            )


async def legacy_stream(
    chunks: AsyncGenerator[dict[str, Any], None], shape: LegacyShape
) -> AsyncGenerator[dict[str, Any], None]:
    async for chunk in chunks:
        yield chunk if engine_error(chunk) is not None else shape.rewrite(chunk)


def merge_prompts(answers: list[Any]) -> dict[str, Any]:
    """llama.cpp's answers to a list of prompts (one object each) as OpenAI's one answer:
    a choice per prompt, in order, and the usage of all."""
    objects = [a for a in answers if isinstance(a, dict)]
    if not objects:
        return {"object": "text_completion", "choices": []}
    merged = dict(objects[0])
    merged["choices"] = []
    totals: dict[str, int] = {}
    for i, answer in enumerate(objects):
        for choice in answer.get("choices") or []:
            if isinstance(choice, dict):
                merged["choices"].append({**choice, "index": i})
        usage = answer.get("usage")
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(key) if isinstance(usage, dict) else None
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
    if totals:
        merged["usage"] = totals
    merged.pop("timings", None)
    return merged
