"""OpenAI's Responses API (`POST /v1/responses`) on Hearth's port: a translation at the face
into the chat-completions service call. See the README's "Responses API" section."""

from __future__ import annotations

from hearth.server.responses.routes import router

__all__ = ["router"]
