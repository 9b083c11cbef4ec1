"""A fake Ollama registry and a fake Hub model search, both real HTTP servers on loopback.

`publish(server, ...)` lays out on a `FaultServer` what registry.ollama.ai serves: a manifest at
`/v2/<ns>/<name>/manifests/<tag>` and each layer at `/v2/<ns>/<name>/blobs/sha256:<hex>`, so the
FaultServer's faults (redirects, dropped connections, statuses) and its request log apply to them.
`HubSearch` answers `GET /api/models` as the Hub does for `HfApi.list_models`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.fault_server import FaultServer, sha256

MEDIA = "application/vnd.ollama.image."


def blob_path(name: str, data: bytes, namespace: str = "library") -> str:
    return f"/v2/{namespace}/{name}/blobs/sha256:{sha256(data)}"


def publish(
    server: FaultServer,
    name: str,
    tag: str,
    layers: list[tuple[str, bytes]],
    *,
    namespace: str = "library",
) -> dict[str, Any]:
    """Serve `layers` ((media type or short kind, bytes)) as `name:tag`; returns the manifest."""
    entries = []
    for media, data in layers:
        media_type = media if "/" in media else MEDIA + media
        server.add(blob_path(name, data, namespace), data)
        entries.append(
            {"mediaType": media_type, "digest": f"sha256:{sha256(data)}", "size": len(data)}
        )
    config = b'{"model_format":"gguf","model_family":"llama"}'
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": f"sha256:{sha256(config)}",
            "size": len(config),
        },
        "layers": entries,
    }
    server.add(f"/v2/{namespace}/{name}/manifests/{tag}", json.dumps(manifest).encode())
    return manifest


def publish_manifest(
    server: FaultServer, name: str, tag: str, manifest: Any, namespace: str = "library"
) -> None:
    """Serve any manifest body (a dict as JSON, or raw bytes) as `name:tag`."""
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    server.add(f"/v2/{namespace}/{name}/manifests/{tag}", body)


@dataclass
class HubModel:
    id: str
    downloads: int
    likes: int
    files: list[str] = field(default_factory=list)


class _SearchHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SearchServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path != "/api/models":  # huggingface_hub asks other routes of its own too
            return self._send(404, {"error": "not found"})
        self.server.queries.append(query)
        text = (query.get("search") or [""])[0].lower()
        wanted = set(query.get("filter", []))
        hits = [
            m
            for m in self.server.models
            if text in m.id.lower()
            and ("gguf" not in wanted or any(f.endswith(".gguf") for f in m.files))
        ]
        if (query.get("sort") or [""])[0] == "downloads":
            hits.sort(key=lambda m: -m.downloads)
        limit = int((query.get("limit") or ["1000"])[0])
        expand = set(query.get("expand", []))
        rows = []
        for model in hits[:limit]:
            row: dict[str, Any] = {"_id": model.id, "id": model.id}
            if "downloads" in expand:
                row["downloads"] = model.downloads
            if "likes" in expand:
                row["likes"] = model.likes
            if "siblings" in expand:
                row["siblings"] = [{"rfilename": f} for f in model.files]
            rows.append(row)
        self._send(200, rows)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _SearchServer(ThreadingHTTPServer):
    daemon_threads = True
    models: list[HubModel]
    queries: list[dict[str, list[str]]]


class HubSearch:
    """`with HubSearch([HubModel(...), ...]) as hub:` then `HF_ENDPOINT=hub.base`."""

    def __init__(self, models: list[HubModel]) -> None:
        self._httpd = _SearchServer(("127.0.0.1", 0), _SearchHandler)
        self._httpd.models = models
        self._httpd.queries = []
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def queries(self) -> list[dict[str, list[str]]]:
        return self._httpd.queries

    def __enter__(self) -> HubSearch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
