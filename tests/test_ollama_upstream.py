"""The translated faces over a remote OpenAI-compatible engine whose answers are a stranger's data:
text that is no Unicode (a lone surrogate sent as a JSON escape), an answer that is not JSON, a
redirect instead of an answer. Real server, real `ollama` and `anthropic` clients, a loopback
upstream."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import ollama
import pytest
from conftest import make_model
from support.server import ThreadedServer

#: An escape json.loads turns into a lone surrogate, which no UTF-8 can carry.
LONE = "a\\ud800b"


class Upstream:
    """Answers chat/completions as an OpenAI-compatible engine would, with the text `LONE`;
    the upstream model "garbage" gets a body that is not JSON."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if body["model"] == "moved":
                    self.send_response(307)
                    self.send_header("location", "https://elsewhere.invalid/v1/chat/completions")
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif body.get("stream"):
                    self._send("text/event-stream", _events())
                elif body["model"] == "garbage":
                    self._send("application/json", b"<html>not json</html>")
                else:
                    self._send("application/json", _whole())

            def _send(self, kind: str, data: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _whole() -> bytes:
    message = '{"role": "assistant", "content": "' + LONE + '"}'
    return (
        '{"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", '
        f'"message": {message}}}], "usage": {{"prompt_tokens": 3, "completion_tokens": 1}}}}'
    ).encode()


def _events() -> bytes:
    chunks = [
        '{"choices": [{"index": 0, "delta": {"content": "' + LONE + '"}}]}',
        '{"choices": [{"index": 0, "delta": {"content": " ok"}, "finish_reason": "stop"}]}',
    ]
    return "".join(f"data: {c}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.server.shutdown()
    up.server.server_close()


@pytest.fixture
def client(server: ThreadedServer, home: Path, upstream: Upstream) -> ollama.Client:
    engine_json = home / "engines" / "box" / "engine.json"
    engine_json.parent.mkdir(parents=True)
    engine_json.write_text(json.dumps({"type": "openai-compatible", "base_url": upstream.url}))
    make_model(home, "remote", {"engine": "box", "engine_parameters": {"model": "up"}})
    make_model(home, "broken", {"engine": "box", "engine_parameters": {"model": "garbage"}})
    make_model(home, "moved", {"engine": "box", "engine_parameters": {"model": "moved"}})
    return server.keep(ollama.Client(host=server.url))


@pytest.mark.slow  # over ~0.5 s: out of the fast loop (kept under 60 s)
def test_text_an_upstream_cannot_encode_is_replaced_not_a_500(client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "hi"}]
    whole = client.chat(model="remote", messages=messages, stream=False)
    assert whole.message.content == "a?b" and whole.done_reason == "stop"
    parts = list(client.chat(model="remote", messages=messages, stream=True))
    assert "".join(p.message.content or "" for p in parts) == "a?b ok"
    assert parts[-1].done and parts[-1].done_reason == "stop"


@pytest.mark.slow  # over ~0.5 s: out of the fast loop (kept under 60 s)
def test_an_upstream_answer_that_is_not_json_is_an_engine_error(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="broken", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert info.value.status_code == 502 and "not a JSON object" in info.value.error


@pytest.mark.slow  # over ~0.5 s: out of the fast loop (kept under 60 s)
def test_a_redirect_instead_of_an_answer_is_an_error_on_every_translated_face(
    client: ollama.Client, server: ThreadedServer
) -> None:
    """A translating face takes only a 200 from the engine: a remote's 307 (say, http sent on
    to https) is an error the client sees, never an empty answer that looks complete."""
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(ollama.ResponseError):
        client.chat(model="moved", messages=messages, stream=False)
    claude = server.keep(anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0))
    for stream in (False, True):
        with pytest.raises(anthropic.APIStatusError):
            claude.messages.create(
                model="moved", max_tokens=8, messages=messages, stream=stream
            )

