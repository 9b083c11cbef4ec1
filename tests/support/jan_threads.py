"""A conversation as today's Jan writes it (jan-data-folder.md §5), for the tests that read one:
reasoning inline and as parts, tool calls in metadata and as parts, times in ms and in seconds,
and one torn line."""

from __future__ import annotations

import json
from typing import Any

TID = "5f1c2a8e-0d7b-4c1e-9a55-7d0e3f1b2c44"
THINK = "The user wants the weather. I should call the tool."
WEATHER_CALL = {
    "tool": {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    },
    "response": {"content": [{"type": "text", "text": "18 C and sunny"}]},
    "state": "completed",
}


def text_parts(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"value": value, "annotations": []}}]


def jan_thread_files(model: str = "smol") -> tuple[dict[str, Any], list[str]]:
    """thread.json and messages.jsonl's lines as Jan writes them (line 3 is torn)."""
    thread = {
        "id": TID,
        "title": "Weather with tools",
        "object": "thread",
        "created": 1751012600.123,
        "updated": 1751012700.5,
        "assistants": [
            {
                "id": "jan",
                "name": "Jan",
                "avatar": "👋",
                "instructions": "You are Jan.",
                "model": {"id": model, "engine": "llamacpp"},
            }
        ],
        "model": {"id": model, "provider": "llamacpp"},
        "metadata": {"is_favorite": True, "order": 3, "project": {"id": "01P", "name": "Trips"}},
        "x_jan_later": {"kept": True},
    }
    base = {"object": "thread.message", "thread_id": TID, "status": "ready"}
    messages = [
        {**base, "id": "01JZ0000000000000000000001", "role": "user",
         "content": text_parts("What is the weather in Paris?"),
         "created_at": 1751012639307, "completed_at": 1751012639307},
        {**base, "id": "01JZ0000000000000000000002", "role": "assistant",
         "content": text_parts(f"<think>{THINK}</think>Let me check."),
         "created_at": 1751012640000, "completed_at": 1751012645000,
         "metadata": {"tool_calls": [WEATHER_CALL],
                      "tokenSpeed": {"tokenSpeed": 20.5, "tokenCount": 12}}},
        {**base, "id": "01JZ0000000000000000000003", "role": "user",
         "content": text_parts("And tomorrow?"), "created_at": 1751012700},
        {**base, "id": "01JZ0000000000000000000004", "role": "assistant",
         "content": [
             {"type": "reasoning", "text": {"value": "Use the forecast.", "annotations": []}},
             {"type": "tool_call", "tool_call_id": "call_2", "tool_name": "get_forecast",
              "input": {"city": "Paris"}, "output": "Rain"},
             *text_parts("Rain is expected."),
         ],
         "created_at": 1751012701, "completed_at": 1751012702},
        {**base, "id": "01JZ0000000000000000000005", "role": "user",
         "content": text_parts("Thanks. Reply with one word."), "created_at": 1751012800000},
    ]  # fmt: skip
    lines = [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in messages]
    lines.insert(2, '{"id":"01JZ00000000000000000000XX","role":"assistant","content":[{"ty')
    return thread, lines
