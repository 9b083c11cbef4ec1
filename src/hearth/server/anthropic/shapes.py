"""The shapes Hearth writes in Anthropic's dialect: a Message, its content blocks and the stream
events (Anthropic's Messages API reference). Typed so the writer's mistakes are mypy's; at run
time they are plain dicts, written as literals (no cost per token)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]  # the model's arguments, an object (see translate.parse_input)


ContentBlock = TextBlock | ToolUseBlock


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int


class Message(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None
    usage: Usage


class MessageStart(TypedDict):
    type: Literal["message_start"]
    message: Message


class Ping(TypedDict):
    type: Literal["ping"]


class ContentBlockStart(TypedDict):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class TextDelta(TypedDict):
    type: Literal["text_delta"]
    text: str


class InputJsonDelta(TypedDict):
    type: Literal["input_json_delta"]
    partial_json: str


class ContentBlockDelta(TypedDict):
    type: Literal["content_block_delta"]
    index: int
    delta: TextDelta | InputJsonDelta


class ContentBlockStop(TypedDict):
    type: Literal["content_block_stop"]
    index: int


class StopDelta(TypedDict):
    stop_reason: str
    stop_sequence: str | None


class MessageDelta(TypedDict):
    type: Literal["message_delta"]
    delta: StopDelta
    usage: Usage


class MessageStop(TypedDict):
    type: Literal["message_stop"]


class ErrorBody(TypedDict):
    type: str  # api_error, overloaded_error, ... (server/errors.py maps Hearth's errors)
    message: str


class ErrorEvent(TypedDict):
    type: Literal["error"]
    error: ErrorBody


Event = (
    MessageStart
    | Ping
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | ErrorEvent
)
