"""Resolve an Ollama name into the files to download and the model.json fields its layers set.

Ollama's registry speaks a small OCI-style API: `GET <registry>/v2/<ns>/<name>/manifests/<tag>`
answers a manifest whose `layers` are blobs named by sha256 digest, each served at
`GET <registry>/v2/<ns>/<name>/blobs/<digest>` (often through a redirect to a CDN). Layers by
media type (`application/vnd.ollama.image.<kind>`):

    model      the GGUF                          -> downloaded as `<id>.gguf`
    projector  a vision projector (mmproj)       -> downloaded as `mmproj-<id>.gguf`
    params     default options, JSON             -> model_parameters (+ ctx_len)
    system     the default system prompt         -> metadata.system_prompt
    license    license text(s)                   -> metadata.license
    template   a Go chat template                -> metadata.ollama.template, never executed

Everything here is a stranger's data. The manifest is read under a size cap (1 MiB) and a
deadline; digests must be `sha256:<64 hex>`; sizes are checked against caps before any download
(`max_bytes` for the GGUF, 256 KiB for text layers); text layers are verified against their
digest; unknown media types are ignored; file names come from the model id, never from the
manifest; nothing a manifest says becomes a path, a flag or a program, and the template is stored
as text only (the GGUF's own chat template is what runs). Messages never quote what the server
sent, and a registry that cannot be reached is reported with the setting that names it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from hearth.core.errors import InvalidRequest, NotFound
from hearth.core.ollama_options import OLLAMA_OPTIONS
from hearth.downloads import redirects
from hearth.downloads.common import DownloadFailed
from hearth.downloads.urls import FileSpec, redact_url, validate_url
from hearth.models.importer import DEFAULT_CTX_CAP
from hearth.models.limits import MODEL_RANGES, range_problem
from hearth.models.names import OllamaRef

MEDIA_PREFIX = "application/vnd.ollama.image."
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_TEXT_LAYER_BYTES = 256 << 10
MAX_LAYERS = 64
MAX_REDIRECTS = 5
CONNECT_TIMEOUT = 10.0
TEXT_KINDS = ("params", "template", "system", "license")
SETTING = "HEARTH_OLLAMA_REGISTRY"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
#: Ollama option -> (model_parameters name, kind). `num_ctx` goes to engine_parameters.ctx_len.
OPTION_NAMES = OLLAMA_OPTIONS
MAX_STOPS, MAX_STOP_CHARS = 16, 256


@dataclass(frozen=True)
class Layer:
    """One manifest layer: its kind (the media type's last part), digest and size."""

    kind: str
    digest: str
    size: int

    @property
    def sha256(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class OllamaPlan:
    """What a pull of `ref` needs: the files to download and the model.json fields to write."""

    ref: OllamaRef
    files: list[FileSpec]
    model_json: dict[str, Any] = field(default_factory=dict)


def registry_base(registry: str) -> str:
    """The configured registry as a base URL (http/https only), without a trailing slash."""
    try:
        return validate_url(registry).rstrip("/")
    except InvalidRequest:
        raise InvalidRequest(
            f"The Ollama registry setting is not an http(s) URL ({redact_url(registry)!r}). "
            f"Fix {SETTING} (or `ollama_registry` in settings.json), e.g. "
            "https://registry.ollama.ai."
        ) from None


def blob_url(registry: str, ref: OllamaRef, digest: str) -> str:
    return f"{registry}/v2/{ref.repository}/blobs/{digest}"


def manifest_url(registry: str, ref: OllamaRef) -> str:
    return f"{registry}/v2/{ref.repository}/manifests/{quote(ref.tag, safe='')}"


async def resolve_ollama(
    ref: OllamaRef,
    base_id: str,
    *,
    registry: str,
    max_bytes: int,
    timeout: float = 60.0,
    allow_private: bool = False,
) -> OllamaPlan:
    """Fetch and check the manifest and its small layers within `timeout` seconds in all.

    `base_id` names the files (`<base_id>.gguf`, `mmproj-<base_id>.gguf`); `max_bytes` caps the
    GGUF and projector sizes the manifest states (settings.max_download_bytes).
    """
    base = registry_base(registry)
    where = Where(ref, base)
    limits = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(timeout=limits, follow_redirects=False) as client:
                fetch = _Fetcher(client, where, allow_private)
                body = await fetch.get(manifest_url(base, ref), MAX_MANIFEST_BYTES, manifest=True)
                layers = parse_manifest(body, where)
                files = _file_specs(layers, where, base_id, max_bytes)  # sizes checked first
                texts: dict[str, list[str]] = {}
                for layer in layers:
                    if layer.kind in TEXT_KINDS:
                        texts.setdefault(layer.kind, []).append(await fetch.text_layer(layer))
    except TimeoutError:
        raise where.failed(f"did not answer within {timeout:g} s") from None
    except httpx.InvalidURL:
        raise where.failed("redirected to an invalid URL") from None
    except httpx.HTTPError as exc:
        raise where.failed(f"could not be reached ({type(exc).__name__})") from None
    return OllamaPlan(ref, files, model_json(texts, where))


@dataclass(frozen=True)
class Where:
    """The name and registry being pulled, for clear messages that quote nothing sent to us."""

    ref: OllamaRef
    registry: str

    def lead(self) -> str:
        """A bare name might have been meant as a local model id: say both."""
        if self.ref.explicit:
            return ""
        typed = self.ref.name if self.ref.tag == "latest" else str(self.ref)
        return f"'{typed}' is not a model id here, and "

    def failed(self, what: str) -> DownloadFailed:
        return DownloadFailed(
            f"{self.lead()}Ollama's registry at {redact_url(self.registry)} {what} for "
            f"{self.ref}. Check the network, or point {SETTING} at a registry you can reach."
        )

    def bad(self, what: str) -> DownloadFailed:
        return DownloadFailed(
            f"The Ollama registry's answer for {self.ref} is unusable ({what}); nothing was "
            f"downloaded. Check {SETTING}, or pull the model by URL or from Hugging Face."
        )

    def not_found(self) -> NotFound:
        return NotFound(
            f"{self.lead()}Ollama's library has no model {self.ref} (the registry at "
            f"{redact_url(self.registry)} answered 404). Check the name and tag on "
            "https://ollama.com/library, or find names with `hearth search --library TEXT`."
        )


class _Fetcher:
    """GETs of small documents: redirects checked hop by hop, bodies capped, statuses mapped."""

    def __init__(self, client: httpx.AsyncClient, where: Where, allow_private: bool) -> None:
        self.client, self.where, self.allow_private = client, where, allow_private

    async def get(self, url: str, cap: int, *, manifest: bool = False) -> bytes:
        accept = MANIFEST_ACCEPT if manifest else "*/*"
        headers = {"Accept": accept, "Accept-Encoding": "identity"}
        current = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            request = self.client.build_request("GET", current, headers=headers)
            resp = await self.client.send(request, stream=True)
            try:
                where_to = redirects.location(resp.status_code, resp.headers)
                if where_to is not None:
                    hop = await redirects.next_hop_async(
                        url, current, where_to, headers, allow_private=self.allow_private
                    )
                    current, headers = hop.url, hop.headers
                    continue
                self._check_status(resp.status_code, manifest)
                return await _read_capped(resp, cap, self.where)
            finally:
                await resp.aclose()
        raise self.where.failed("redirected too often")

    def _check_status(self, code: int, manifest: bool) -> None:
        if code == 200:
            return
        if manifest and code in (401, 403, 404):  # the registry answers 401 for unknown names
            raise self.where.not_found()
        raise self.where.failed(f"answered HTTP {code}")

    async def text_layer(self, layer: Layer) -> str:
        """A params/template/system/license layer: capped by size, verified by digest."""
        url = blob_url(self.where.registry, self.where.ref, layer.digest)
        body = await self.get(url, layer.size)
        if len(body) != layer.size or hashlib.sha256(body).hexdigest() != layer.sha256:
            raise self.where.bad(f"its {layer.kind} layer does not match its digest")
        return body.decode("utf-8", errors="replace")


async def _read_capped(resp: httpx.Response, cap: int, where: Where) -> bytes:
    """The body, refused as soon as it passes `cap` (a stated Content-Length first)."""
    stated = resp.headers.get("content-length", "")
    if stated.isdigit() and int(stated) > cap:
        raise where.bad(f"a document larger than {cap:,} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise where.bad(f"a document larger than {cap:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_manifest(body: bytes, where: Where) -> list[Layer]:
    """The manifest's known layers, checked field by field (unknown media types are dropped)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise where.bad("the manifest is not JSON") from None
    raw_layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(raw_layers, list) or len(raw_layers) > MAX_LAYERS:
        raise where.bad(f"the manifest has no 'layers' list of at most {MAX_LAYERS} entries")
    layers: list[Layer] = []
    for index, item in enumerate(raw_layers):
        if not isinstance(item, dict):
            raise where.bad(f"layer {index} is not an object")
        media, digest, size = item.get("mediaType"), item.get("digest"), item.get("size")
        if not isinstance(media, str):
            raise where.bad(f"layer {index} has no media type")
        if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
            raise where.bad(f"layer {index} has no valid sha256 digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise where.bad(f"layer {index} has no valid size")
        kind = media[len(MEDIA_PREFIX) :] if media.startswith(MEDIA_PREFIX) else ""
        if kind in ("model", "projector", *TEXT_KINDS):
            layers.append(Layer(kind, digest, size))
    return layers


def _file_specs(layers: list[Layer], where: Where, base_id: str, max_bytes: int) -> list[FileSpec]:
    """The GGUF (exactly one) and the first projector, if any, as FileSpecs named by the id."""
    models = [layer for layer in layers if layer.kind == "model"]
    if len(models) != 1:
        raise where.bad(f"{len(models)} model layers where Hearth needs exactly one")
    chosen = [(models[0], f"{base_id}.gguf")]
    projector = next((layer for layer in layers if layer.kind == "projector"), None)
    if projector is not None:
        chosen.append((projector, f"mmproj-{base_id}.gguf"))
    for layer in layers:
        cap = max_bytes if layer.kind in ("model", "projector") else MAX_TEXT_LAYER_BYTES
        if layer.size > cap:
            raise where.bad(
                f"its {layer.kind} layer is {layer.size:,} bytes, over the {cap:,}-byte limit"
                + (" (max_download_bytes)" if cap == max_bytes else "")
            )
        if layer.kind in ("model", "projector") and layer.size == 0:
            raise where.bad(f"its {layer.kind} layer is empty")
    return [
        FileSpec(blob_url(where.registry, where.ref, layer.digest), name, layer.size, layer.sha256)
        for layer, name in chosen
    ]


def model_json(texts: dict[str, list[str]], where: Where) -> dict[str, Any]:
    """model.json fields from the text layers: parameters, system prompt, license, template."""
    model_params, engine_params, ignored = map_params(texts.get("params", []))
    ollama: dict[str, Any] = {"registry": redact_url(where.registry), "name": str(where.ref)}
    metadata: dict[str, Any] = {"ollama": ollama}
    if texts.get("template"):
        ollama["template"] = texts["template"][0]  # recorded only: never rendered by Hearth
    if ignored:
        ollama["ignored_params"] = ignored
    if texts.get("system"):
        metadata["system_prompt"] = texts["system"][0]
    if texts.get("license"):
        metadata["license"] = "\n\n".join(texts["license"])
    out: dict[str, Any] = {"metadata": metadata}
    if model_params:
        out["model_parameters"] = model_params
    if engine_params:
        out["engine_parameters"] = engine_params
    return out


def map_params(
    documents: list[str],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Ollama's options -> (model_parameters, engine_parameters, ignored option names).

    Values of the wrong type are ignored like unknown names; `num_predict` <= 0 (Ollama's
    "unlimited") sets nothing; `num_ctx` is capped as an import caps the GGUF's context.
    """
    model: dict[str, Any] = {}
    engine: dict[str, Any] = {}
    ignored: list[str] = []
    for text in documents:
        try:
            options = json.loads(text)
        except (ValueError, RecursionError):
            continue
        if not isinstance(options, dict):
            continue
        for key, value in options.items():
            if not _map_one(key, value, model, engine):
                ignored.append(str(key)[:80])
    return model, engine, sorted(set(ignored))[:32]


def _map_one(key: str, value: Any, model: dict[str, Any], engine: dict[str, Any]) -> bool:
    if key == "stop":
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            return False
        kept = [s for s in stops if 0 < len(s) <= MAX_STOP_CHARS][:MAX_STOPS]
        model["stop"] = list(dict.fromkeys([*model.get("stop", []), *kept]))[:MAX_STOPS]
        return True
    if key == "num_ctx":
        if not _is_number(value, int) or value < 1:
            return False
        engine["ctx_len"] = min(int(value), DEFAULT_CTX_CAP)
        return True
    if key not in OPTION_NAMES:
        return False
    name, kind = OPTION_NAMES[key]
    if not _is_number(value, kind):
        return False
    if key == "num_predict" and value <= 0:
        return True  # Ollama's "no limit" (-1) or "fill the context" (-2): Hearth's default
    if name in MODEL_RANGES and range_problem(kind(value), MODEL_RANGES[name]):
        return False  # outside what model.json allows: ignored, so the model still loads
    model[name] = kind(value)
    return True


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
