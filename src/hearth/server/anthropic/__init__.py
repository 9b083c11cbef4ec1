"""Anthropic's Messages API (/v1/messages), a translation at the face onto chat completions.

`translate.py` is the pure mapping, `stream.py` reads the engine's stream as Anthropic's
events, `routes.py` wires them to `Services.open_inference` (the same call as
/v1/chat/completions: load on demand, keep_alive, engine selection).
"""

from hearth.server.anthropic.routes import router

__all__ = ["router"]
