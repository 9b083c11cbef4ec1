"""uvicorn's HTTP protocol (httptools), keeping the request target as the client sent it.

uvicorn's httptools protocol reduces an absolute-form request target (`GET
http://evil.example/v1/models HTTP/1.1`, which HTTP/1.1 servers must accept) to its path before
the app sees it, so the guard (server/security.py) could not tell that the request names
another host than its Host header. This subclass records the target, as sent, in the scope's
extensions under `REQUEST_TARGET` before uvicorn parses it. (uvicorn's h11 protocol keeps the
whole target in `raw_path` itself, and the guard reads that when the extension is absent.)
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REQUEST_TARGET = "hearth.request_target"


class TargetKeepingProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that leaves `scope["extensions"][REQUEST_TARGET]["target"]` (bytes)."""

    def on_headers_complete(self) -> None:
        extensions = self.scope.setdefault("extensions", {})
        extensions[REQUEST_TARGET] = {"target": self.url}
        super().on_headers_complete()
