"""The remote side of the engine seam, and the `openai-compatible` kind.

A remote model is served by someone else's OpenAI-style API. Its profile (`RemoteEngine`: where
requests go, which variable holds the key, the upstream model name) comes from the user's
engines/<engine>/engine.json or a built-in profile: {"base_url": "https://api.example.com/v1",
"api_key_env": "EXAMPLE_KEY", "model": "upstream-model-name"}. The key is read from the named
environment variable each time headers are built, so it is never stored in Hearth's files,
objects or logs. Requests go over httpx (`RemoteHTTP`: TLS, proxies from the environment,
compression), never over the local engines' lean client.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlparse

import httpx

from hearth.core.errors import EngineError, InvalidParameter, InvalidRequest
from hearth.engines.proxy import TIMEOUT, Upstream
from hearth.engines.registry import REMOTE_DEFAULT, RemoteKind, register
from hearth.models.store import ModelEntry

KNOWN = ("base_url", "api_key_env", "model")
#: Jan's remote engines whose APIs speak OpenAI's protocol: default base_url and key variable.
PROVIDERS: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RemoteEngine:
    """One remote model's upstream: where its requests go and the headers they carry."""

    def __init__(
        self, *, base_url: str, model: str, api_key_env: str | None = None, alias: str = ""
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self.upstream_model = model
        self.api_key_env = api_key_env
        self.alias = alias

    @classmethod
    def from_params(
        cls,
        params: Mapping[str, Any],
        *,
        model_id: str,
        source: str = "model.json engine_parameters",
    ) -> RemoteEngine:
        """Validate engine_parameters; the upstream model name defaults to the Hearth id."""
        for key in params:
            if key not in KNOWN:
                hint = difflib.get_close_matches(str(key), KNOWN, n=1)
                fix = f" Did you mean '{hint[0]}'?" if hint else " Remove it."
                raise InvalidParameter(
                    f"Unknown parameter '{key}' for the openai-compatible engine in {source}. "
                    f"Known: {', '.join(KNOWN)}.{fix}",
                    param=str(key),
                )
        base_url = params.get("base_url")
        if not isinstance(base_url, str) or not base_url.strip():
            raise InvalidParameter(
                f"The openai-compatible engine needs 'base_url' in {source}, "
                'e.g. "base_url": "https://api.openai.com/v1".',
                param="base_url",
            )
        parsed = urlparse(base_url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidParameter(
                f"'base_url' in {source} must be an http:// or https:// URL; got {base_url!r}.",
                param="base_url",
            )
        key_env = params.get("api_key_env")
        if key_env is not None and (not isinstance(key_env, str) or not _ENV_NAME.match(key_env)):
            raise InvalidParameter(
                f"'api_key_env' in {source} must name an environment variable (like "
                f"OPENAI_API_KEY), not hold the key itself; got a {type(key_env).__name__}.",
                param="api_key_env",
            )
        model = params.get("model", model_id)
        if not isinstance(model, str) or not model:
            raise InvalidParameter(
                f"'model' in {source} must be the upstream model name (a string).",
                param="model",
            )
        return cls(base_url=base_url.strip(), model=model, api_key_env=key_env, alias=model_id)

    # -- request helpers --------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._base_url

    def headers(self) -> dict[str, str]:
        """Auth headers, with the key read from the environment now (never cached)."""
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EngineError(
                f"The model '{self.alias}' needs an API key in the environment variable "
                f"{self.api_key_env}, which is not set. Set it and restart Hearth."
            )
        return {"Authorization": f"Bearer {key}"}

    def rewrite_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The request body to send upstream: the same, naming the upstream model, less
        llama.cpp's own `timings_per_token` (the Anthropic face asks for it; an OpenAI-style
        API may refuse a field it does not know)."""
        sent = {k: v for k, v in body.items() if k != "timings_per_token"}
        return {**sent, "model": self.upstream_model}

    def secrets(self) -> list[str]:
        """Values to scrub from anything logged (the current key, if any)."""
        key = os.environ.get(self.api_key_env or "") if self.api_key_env else None
        return [key] if key else []

    async def check_reachable(self, timeout: float = 10.0) -> None:
        """GET {base_url}/models to see the upstream answer (an explicit start does this).

        Any HTTP answer counts as reachable (a 401 still proves the URL is right).
        """
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                await client.get(f"{self.base_url}/models", headers=self.headers())
        except httpx.HTTPError as exc:
            raise EngineError(
                f"The upstream {self.base_url} for '{self.alias}' is not reachable: "
                f"{type(exc).__name__}. Check base_url and your network."
            ) from None


# ---- profiles ---------------------------------------------------------------------------


def remote_profile(engine: str, engine_json: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where a remote engine sends requests and which variable holds its key: the user's
    engines/<engine>/engine.json, else a built-in profile (Jan's remote engines). The URL and the
    key variable always come from the same place, so a key only goes where it was meant to."""
    if engine_json is not None and ("base_url" in engine_json or "type" in engine_json):
        return {k: v for k, v in engine_json.items() if k != "type"}
    if engine in PROVIDERS:
        base_url, key_env = PROVIDERS[engine]
        return {"base_url": base_url, "api_key_env": key_env}
    return None


def unknown_engine(entry: ModelEntry, engine: str) -> InvalidRequest:
    return InvalidRequest(
        f"Model '{entry.id}' uses engine '{engine}', which is not configured. For a server that "
        f"speaks OpenAI's API, create engines/{engine}/engine.json in your Hearth home with "
        f'{{"type": "{REMOTE_DEFAULT}", "base_url": "https://host/v1", "api_key_env": "ENV_VAR"}}'
        f"; for a local GGUF, remove 'engine' from models/{entry.folder.name}/model.json.",
        param="engine",
        code="unknown_engine",
    )


def remote_engine(entry: ModelEntry, engine_json: dict[str, Any] | None) -> RemoteEngine:
    """The upstream for a remote model. The model.json names only the engine and the upstream
    model (`engine_parameters.model`); llama.cpp parameters Jan's remote files carry are
    ignored."""
    info = entry.info
    assert info is not None
    engine = info.engine.lower()
    profile = remote_profile(engine, engine_json)
    if profile is None:
        raise unknown_engine(entry, info.engine)
    params = dict(profile)
    if "model" in info.engine_parameters:
        params["model"] = info.engine_parameters["model"]
    source = f"engines/{engine}/engine.json" if engine_json is not None else f"engine '{engine}'"
    return RemoteEngine.from_params(params, model_id=entry.id, source=source)


# ---- requests -------------------------------------------------------------------------------


class RemoteHTTP:
    """The httpx client every remote request shares (made on first use, closed at shutdown)."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT, trust_env=True)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class RemoteTarget:
    """One request to a remote model's upstream."""

    def __init__(self, engine: RemoteEngine, http: RemoteHTTP) -> None:
        self.engine = engine
        self.http = http
        self.headers = {"content-type": "application/json", **engine.headers()}

    async def send(self, path: str, content: bytes) -> Upstream:
        """POST to {base_url}/{path}. The upstream's errors are OpenAI's already, with its own
        message: OpenAI's face passes them through as they are."""
        client = self.http.client()
        request = client.build_request(
            "POST", f"{self.engine.base_url}/{path}", content=content, headers=self.headers
        )
        try:
            response = await client.send(request, stream=True)
        except (httpx.TransportError, OSError) as exc:
            raise await self.failure(exc) from None
        return Upstream(self, response, errors_in_openai_shape=True)

    def release(self) -> None:
        pass

    async def failure(self, exc: Exception) -> EngineError:
        return EngineError(
            f"The upstream {self.engine.base_url} for '{self.engine.alias}' failed "
            f"({type(exc).__name__}). Check its base_url, your network, and the upstream's status."
        )


class OpenAICompatible(RemoteKind):
    """Someone else's OpenAI-compatible server. Which server is configured per engine name in
    engines/<name>/engine.json (or a built-in profile); a model names only the engine and the
    upstream `model`."""

    name: ClassVar[str] = REMOTE_DEFAULT


KIND = register(OpenAICompatible())
