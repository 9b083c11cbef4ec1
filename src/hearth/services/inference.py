"""Inference requests: the byte pass-through, and what Hearth adds where the engine falls short.

A plain request goes to the engine untouched and its answer comes back byte for byte (the hot
path, `engines/proxy.py`). Only a request that needs more is looked at more closely:

- checks the engine would get wrong: an image for a model without a vision projector (llama.cpp
  answers 500), `dimensions` it cannot honour (silently ignored);
- `tool_choice` "required" or a named function, enforced (`toolcalls.py`);
- `tools` for a template that cannot show them (llama.cpp would drop them silently): Hearth's
  own tool prompt (`toolprompt.py`), "auto" included (`toolauto.py`);
- `n` > 1 (`choices.py`), and legacy completions in the legacy shape (`legacy.py`).

Remote engines (OpenAI-compatible upstreams) do all of this themselves: their requests pass
through as they are.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from hearth.core.errors import InvalidParameter
from hearth.engines.events import engine_chunks
from hearth.engines.proxy import GENERATION, Answer
from hearth.models.capabilities import effective_template, shows_tools
from hearth.models.facts import Facts, facts_off_loop, model_capabilities
from hearth.models.store import ModelEntry
from hearth.services import schema_limits, toolauto, toolcalls, toolprompt
from hearth.services.choices import choice_count, include_usage, open_choices
from hearth.services.composed import Composed, as_events, checked, dumps, once
from hearth.services.legacy import LegacyShape, legacy_options, legacy_stream, merge_prompts

if TYPE_CHECKING:
    from hearth.engines.manager import EngineManager
    from hearth.models.store import ModelStore

IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def needs_a_look(path: str, body: Mapping[str, Any]) -> bool:
    """Whether a request may need more than the pass-through (cheap: no model lookup)."""
    if path == "chat/completions":
        many = "n" in body and not (type(body["n"]) is int and body["n"] == 1)
        return "tools" in body or many or _has_images(body.get("messages"))
    return path == "completions" or (path == "embeddings" and "dimensions" in body)


def _has_images(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in IMAGE_PARTS:
                    return True
    return False


class Inference:
    """Opens inference requests for one store and its engines."""

    def __init__(self, store: ModelStore, engines: EngineManager) -> None:
        self.store = store
        self.engines = engines

    async def open(self, path: str, body: dict[str, Any], keep_alive: float | None) -> Answer:
        """The engine's answer to `body`, passed through or composed (see the module)."""
        if path in GENERATION:
            schema_limits.check_request(body)  # for every engine: a cost bound, not a feature
        if not needs_a_look(path, body):
            return await self.engines.open(path, body, keep_alive)
        entry = await asyncio.to_thread(self.store.get, str(body["model"]))  # a folder read
        if entry.info is None or entry.info.is_remote:
            return await self.engines.open(path, body, keep_alive)  # its errors, or upstream's
        self._check(entry, await facts_off_loop(entry), path, body)
        n = choice_count(body) if path != "embeddings" else 1
        if n > 1:

            async def one(choice: dict[str, Any]) -> Answer:
                return await self._open_one(entry, path, choice, keep_alive)

            seed = entry.info.model_parameters.get("seed")
            return await open_choices(one, body, n, model=entry.id, default_seed=seed)
        return await self._open_one(entry, path, body, keep_alive)

    async def _open_one(
        self, entry: ModelEntry, path: str, body: dict[str, Any], keep_alive: float | None
    ) -> Answer:
        if path == "completions":
            return await self._legacy(entry, body, keep_alive)
        if path == "chat/completions" and body.get("tools"):
            tools = toolcalls.function_tools(body)
            forced = toolcalls.forced_tools(body, tools)
            template = await self._template(entry)
            own = shows_tools(template)  # else Hearth's own tool prompt (`toolprompt.py`)
            if forced:
                return await self._forced_call(entry, body, forced, template, keep_alive)
            if not own:
                return await self._auto_call(entry, body, tools, keep_alive)
        return await self.engines.open(path, body, keep_alive)

    # ---- checks ------------------------------------------------------------------------------

    def _check(self, entry: ModelEntry, fact: Facts, path: str, body: dict[str, Any]) -> None:
        """Refuse, before anything loads, what this model cannot do. Also takes out of `body`
        what the engine must not see: `dimensions` once checked, tools with `tool_choice`
        "none" on a template that cannot show them."""
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):  # the engine reads 1 as false
            raise InvalidParameter("stream must be true or false.", param="stream")
        if path == "embeddings":
            self._check_dimensions(entry, fact, body)
            return
        if path != "chat/completions":
            return
        caps = model_capabilities(entry, fact)
        if "vision" not in caps and _has_images(body.get("messages")):
            raise InvalidParameter(
                f"Model '{entry.id}' cannot read images: it has no vision projector. Attach "
                "one with engine_parameters.mmproj (the model's mmproj-*.gguf, in its folder), "
                "e.g. `hearth models edit "
                f"{entry.id} engine_parameters.mmproj=mmproj.gguf`, or send text only.",
                param="messages",
                code="images_not_supported",
            )
        if body.get("tools") and body.get("tool_choice") == "none":  # no call wanted
            params = entry.info.engine_parameters if entry.info is not None else {}
            if not shows_tools(effective_template(fact.chat_template, params)):  # moot tools
                body.pop("tools")
                body.pop("tool_choice")

    def _check_dimensions(self, entry: ModelEntry, fact: Facts, body: dict[str, Any]) -> None:
        """`dimensions` is honoured when it is the model's own size; shortening embeddings
        is only meaningful for models trained for it, which a GGUF does not say."""
        wanted = body.pop("dimensions")
        size = fact.embedding_length
        if wanted is None or (size is not None and wanted == size):
            return
        own = f"its embeddings have {size} dimensions" if size else "its size is unknown"
        raise InvalidParameter(
            f"Model '{entry.id}' cannot shorten its embeddings to dimensions={wanted!r}: {own}. "
            "Leave dimensions out (or set it to the model's own size).",
            param="dimensions",
            code="dimensions_not_supported",
        )

    # ---- answers Hearth composes ------------------------------------------------------------

    async def _legacy(
        self, entry: ModelEntry, body: dict[str, Any], keep_alive: float | None
    ) -> Answer:
        echo, top_wanted = legacy_options(body)
        shape = LegacyShape(echo, top_wanted=top_wanted)
        answer = await checked(await self.engines.open("completions", body, keep_alive), entry.id)
        if answer.is_event_stream:
            chunks = legacy_stream(engine_chunks(answer.stream()), shape)
            return Composed(as_events(chunks), event_stream=True, under=[answer])
        whole = json.loads(await answer.read())
        if isinstance(whole, list):  # several prompts: llama.cpp answers one object each
            whole = merge_prompts(whole)
        return Composed(once(dumps(shape.rewrite(whole))), event_stream=False, under=[answer])

    async def _template(self, entry: ModelEntry) -> str:
        """The chat template the engine uses for this model."""
        assert entry.info is not None
        fact = await facts_off_loop(entry)  # cached by now: the checks read it
        return effective_template(fact.chat_template, entry.info.engine_parameters)

    async def _forced_call(
        self,
        entry: ModelEntry,
        body: dict[str, Any],
        tools: list[dict[str, Any]],
        template: str,
        keep_alive: float | None,
    ) -> Answer:
        """A call the model must make: the prompt rendered with the tools (by the model's
        template, else in Hearth's tool prompt), then continued under the call's JSON schema
        (see `toolcalls.py`)."""
        name = tools[0]["function"]["name"] if len(tools) == 1 else None
        if shows_tools(template):
            prompt = await self._render(entry, body, keep_alive)
        else:
            prompt = await self._render(entry, body, keep_alive, hearth=True)
            template = toolprompt.CALL_SHAPE  # the call in Hearth's format
        request = _completion_request(body, prompt + toolcalls.call_prefix(template, name))
        request["json_schema"] = (
            toolcalls.arguments_schema(tools[0]) if name else toolcalls.call_schema(tools)
        )
        opened = await self.engines.open(
            "completions", request, keep_alive, route_by=_conversation(body)
        )
        answer = await checked(opened, entry.id)
        reader = toolcalls.CallReader(name)
        if not body.get("stream"):
            whole = toolcalls.whole_answer(json.loads(await answer.read()), reader)
            return Composed(once(dumps(whole)), event_stream=False, under=[answer])
        usage = include_usage(body)
        events = engine_chunks(answer.stream())
        chunks = toolcalls.stream_answer(events, reader, include_usage=usage)
        return Composed(as_events(chunks), event_stream=True, under=[answer])

    async def _auto_call(
        self,
        entry: ModelEntry,
        body: dict[str, Any],
        tools: list[dict[str, Any]],
        keep_alive: float | None,
    ) -> Answer:
        """Hearth's tool prompt with "auto": free text, and a call if the model writes the
        call's opener (see `toolauto.py`)."""
        prompt = await self._render(entry, body, keep_alive, hearth=True)
        request = _completion_request(body, prompt)
        request["stream"] = request["timings_per_token"] = True  # counts, even if cut short
        if "stop" in body:  # the text's stop words (not the call's)
            request["stop"] = body["stop"]
        else:
            del request["stop"]  # the model's own stop words, as for a chat request
        route = _conversation(body)
        first = await checked(
            await self.engines.open("completions", request, keep_alive, route_by=route), entry.id
        )

        async def open_call(text: str, written: int) -> Answer:
            prefix = toolcalls.call_prefix(toolprompt.CALL_SHAPE, None)
            call = _completion_request(body, prompt + text + prefix)
            call["stream"] = True
            call["json_schema"] = toolcalls.call_schema(tools)
            if isinstance(call.get("max_tokens"), int):  # the turn's bound: text and call
                call["max_tokens"] = max(1, call["max_tokens"] - written)
            opened = await self.engines.open("completions", call, keep_alive, route_by=route)
            return await checked(opened, entry.id)

        def chunks(answer: Answer) -> AsyncGenerator[dict[str, Any], None]:
            return engine_chunks(answer.stream())

        wanted = bool(body.get("stream"))
        usage = include_usage(body) or not wanted
        out = toolauto.auto_chunks(first, chunks, open_call, include_usage=usage)
        if wanted:
            return Composed(as_events(out), event_stream=True, under=[first])
        try:
            whole = await toolauto.whole(out)
        finally:
            await first.close()
        return Composed(once(dumps(whole)), event_stream=False, under=[])

    async def _render(
        self,
        entry: ModelEntry,
        body: dict[str, Any],
        keep_alive: float | None,
        *,
        hearth: bool = False,
    ) -> str:
        """The prompt the engine's template makes of the conversation and its tools; with
        `hearth`, of the conversation with the tools in Hearth's tool prompt (messages only)."""
        keys = ("model", "messages", "chat_template_kwargs") + (() if hearth else ("tools",))
        request = {k: body[k] for k in keys if k in body}
        if hearth:
            messages = body.get("messages")
            if not isinstance(messages, list):
                raise InvalidParameter('"messages" must be a list of messages.', param="messages")
            request["messages"] = toolprompt.conversation(messages, body["tools"])
        opened = await self.engines.open(
            "/apply-template", request, keep_alive, route_by=_conversation(body)
        )
        answer = await checked(opened, entry.id)
        rendered = json.loads(await answer.read())
        prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
        if not isinstance(prompt, str):
            raise InvalidParameter(
                f"The engine of model '{entry.id}' could not render the tools into its prompt.",
                param="tools",
            )
        return prompt


def _conversation(body: Mapping[str, Any]) -> dict[str, Any]:
    """What every engine request Hearth composes from one chat is routed by: the chat's own
    messages, so each lands on the replica holding its earlier turns (`engines/replicas.py`),
    as a plain turn of the same conversation does (a rewritten prompt would look new)."""
    return {"messages": body.get("messages")}


def _completion_request(body: Mapping[str, Any], prompt: str) -> dict[str, Any]:
    """A `/v1/completions` body continuing `prompt` with the chat request's sampling options
    (no stop words, not even the model's default: they could cut a call)."""
    request = {k: v for k, v in body.items() if k not in toolcalls.NOT_FORWARDED}
    if "max_completion_tokens" in body and "max_tokens" not in body:
        request["max_tokens"] = body["max_completion_tokens"]
    request["prompt"] = prompt
    request["stop"] = []
    return request
