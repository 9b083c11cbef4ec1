"""A tool's result as the text a model reads, cut to a cap that says so (issue 26, point 4).

Why here and not in each face: the Responses API's `mcp_call.output`, a chat `tool` message and
Jan's `metadata.tool_calls` all carry one string per call, and the SDK reads a stdio result of
any size (docs/research/mcp.md §1.7), so the cut must happen in one place, after receipt.
Text blocks go through joined; images, audio and blobs become a placeholder naming their type
and size; with no text at all, the structured content is written as JSON.
"""

from __future__ import annotations

import json

from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)


def block_text(block: ContentBlock) -> str:
    """One content block as text; binary parts as `[image image/png, N bytes of base64]`."""
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, (ImageContent, AudioContent)):
        return f"[{block.type} {block.mime_type}, {len(block.data)} bytes of base64]"
    if isinstance(block, ResourceLink):
        return f"[resource link {block.name}: {block.uri}]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return resource.text
        if isinstance(resource, BlobResourceContents):
            return f"[resource {resource.uri}, {len(resource.blob)} bytes of base64]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def result_text(result: CallToolResult, cap: int) -> tuple[str, int]:
    """The result's text cut to `cap` characters (with a note saying so), and its full length."""
    parts = [block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, ensure_ascii=False)]
    text = "\n".join(parts)
    full = len(text)
    if full <= cap:
        return text, full
    note = f"\n[cut by Hearth: the result was {full} characters; these are the first {cap}]"
    return text[:cap] + note, full
