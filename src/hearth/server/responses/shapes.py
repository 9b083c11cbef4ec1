"""The shapes Hearth writes in the Responses API's dialect: output items, the Response object
and its usage. Plain dicts at run time (literals, no cost per token), typed for mypy; the tests
check what is written against the `openai` client's own models."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Status = Literal["in_progress", "completed", "incomplete"]
#: A response's own status: "failed" only when a later MCP turn could not start (mcp_run.py).
ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class OutputText(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class MessageItem(TypedDict):
    type: Literal["message"]
    id: str
    status: Status
    role: Literal["assistant"]
    content: list[OutputText]


class FunctionCallItem(TypedDict):
    type: Literal["function_call"]
    id: str
    call_id: str
    name: str
    arguments: str
    status: Status
    namespace: NotRequired[str]  # the namespace tool that holds the function, if any


class McpListedTool(TypedDict):
    name: str
    input_schema: dict[str, Any]
    description: NotRequired[str]
    annotations: NotRequired[dict[str, Any]]


class McpListToolsItem(TypedDict):
    type: Literal["mcp_list_tools"]
    id: str
    server_label: str
    tools: list[McpListedTool]


McpCallStatus = Literal["in_progress", "completed", "incomplete", "calling", "failed"]


class McpCallItem(TypedDict):
    type: Literal["mcp_call"]
    id: str
    server_label: str
    name: str  # the tool's own name on its server
    arguments: str
    status: McpCallStatus
    output: str | None
    error: dict[str, Any] | None  # OpenAI's McpToolCallError
    approval_request_id: NotRequired[str]


class McpApprovalRequestItem(TypedDict):
    type: Literal["mcp_approval_request"]
    id: str
    server_label: str
    name: str
    arguments: str


OutputItem = (
    MessageItem | FunctionCallItem | McpListToolsItem | McpCallItem | McpApprovalRequestItem
)


class InputDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputDetails(TypedDict):
    reasoning_tokens: int


class Usage(TypedDict):
    input_tokens: int
    input_tokens_details: InputDetails
    output_tokens: int
    output_tokens_details: OutputDetails
    total_tokens: int


class Echo(TypedDict):
    """The request's own settings, as a Response repeats them (validated copies only)."""

    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    parallel_tool_calls: bool
    store: bool
    temperature: float | None
    text: dict[str, Any]  # {"format": {...}} as the request gave it
    tool_choice: Any  # "auto" | "none" | "required" | {"type": "function", "name": ...}
    tools: list[dict[str, Any]]  # function tools, in the Responses shape
    top_p: float | None


class Incomplete(TypedDict):
    reason: str


class Response(Echo):
    id: str
    object: Literal["response"]
    created_at: int
    status: ResponseStatus
    error: dict[str, Any] | None  # {code, message, param, type} when "failed"
    incomplete_details: Incomplete | None
    model: str
    output: list[OutputItem]
    previous_response_id: str | None  # only a response that waited on an MCP approval
    reasoning: dict[str, Any]
    truncation: str
    usage: Usage | None
    user: None


#: One stream event: `type`, `sequence_number` and the fields of its type (response.created,
#: response.output_text.delta, ...: many types with one envelope, checked in the tests
#: against the client's `ResponseStreamEvent`).
Event = dict[str, Any]
