"""The Responses writer of a request with MCP tools: `stream.Events`, taught the MCP items
(issue 26, point 3). A request without MCP tools never comes here: it keeps `Events` as it was.

What changes from `Events`, after docs/research/mcp.md §3:

- a call the model makes to an MCP function opens an `mcp_call` item (`output_item.added`,
  `response.mcp_call_arguments.delta`..., `.done`); it is run after the model's turn
  (`response.mcp_call.in_progress`, then `.completed` or `.failed`, then `output_item.done`
  with its `output` or `error`), its place in `output` kept meanwhile;
- a call that needs the user's approval is an `mcp_approval_request` item, written whole
  (`output_item.added` and `.done`) once its arguments are complete; it is never run;
- `mcp_list_tools` items are written whole (added, `response.mcp_list_tools.in_progress`,
  `.completed`, done), since the tools were listed before the answer began;
- the writer lives across the model's turns: `next_round` starts a fresh fold of what the
  engine says, and `finish` sums every turn's usage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from hearth.core.errors import HearthError
from hearth.engines.events import Gathered, ToolCallDelta
from hearth.mcp.hosts import CallOutcome
from hearth.server.responses.shapes import (
    Event,
    McpApprovalRequestItem,
    McpCallItem,
    McpListToolsItem,
    OutputItem,
    Status,
)
from hearth.server.responses.stream import Events
from hearth.server.responses.translate import Call, finished, new_id
from hearth.services.mcp import McpFunction

MCP_OPEN = ("mcp_call", "mcp_approval_request")


def call_item(
    function: McpFunction, arguments: str, approval: str | None = None, item_id: str = ""
) -> McpCallItem:
    item: McpCallItem = {
        "type": "mcp_call",
        "id": item_id or new_id("mcp"),
        "server_label": function.server,
        "name": function.tool,
        "arguments": arguments,
        "status": "in_progress",
        "output": None,
        "error": None,
    }
    if approval is not None:
        item["approval_request_id"] = approval
    return item


def outcome_item(item: McpCallItem, outcome: CallOutcome) -> McpCallItem:
    """The call's item once it ran: `output` what the server answered; a failure as OpenAI's
    McpToolCallError (`mcp_tool_execution_error` when the tool itself failed, with its
    content; `mcp_protocol_error` with the JSON-RPC code when no result came)."""
    if not outcome.is_error:
        return {**item, "status": "completed", "output": outcome.text, "error": None}
    error: dict[str, Any]
    if outcome.code is not None:
        error = {"type": "mcp_protocol_error", "code": outcome.code, "message": outcome.text}
    else:
        content = [{"type": "text", "text": outcome.text}]
        error = {"type": "mcp_tool_execution_error", "content": content}
    return {**item, "status": "failed", "output": None, "error": error}


@dataclass
class Running:
    """An mcp_call the model made this turn, to run after it: where it sits in `output`."""

    index: int
    item: McpCallItem
    function: McpFunction


def summed(usages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Chat usages added up (every turn of the model counts)."""
    if not usages:
        return None
    total: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    cached = 0
    for usage in usages:
        for key in total:
            total[key] += int(usage.get(key) or 0)
        details = usage.get("prompt_tokens_details")
        cached += int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    total["prompt_tokens_details"] = {"cached_tokens": cached}
    return total


