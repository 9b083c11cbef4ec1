"""A thread as one file to carry elsewhere: Hearth's JSON export (and import), and Markdown.

The JSON export holds thread.json and the messages exactly as stored, so an import elsewhere
gives the same files. An import is checked before anything is written: its fields are data,
never paths (the thread's id is used only if it is a valid, free id; messages' `thread_id`s are
rewritten), and its size is bounded (the server's body limit, and the caps below).

A file may hold a lone UTF-16 surrogate (`"\\ud800"`: valid JSON, not Unicode text). The JSON
export keeps it as that escape, so an import gives back the very same string; the Markdown
export is text for people, which UTF-8 cannot hold it in, so it shows U+FFFD where it stood.
"""

from __future__ import annotations

import re
from typing import Any

from hearth.core.errors import InvalidRequest
from hearth.models.ids import is_valid_id
from hearth.threads import jan
from hearth.threads.ids import new_message_id
from hearth.threads.views import content_parts, message_text, part_text

KIND = "hearth.thread.export"
VERSION = 1
MAX_MESSAGES = 10_000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def export_document(thread: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": KIND, "version": VERSION, "thread": thread, "messages": messages}


def checked_import(doc: Any) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """(thread.json, messages, the id it asks for or None) from an export, or InvalidRequest
    naming the problem."""
    if not isinstance(doc, dict):
        raise InvalidRequest(f"The body must be a thread export: a JSON object with \"object\": "
                             f'"{KIND}".')  # fmt: skip
    if doc.get("object") != KIND:
        raise InvalidRequest(
            f"'object' must be \"{KIND}\" (the file GET /v1/threads/{{id}}/export writes).",
            param="object",
        )
    if doc.get("version") != VERSION:
        raise InvalidRequest(
            f"'version' {doc.get('version')!r} is not one this Hearth reads ({VERSION}).",
            param="version",
        )
    thread, messages = doc.get("thread"), doc.get("messages", [])
    if not isinstance(thread, dict):
        raise InvalidRequest("'thread' must be a JSON object (thread.json).", param="thread")
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise InvalidRequest(
            f"'messages' must be a list of at most {MAX_MESSAGES} message objects.",
            param="messages",
        )
    wanted = thread.get("id")
    return dict(thread), _messages(messages), wanted if _usable_id(wanted) else None


def _messages(items: list[Any]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'messages[{i}]' must be a JSON object.", param=f"messages[{i}]")
        role, content = item.get("role"), item.get("content")
        if not isinstance(role, str) or not isinstance(content, str | list | type(None)):
            raise InvalidRequest(
                f"'messages[{i}]' needs a 'role' (a string) and a 'content' (a string or a list "
                "of parts).",
                param=f"messages[{i}]",
            )
        message = dict(item)
        ident = message.get("id")
        ident = str(ident) if isinstance(ident, str | int) and not isinstance(ident, bool) else ""
        if not _usable_id(ident) or ident in seen:
            ident = new_message_id()
        message["id"] = ident
        seen.add(ident)
        out.append(message)
    return out


def _usable_id(value: Any) -> bool:
    return isinstance(value, str) and is_valid_id(value)


def markdown(thread: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """A readable copy: the title, the system prompt, then each message under its role."""
    title = thread.get("title") or thread.get("id") or "Conversation"
    lines = [f"# {_one_line(str(title))}", ""]
    model, instructions = thread.get("model"), thread.get("instructions")
    if model:
        lines += [f"Model: `{model}`", ""]
    if instructions:
        lines += ["## System", "", str(instructions), ""]
    for message in messages:
        role = str(message.get("role") or "message")
        lines += [f"## {role[:1].upper()}{role[1:]}", ""]
        text = message_text(message)
        if role == "assistant":  # Jan's inline reasoning is not the answer
            text = jan.split_think(text)[1].strip()
        for call in jan.tool_calls(message):
            result = call["result"] if call["result"] is not None else "(no result)"
            lines += [f"*Tool call* `{call['name']}` `{call['arguments']}`: {result}", ""]
        if text:
            lines += [text, ""]
        for part in content_parts(message.get("content")):
            if isinstance(part, dict) and part.get("type") == "image_url" and not part_text(part):
                lines += ["*[image]*", ""]
    text = "\n".join(lines).rstrip() + "\n"
    return _LONE_SURROGATE.sub("\ufffd", text)  # json joins escaped pairs: any left is lone


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "Conversation"
