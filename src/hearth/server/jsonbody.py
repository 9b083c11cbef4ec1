"""Request bodies as JSON, with the limits that keep hostile JSON a 400 and never a 500.

`json.loads` accepts what later steps cannot handle: nesting a thousand levels deep (a
RecursionError in whatever walks it next: a merge, a validator, `json.dumps`) and lone UTF-16
surrogates such as "\\ud800" (a UnicodeEncodeError when the text is written to model.json or sent
to an engine). Both are refused here, where the body is parsed, with a message saying what to
send instead.

The checks cost almost nothing on ordinary bodies: the structure is walked only when the raw
bytes hold more brackets than the depth limit, and strings only when the bytes show a sign of
a surrogate (a `\\udXXX` escape or its raw UTF-8 form, which `json.loads` also lets through).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from hearth.core.errors import InvalidRequest

MAX_DEPTH = 64
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Signs of a surrogate: a \uDXXX escape, or the byte that starts a UTF-8 encoded surrogate
# (json.loads decodes bytes with "surrogatepass"). Plain substring tests, fast on 32 MiB; a false
# alarm (an emoji's escaped pair, Hangul text) only costs a walk of the strings.
_SURROGATE_SIGNS = (b"\\ud", b"\\uD", b"\xed")


def loads(raw: bytes) -> Any:
    """Parse a request body, refusing bad JSON, deep nesting and lone surrogates (400)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise too_deep() from None
    except ValueError as exc:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.") from None
    check(value, raw)
    return value


def loads_object(raw: bytes, *, empty: bool = False) -> dict[str, Any]:
    """A request body that must be a JSON object: the one check every route shares (400 naming
    the fix). With `empty`, a body of nothing but whitespace reads as {} (Ollama's routes)."""
    if empty and not raw.strip():
        return {}
    return need_object(loads(raw))


def need_object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object; else the 400 every face answers for such a body."""
    if not isinstance(value, dict):
        raise InvalidRequest('The request body must be a JSON object like {"model": "..."}.')
    return value


def check(value: Any, raw: bytes) -> None:
    """Refuse a parsed body nested deeper than MAX_DEPTH or holding a lone surrogate."""
    strings = any(sign in raw for sign in _SURROGATE_SIGNS)
    if not strings and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: a recursive walk would itself overflow on hostile input
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise too_deep()
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if strings and isinstance(key, str):
                    _check_text(key)
                if isinstance(child, dict | list) or (strings and isinstance(child, str)):
                    stack.append((child, depth + 1))
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise lone_surrogate() from None


def lone_surrogate() -> InvalidRequest:
    """The error for text that cannot be encoded (also the UnicodeEncodeError backstop)."""
    return InvalidRequest(
        "The request body holds a lone UTF-16 surrogate (an escape such as \\ud800 without its "
        "pair), which is not Unicode text. Send valid UTF-8 text; encode binary data as base64."
    )


def too_deep() -> InvalidRequest:
    """The error for JSON nested past the limit (also used when a parser overflows)."""
    return InvalidRequest(
        f"The request body is nested more than {MAX_DEPTH} levels deep. Send a flatter JSON "
        "object; no Hearth or OpenAI field needs that depth."
    )


async def checked_body(request: Request) -> None:
    """App-wide dependency: a route whose JSON body FastAPI parses (management routes, at most
    1 MiB) gets the same depth and surrogate checks as `loads`. Runs after FastAPI's parse and
    before the body is validated; routes that read their body themselves (inference, parsed
    once with `loads`) declare no body field and are skipped."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None or request.method not in _BODY_METHODS:
        return
    raw = await request.body()
    if not raw:
        return
    try:
        value = await request.json()  # cached: the same object FastAPI parsed
    except RecursionError:
        raise too_deep() from None
    except ValueError:
        return  # not JSON: FastAPI's validation reports it
    check(value, raw)