class McpEvents(Events):
    """`Events` with MCP items (see the module docstring)."""

    def __init__(
        self,
        call: Call,
        response_id: str,
        created: int,
        functions: dict[str, McpFunction],
        asks: Callable[[McpFunction], bool],
    ) -> None:
        super().__init__(call, response_id, created)
        self.functions = functions  # the name the model calls -> the MCP tool
        self.asks = asks  # whether a call of it waits for the user's approval
        self.opened: dict[str, McpFunction] = {}  # item id -> its function
        self.running: list[Running] = []  # this turn's calls, to run
        self.asked: list[McpApprovalRequestItem] = []  # approval requests (every turn)
        self.client_calls = 0  # function_call items the client must run (this turn)
        self.usages: list[dict[str, Any]] = []  # the finished turns'

    def _event_item(self, kind: str, index: int, item: OutputItem) -> Event:
        return self._event(kind, output_index=index, item=item)

    def _open_call(self, index: int, call_id: str | None, name: str) -> list[Event]:
        function = self.functions.get(name)
        if function is None:  # the client's own function: a function_call item, as ever
            self.client_calls += 1
            return super()._open_call(index, call_id, name)
        events = self.close()
        self.tool_index = index
        known = self.seen.calls.get(index)
        self.arguments_from = len(known.arguments) if known is not None else 0
        if self.asks(function):  # written whole once its arguments are complete
            request: McpApprovalRequestItem = {
                "type": "mcp_approval_request", "id": new_id("mcpr"),
                "server_label": function.server, "name": function.tool, "arguments": "",
            }  # fmt: skip
            self.opened[request["id"]] = function
            self.open = cast(Any, request)
            return events
        item = call_item(function, "")
        self.opened[item["id"]] = function
        self.open = cast(Any, item)
        added = self._event_item("response.output_item.added", len(self.output), item)
        return [*events, added]

    def _is_open(self, index: int) -> bool:
        open_item = self.open
        return (
            open_item is not None
            and open_item["type"] in ("function_call", *MCP_OPEN)
            and index == self.tool_index
        )

    def _arguments(self, event: ToolCallDelta) -> list[Event]:
        open_item = cast(OutputItem | None, self.open)
        if open_item is None or open_item["type"] not in MCP_OPEN or not self._is_open(event.index):
            return super()._arguments(event)
        self.seen.add(event)
        if open_item["type"] != "mcp_call":
            return []
        return [self._event("response.mcp_call_arguments.delta", item_id=open_item["id"],
                            output_index=len(self.output), delta=event.arguments)]  # fmt: skip

    def close(self, status: Status = "completed") -> list[Event]:
        open_item = cast(OutputItem | None, self.open)
        if open_item is None or open_item["type"] not in MCP_OPEN:
            return super().close(status)
        self.open = None
        assert self.tool_index is not None
        arguments = self.seen.calls[self.tool_index].arguments[self.arguments_from :]
        index = len(self.output)
        function = self.opened[open_item["id"]]
        if open_item["type"] == "mcp_approval_request":
            request = cast(McpApprovalRequestItem, {**open_item, "arguments": arguments})
            self.output.append(request)
            self.asked.append(request)
            return [self._event_item("response.output_item.added", index, request),
                    self._event_item("response.output_item.done", index, request)]  # fmt: skip
        item = cast(McpCallItem, {**open_item, "arguments": arguments})
        self.output.append(item)  # its place, kept while it runs
        self.running.append(Running(index, item, function))
        return [self._event("response.mcp_call_arguments.done", item_id=item["id"],
                            output_index=index, arguments=arguments)]  # fmt: skip

    # ---- what happens between the model's turns ------------------------------------------

    def listed(self, item: McpListToolsItem) -> list[Event]:
        """A server's tools, listed before the answer began: the item written whole."""
        index = len(self.output)
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": index}
        return [
            self._event_item("response.output_item.added", index, {**item, "tools": []}),
            self._event("response.mcp_list_tools.in_progress", **where),
            self._event("response.mcp_list_tools.completed", **where),
            self._event_item("response.output_item.done", index, item),
        ]

    def placed(self, item: McpCallItem, function: McpFunction) -> tuple[Running, list[Event]]:
        """An approved call from the input, about to run: its item opens with its arguments."""
        index = len(self.output)
        self.output.append(item)
        added = self._event_item("response.output_item.added", index, item)
        done = self._event("response.mcp_call_arguments.done", item_id=item["id"],
                           output_index=index, arguments=item["arguments"])  # fmt: skip
        return Running(index, item, function), [added, done]

    def calling(self, running: Running) -> Event:
        return self._event("response.mcp_call.in_progress", item_id=running.item["id"],
                           output_index=running.index)  # fmt: skip

    def called(self, running: Running, item: McpCallItem) -> list[Event]:
        """The call's end: its final item takes its place in `output`."""
        self.output[running.index] = item
        kind = "completed" if item["status"] == "completed" else "failed"
        return [
            self._event(f"response.mcp_call.{kind}", item_id=item["id"],
                        output_index=running.index),
            self._event_item("response.output_item.done", running.index, item),
        ]  # fmt: skip

    def next_round(self) -> None:
        """The model's next turn: a fresh fold of what the engine says (its tool-call indexes
        start at 0 again); this turn's usage kept for the sum."""
        if self.seen.usage is not None:
            self.usages.append(self.seen.usage.raw)
        self.seen = Gathered()
        self.text_from = 0
        self.tool_index = None
        self.arguments_from = 0
        self.running = []
        self.client_calls = 0

    def failed_turn(self, error: HearthError) -> list[Event]:
        """The model's next turn could not start (its context cannot hold a tool's result,
        the model was unloaded...): the calls have run, so the response ends "failed" with
        what it has, rather than a bare error the client could not match to them."""
        usages = [*self.usages, *([self.seen.usage.raw] if self.seen.usage else [])]
        final = finished(self.base, self.output, self.seen.finish, summed(usages))
        code = "invalid_prompt" if error.status < 500 else "server_error"
        message = f"After the MCP calls, the model's next turn could not start: {error.message}"
        problem = {"code": code, "message": message, "param": error.param, "type": error.type}
        final = {**final, "status": "failed", "error": problem}
        return [self._event("response.failed", response=final)]

    def finish(self) -> list[Event]:
        events = self.close("incomplete" if self.seen.finish == "length" else "completed")
        usages = [*self.usages, *([self.seen.usage.raw] if self.seen.usage else [])]
        final = finished(self.base, self.output, self.seen.finish, summed(usages))
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=final)]
