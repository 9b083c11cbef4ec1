"""Ollama's inference requests and answers <-> OpenAI's, as pure functions (no I/O, no clock).

The engine speaks OpenAI's API; Ollama's clients speak Ollama's. This module is the whole
mapping, so it can be unit-tested without a server:

- requests: `chat_call` / `generate_call` / `embed_call` turn an Ollama body into the OpenAI
  body the engine gets, plus what Hearth itself acts on (`keep_alive`, `num_ctx`, `stream`);
- answers: `Reply` writes the engine's typed events (`engines/events`: the one parser of an
  answer) as Ollama's objects, a line per streamed chunk, the final one with Ollama's counters
  and durations taken from the engine's own `timings` (llama.cpp reports
  prompt_n/prompt_ms/predicted_n/predicted_ms).

Everything in a request is a stranger's data: only the documented options reach the engine
(`OPTIONS`), each type-checked; unknown options are ignored as Ollama ignores them; a wrong
type is a 400. Nothing becomes an engine flag except `num_ctx`, which the route bounds.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hearth.core.errors import InvalidParameter, InvalidRequest
from hearth.core.keepalive import keep_alive_param
from hearth.core.ollama_options import OLLAMA_OPTIONS
from hearth.engines.events import AnswerEvent, Failure, Gathered, ReasoningDelta, TextDelta

OPTIONS = OLLAMA_OPTIONS  # see hearth.core.ollama_options
ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_STOPS = 16
DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop", "content_filter": "stop"}
#: A string as JSON text (the documented encoder's own fast path for a str), and an object.
_string = json.JSONEncoder(ensure_ascii=False).encode
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_IMAGE_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lG", "image/gif"),
                ("UklGR", "image/webp"), ("Qk", "image/bmp"))  # fmt: skip


@dataclass
class Call:
    """One Ollama inference request, translated: where it goes and what Hearth does itself."""

    name: str  # the model as the client named it (echoed back in every answer)
    path: str  # "chat/completions", "completions" or "embeddings"
    body: dict[str, Any]
    stream: bool = True
    keep_alive: float | None = None
    num_ctx: int | None = None
    images: bool = False
    think: bool | str | None = None


# ---- small readers ------------------------------------------------------------------------


def rfc3339(seconds: float) -> str:
    """A unix time as RFC 3339 in UTC with microseconds, as Ollama writes `created_at`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def model_name(body: dict[str, Any]) -> str:
    """The model a body names (`model`, or Ollama's older `name`); 400 when missing. The body
    is a JSON object already (`jsonbody.loads_object`)."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("model is required", param="model")
    return name.strip()


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidParameter(f"'{key}' must be true or false.", param=key)
    return value


def _number(key: str, value: Any, kind: type) -> int | float:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if ok and kind is int and isinstance(value, float):
        ok = value.is_integer()
    if not ok or not math.isfinite(value):
        shown = json.dumps(value)[:60]
        want = "an integer" if kind is int else "a number"
        raise InvalidParameter(f"option '{key}' must be {want}; got {shown}.", param=key)
    return kind(value)  # type: ignore[no-any-return]


def options(raw: Any) -> tuple[dict[str, Any], int | None]:
    """Ollama's `options` -> (OpenAI body fields, num_ctx). Unknown keys are ignored (load-time
    options such as num_gpu or use_mmap mean nothing to a running engine)."""
    if raw is None:
        return {}, None
    if not isinstance(raw, dict):
        raise InvalidParameter("'options' must be a JSON object.", param="options")
    out: dict[str, Any] = {}
    num_ctx = None
    for key, value in raw.items():
        if value is None:
            continue
        if key == "stop":
            out["stop"] = _stops(value)
        elif key == "num_ctx":
            num_ctx = int(_number(key, value, int))
            if num_ctx < 1:
                raise InvalidParameter("option 'num_ctx' must be at least 1.", param="num_ctx")
        elif key in OPTIONS:
            name, kind = OPTIONS[key]
            number = _number(key, value, kind)
            if key == "num_predict" and number <= 0:
                continue  # Ollama's "no limit" (-1) and "fill the context" (-2)
            out[name] = number
    return out, num_ctx


def _stops(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidParameter("option 'stop' must be a string or a list of strings.", param="stop")
    return [s for s in stops if s][:MAX_STOPS]


def response_format(fmt: Any) -> dict[str, Any] | None:
    """Ollama's `format`: "json" (any JSON object) or a JSON schema -> OpenAI's response_format."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise InvalidParameter("'format' must be \"json\" or a JSON schema object.", param="format")


