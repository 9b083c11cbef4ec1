"""A small engine kind from outside Hearth, installed the way a user installs a plugin.

`install_echo_plugin(folder)` writes a module `hearth_echo` and the `.dist-info` metadata that
declares it in the `hearth.engines` entry-point group, so a Hearth started with `folder` on
PYTHONPATH finds it exactly as it finds a pip-installed plugin. The engine is a tiny
OpenAI-style HTTP server (one Python process per replica): it answers a chat with its
own pid (so tests see which replica served), its greeting and the last user message, streams
when asked, waits `echo_delay` seconds mid-stream when asked, and, like every engine Hearth
runs, refuses any request without the key Hearth gave it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

PLUGIN = '''
"""The `echo` engine kind: a plugin for Hearth, and the engine process it launches."""
from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

KEY_ENV = "ECHO_ENGINE_KEY"


def _greeting(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("a short text")
    return value


try:
    from hearth.engines.registry import Launch, LocalKind

    class EchoKind(LocalKind):
        name: ClassVar[str] = "echo"
        params: ClassVar[dict[str, Any]] = {"greeting": _greeting}
        defaults: ClassVar[dict[str, Any]] = {"greeting": "echo"}

        def launch(self, spec, *, host, port, key, workdir):
            argv = [sys.executable, "-m", "hearth_echo", host, str(port), spec.model_id,
                    spec.params["greeting"]]
            return Launch(argv, {KEY_ENV: key})
except ImportError:  # the engine process itself needs no Hearth
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.headers.get("Authorization") != "Bearer " + self.server.key:
            self._json(401, {"error": {"message": "Invalid API Key"}})
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": "only chat"}})
            return
        last = body["messages"][-1]["content"]
        text = f"<{os.getpid()}> {self.server.greeting}: {last}"
        base = {"id": "chatcmpl-echo", "created": int(time.time()), "model": self.server.alias}
        if not body.get("stream"):
            self._json(200, {**base, "object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, word in enumerate(text.split(" ")):
            delta = {"content": (" " if i else "") + word}
            self._chunk({**base, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            if i == 0:
                time.sleep(float(body.get("echo_delay", 0)))
        self._chunk({**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._send(b"data: [DONE]\\n\\n")
        self.wfile.write(b"0\\r\\n\\r\\n")

    def _chunk(self, obj: Any) -> None:
        self._send(b"data: " + json.dumps(obj).encode() + b"\\n\\n")

    def _send(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\\r\\n".encode() + data + b"\\r\\n")
        self.wfile.flush()


def main() -> None:
    host, port, alias, greeting = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    server = ThreadingHTTPServer((host, port), Handler)
    server.key = os.environ.pop(KEY_ENV)
    server.alias, server.greeting = alias, greeting
    print(f"echo engine for {alias} on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
'''


def install_echo_plugin(folder: Path) -> Path:
    """Write the plugin and its entry point under `folder` (put it on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hearth_echo.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    meta = folder / "hearth_echo-0.1.dist-info"
    meta.mkdir(exist_ok=True)
    (meta / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hearth-echo\nVersion: 0.1\n", encoding="utf-8"
    )
    (meta / "entry_points.txt").write_text(
        "[hearth.engines]\necho = hearth_echo:EchoKind\n", encoding="utf-8"
    )
    return folder