def image_part(data: Any) -> dict[str, Any]:
    """One base64 image -> an OpenAI image_url part with a data: URL (type from its magic)."""
    if not isinstance(data, str) or not data:
        raise InvalidParameter("each image must be a base64 string.", param="images")
    text = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        base64.b64decode(text[:64] + "=" * (-len(text[:64]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter("an image is not valid base64.", param="images") from None
    mime = next((m for magic, m in _IMAGE_MAGIC if text.startswith(magic)), "image/png")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{text}"}}


def _images(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidParameter("'images' must be a list of base64 strings.", param="images")
    return [image_part(item) for item in raw]


# ---- requests -----------------------------------------------------------------------------


def _common(body: dict[str, Any], call: Call) -> None:
    """What chat and generate share: options, format, keep_alive, stream, think."""
    fields, call.num_ctx = options(body.get("options"))
    call.body.update(fields)
    fmt = response_format(body.get("format"))
    if fmt is not None:
        call.body["response_format"] = fmt
    call.stream = _flag(body, "stream", True)
    call.body["stream"] = call.stream
    if call.stream:
        call.body["stream_options"] = {"include_usage": True}  # the final counters
    _since_0_12(body)
    if body.get("keep_alive") is not None:
        call.keep_alive = keep_alive_param(body["keep_alive"])
    think = body.get("think")
    if think is not None and not isinstance(think, bool | str):
        raise InvalidParameter("'think' must be true, false or a level.", param="think")
    call.think = think
    if isinstance(think, bool):
        call.body["chat_template_kwargs"] = {"enable_thinking": think}
    elif isinstance(think, str):
        call.body["chat_template_kwargs"] = {"enable_thinking": True, "reasoning_effort": think}


def _since_0_12(body: dict[str, Any]) -> None:
    """Fields Ollama added after 0.12 (see `manage.OLLAMA_API_VERSION`): `truncate` and
    `shift` are checked and need nothing more (Hearth never cuts a prompt or shifts the
    context); per-token `logprobs` are not written in Ollama's shape yet, so asking for them is
    refused rather than answered without them."""
    for key in ("truncate", "shift"):
        _flag(body, key, False)
    top = body.get("top_logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
        raise InvalidParameter("'top_logprobs' must be a whole number, 0 or more.",
                               param="top_logprobs")  # fmt: skip
    if _flag(body, "logprobs", False) or top:
        raise InvalidParameter(
            "Hearth's Ollama API does not return logprobs: ask /v1/chat/completions with "
            '"logprobs": true (and "top_logprobs") for them.',
            param="logprobs",
        )


def chat_call(body: dict[str, Any], model_id: str, system_prompt: str | None = None) -> Call:
    """POST /api/chat -> chat/completions. The model's recorded system prompt (SYSTEM of a
    created or pulled model) leads when the client sent no system message, as in Ollama."""
    name = model_name(body)
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise InvalidParameter("'messages' must be a list.", param="messages")
    converted = [_message(m, i) for i, m in enumerate(messages)]
    if system_prompt and converted and not any(m["role"] == "system" for m in converted):
        converted.insert(0, {"role": "system", "content": system_prompt})
    call = Call(name, "chat/completions", {"model": model_id, "messages": converted})
    call.images = any(isinstance(m.get("content"), list) for m in converted)
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise InvalidParameter("'tools' must be a list of objects.", param="tools")
        call.body["tools"] = tools
    _common(body, call)
    return call


def _message(raw: Any, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(raw, dict) or raw.get("role") not in ROLES:
        raise InvalidParameter(
            f"{where} must be an object with a 'role' of system, user, assistant or tool.",
            param=where,
        )
    content = raw.get("content") or ""
    if not isinstance(content, str):
        raise InvalidParameter(f"{where}.content must be a string.", param=where)
    out: dict[str, Any] = {"role": raw["role"], "content": content}
    parts = _images(raw.get("images"))
    if parts:
        out["content"] = [{"type": "text", "text": content}, *parts]
    if raw.get("tool_calls"):
        out["tool_calls"] = openai_tool_calls(raw["tool_calls"], where)
    if raw["role"] == "tool" and isinstance(raw.get("tool_name"), str):
        out["name"] = raw["tool_name"]
    if raw["role"] == "tool" and isinstance(raw.get("tool_call_id"), str):
        out["tool_call_id"] = raw["tool_call_id"]
    return out


def openai_tool_calls(raw: Any, where: str) -> list[dict[str, Any]]:
    """Ollama's tool calls (arguments as an object) -> OpenAI's (arguments as a JSON string)."""
    if not isinstance(raw, list):
        raise InvalidParameter(f"{where}.tool_calls must be a list.", param=where)
    calls = []
    for i, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidParameter(f"{where}.tool_calls[{i}] needs a function name.", param=where)
        arguments = function.get("arguments") or {}
        text = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call_id = item.get("id") if isinstance(item.get("id"), str) else f"call_{i}"
        calls.append({"id": call_id, "type": "function",
                      "function": {"name": function["name"], "arguments": text}})  # fmt: skip
    return calls


def generate_call(body: dict[str, Any], model_id: str, system_prompt: str | None = None) -> Call:
    """POST /api/generate -> chat/completions (the model's chat template applies, as Ollama's
    template does), or with `raw: true` -> completions with the prompt as it is. `template`,
    `context` and `suffix` are accepted and not used (see the README)."""
    name = model_name(body)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise InvalidParameter("'prompt' must be a string.", param="prompt")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        raise InvalidParameter("'system' must be a string.", param="system")
    parts = _images(body.get("images"))
    if _flag(body, "raw", False):
        call = Call(name, "completions", {"model": model_id, "prompt": prompt})
    else:
        messages: list[dict[str, Any]] = []
        if system or system_prompt:
            messages.append({"role": "system", "content": system or system_prompt})
        content: Any = [{"type": "text", "text": prompt}, *parts] if parts else prompt
        messages.append({"role": "user", "content": content})
        call = Call(name, "chat/completions", {"model": model_id, "messages": messages})
    call.images = bool(parts)
    _common(body, call)
    return call


def embed_inputs(body: dict[str, Any], *, legacy: bool) -> list[str]:
    """The texts of /api/embed (`input`: a string or a list) or /api/embeddings (`prompt`)."""
    raw = body.get("prompt") if legacy else body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        field_name = "prompt" if legacy else "input"
        raise InvalidParameter(
            f"'{field_name}' must be a string" + ("." if legacy else " or a list of strings."),
            param=field_name,
        )
    return texts


def normalized(vector: list[float], dimensions: int | None) -> list[float]:
    """A vector cut to `dimensions` (Ollama's truncation) and scaled to unit length again."""
    if not dimensions or dimensions >= len(vector):
        return vector
    cut = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in cut)) or 1.0
    return [x / norm for x in cut]


# ---- answers ------------------------------------------------------------------------------


def durations(
    timings: dict[str, Any], usage: dict[str, Any], *, total_ns: int, load_ns: int
) -> dict[str, int]:
    """Ollama's counters from llama.cpp's `timings` (else OpenAI's `usage`), in nanoseconds."""
    prompt_n = usage.get("prompt_tokens")
    if not isinstance(prompt_n, int):
        prompt_n = int(timings.get("prompt_n") or 0) + int(timings.get("cache_n") or 0)
    eval_n = timings.get("predicted_n")
    if not isinstance(eval_n, int):
        eval_n = int(usage.get("completion_tokens") or 0)
    prompt_ns = int(float(timings.get("prompt_ms") or 0) * 1e6)
    eval_ns = int(float(timings.get("predicted_ms") or 0) * 1e6)
    return {
        "total_duration": max(total_ns, prompt_ns + eval_ns + load_ns, 1),
        "load_duration": max(load_ns, 1),
        "prompt_eval_count": prompt_n,
        "prompt_eval_duration": prompt_ns,
        "eval_count": eval_n,
        "eval_duration": eval_ns,
    }


class Stamp:
    """`created_at` for a time in nanoseconds, as `rfc3339` writes it, cheaply: the date and time
    of day are formatted once per second, each line adds its microseconds."""

    __slots__ = ("_head", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._head = ""

    def __call__(self, ns: int) -> str:
        second, rest = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._head = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return f"{self._head}{rest // 1000:06d}Z"


class Reply:
    """One answer written in Ollama's shape from the engine's typed events (`engines/events`).

    Streamed, each engine chunk's events become one partial line (`partial`): its text (and
    thinking) written into bytes made once per answer, so a token costs one string encoding and
    one time stamp, never a dict or a full JSON encoding (the engine needs that CPU: see
    bench/bench_ollama_writer.py). Tool calls, counters and the finish reason are gathered
    (`Gathered`) for the final line (`final`). A whole answer is gathered with `add`."""

    __slots__ = ("_head", "_tail", "chat", "failed", "gathered", "name", "stamp")

    def __init__(self, name: str, *, chat: bool) -> None:
        self.name = name
        self.chat = chat  # /api/chat (a `message`) or /api/generate (a `response`)
        self.gathered = Gathered()
        self.stamp = Stamp()
        self.failed = False  # a Failure was written: nothing follows
        self._head = '{"model":' + _string(name) + ',"created_at":"'
        if chat:
            self._tail = ('","message":{"role":"assistant","content":', "}", ',"done":false}\n')
        else:
            self._tail = ('","response":', "", ',"done":false}\n')

    def partial(self, events: Sequence[AnswerEvent], now_ns: int) -> bytes | None:
        """One engine chunk's events -> Ollama's partial line, or None when they add no text
        (what they carry besides is gathered). A Failure becomes Ollama's error line."""
        if len(events) == 1:
            event = events[0]
            if type(event) is TextDelta and event.choice == 0:  # a token: the hot path
                before, close, after = self._tail
                return (
                    self._head + self.stamp(now_ns) + before + _string(event.text) + close + after
                ).encode("utf-8", "replace")
        return self._partial(events, now_ns)

    def _partial(self, events: Sequence[AnswerEvent], now_ns: int) -> bytes | None:
        text: list[str] = []
        thought: list[str] = []
        for event in events:
            if type(event) is TextDelta:
                if event.choice == 0:
                    text.append(event.text)
            elif type(event) is ReasoningDelta:
                if event.choice == 0:
                    thought.append(event.text)
            elif type(event) is Failure:
                self.failed = True
                return line({"error": event.message})
            else:
                self.gathered.add(event)
        if not text and not thought:
            return None
        before, close, after = self._tail
        written = self._head + self.stamp(now_ns) + before + _string("".join(text))
        if thought:
            written += ',"thinking":' + _string("".join(thought))
        return (written + close + after).encode("utf-8", "replace")

    def add(self, events: Iterable[AnswerEvent]) -> None:
        """Gather a whole answer's events (`EventReader().whole(response)`)."""
        for event in events:
            self.gathered.add(event)

    def final(self, now_ns: int, *, total_ns: int, load_ns: int, whole: bool) -> dict[str, Any]:
        """The last object: `done: true`, why, the counters; with the text when not streamed."""
        gathered = self.gathered
        text = gathered.text if whole else ""
        thought = gathered.reasoning if whole else ""
        out: dict[str, Any] = {"model": self.name, "created_at": self.stamp(now_ns)}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thought:
                message["thinking"] = thought
            if gathered.calls:
                message["tool_calls"] = [
                    ollama_tool_call({"function": {"name": c.name, "arguments": c.arguments}})
                    for c in gathered.tool_calls()
                ]
            out["message"] = message
        else:
            out["response"] = text
            if thought:
                out["thinking"] = thought
        out["done"] = True
        finish = gathered.finish or "stop"
        out["done_reason"] = DONE_REASONS.get(finish, finish)
        usage = gathered.usage.raw if gathered.usage is not None else {}
        timings = gathered.timings or {}
        out.update(durations(timings, usage, total_ns=total_ns, load_ns=load_ns))
        return out


def json_bytes(obj: dict[str, Any]) -> bytes:
    """An answer object as compact JSON bytes. Text that cannot be UTF-8 (a lone surrogate an
    upstream sent as an escape) is replaced by "?" rather than failing the answer."""
    return _json(obj).encode("utf-8", "replace")


def line(obj: dict[str, Any]) -> bytes:
    """One NDJSON line (`json_bytes` and a newline)."""
    return json_bytes(obj) + b"\n"


def ollama_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's tool call -> Ollama's (arguments parsed into an object; {} if not JSON)."""
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    return {"function": {"name": function.get("name") or "", "arguments": arguments}}
