"""What a face is: one record that the app, the error writer, the guard and the docs read.

A face is a dialect Hearth speaks on its port (OpenAI's `/v1` inference, Ollama's `/api`,
Anthropic's `/v1/messages`, ...), or a group of Hearth's own routes (management, threads,
the web page, the docs). Its record says everything the core needs to know about it:

- `routers`: what the app mounts, in order (routes are matched in the order they are added);
- `paths`: the paths it owns, so that an error on one of them, including a 404 or 405 on a
  path no route answers and a refusal by the guard before any route runs, is written in the
  face's dialect (`error`);
- `inference`: its body limit: path prefixes whose bodies are prompts (long contexts, pasted
  images), capped at the `max_body_bytes` setting rather than `MANAGEMENT_MAX_BODY`;
- `keys`: the headers its clients send the API key in; `client_headers`: other headers its
  clients send from a browser (allowed by CORS when `cors_origins` is set);
- `public` and `opens`: what is readable without the key.

The core (`server/errors.py`, `server/security.py`, `server/docs.py`) is handed the records
(`Faces`) and knows no face by name; `server/faces.py` lists Hearth's. Adding a dialect is
one package and one record there.

Path patterns (`paths`, `public`): a pattern ending in `*` owns every path that starts with
what comes before the star (`/api/*`: `/api/tags`, not `/api`); any other pattern owns exactly
that path. When patterns of several faces match, the longest wins (`/static/web/*` before
`/static/*`), an exact one before a starred one of the same length. `inference` prefixes are
plain `str.startswith` prefixes, as the guard has always read them.

The API key is one key: the guard accepts it in any face's header on every path (a client
that sends `x-api-key` to `/v1/models` is let in, as always); a record names the headers its
own clients use, and the 401's text and the OpenAPI schema name them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

from hearth.core.errors import HearthError

#: A face's error writer: the JSON object its clients read an error from.
ErrorShape = Callable[[HearthError], dict[str, Any]]
#: (method, path, Accept header) -> may this request be answered without the key?
Opens = Callable[[str, str, str], bool]
MANAGEMENT_MAX_BODY = 1024 * 1024  # the body cap outside the faces' `inference` prefixes


def openai_error(exc: HearthError) -> dict[str, Any]:
    """OpenAI's `{"error": {message, type, param, code}}`: Hearth's own shape, and the shape
    of every path no face owns."""
    return exc.to_openai()


@dataclass(frozen=True)
class KeyHeader:
    """A header that carries the API key: `Authorization: Bearer <key>`, `x-api-key: <key>`."""

    name: str  #: as written to people ("Authorization"); matched case-insensitively
    scheme: str = ""  #: the word before the key ("Bearer"), or "" for the bare key

    def token(self, headers: Mapping[str, str]) -> str | None:
        """The key this header carries in `headers` (lower-cased names), or None."""
        value = headers.get(self.name.lower(), "")
        if not self.scheme:
            return value or None
        scheme, _, token = value.partition(" ")
        return (token.strip() or None) if scheme.lower() == self.scheme.lower() else None

    @property
    def label(self) -> str:
        """How a person sends it: 'Authorization: Bearer <key>'."""
        return f"{self.name}: {self.scheme + ' ' if self.scheme else ''}<key>"

    def openapi(self) -> tuple[str, dict[str, str]]:
        """Its OpenAPI security scheme: (name, scheme object)."""
        if self.scheme:
            return self.scheme.lower(), {"type": "http", "scheme": self.scheme.lower()}
        return self.name, {"type": "apiKey", "in": "header", "name": self.name}


BEARER = KeyHeader("Authorization", "Bearer")
X_API_KEY = KeyHeader("x-api-key")


@dataclass(frozen=True)
class Face:
    """One face's record; see the module docstring for each field."""

    name: str
    routers: tuple[APIRouter, ...]
    paths: tuple[str, ...]
    error: ErrorShape = openai_error
    inference: tuple[str, ...] = ()
    keys: tuple[KeyHeader, ...] = (BEARER,)
    client_headers: tuple[str, ...] = ()
    public: tuple[str, ...] = ()
    opens: Opens | None = None


def _match(pattern: str, path: str) -> int:
    """How specifically `pattern` matches `path`: -1 for not at all, else a rank where a longer
    pattern ranks higher and an exact pattern above a starred one of the same length."""
    if pattern.endswith("*"):
        stem = pattern[:-1]
        return 2 * len(stem) if path.startswith(stem) else -1
    return 2 * len(pattern) + 1 if path == pattern else -1


def _ordered(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


class Faces:
    """The records of the faces an app serves, in mounting order, and the questions the core
    asks of them by path."""

    def __init__(self, faces: Iterable[Face], default: ErrorShape = openai_error) -> None:
        self.faces = tuple(faces)
        names = [face.name for face in self.faces]
        if len(set(names)) != len(names):
            raise ValueError(f"two faces share a name: {names}")
        for face in self.faces:
            for pattern in (*face.paths, *face.public, *face.inference):
                if not pattern.startswith("/") or "*" in pattern[:-1]:  # a star ends it only
                    raise ValueError(f"face {face.name!r}: {pattern!r} is not a path pattern")
        self.default = default  # the shape of a path no face owns
        self.inference_prefixes = _ordered(p for face in self.faces for p in face.inference)
        self.keys: tuple[KeyHeader, ...] = _ordered(k for face in self.faces for k in face.keys)
        self._owned = [(pattern, face) for face in self.faces for pattern in face.paths]
        self._public = _ordered(p for face in self.faces for p in face.public)
        self._opens = [face.opens for face in self.faces if face.opens is not None]

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    @property
    def routers(self) -> tuple[APIRouter, ...]:
        """Every face's routers, in the order the app mounts them."""
        return tuple(router for face in self.faces for router in face.routers)

    def owner(self, path: str) -> Face | None:
        """The face whose `paths` match `path` most specifically, or None."""
        best: tuple[int, Face | None] = (-1, None)
        for pattern, face in self._owned:
            rank = _match(pattern, path)
            if rank > best[0]:
                best = (rank, face)
        return best[1]

    def error(self, path: str) -> ErrorShape:
        """The error writer for a request to `path`: its owner's, else the default."""
        face = self.owner(path)
        return face.error if face is not None else self.default

    def is_inference(self, path: str) -> bool:
        """Does a body sent to `path` get the inference cap (`max_body_bytes`)?"""
        return path.startswith(self.inference_prefixes)

    def is_public(self, path: str) -> bool:
        """Is `path` readable without the key, whatever the request?"""
        return any(_match(pattern, path) >= 0 for pattern in self._public)

    def is_open(self, method: str, path: str, accept: str) -> bool:
        """Is this request answered without the key: a public path, or one a face opens
        (the web page at `/` asked for as HTML)?"""
        return self.is_public(path) or any(opens(method, path, accept) for opens in self._opens)

    def offered_keys(self, headers: Mapping[str, str]) -> list[str]:
        """Every key the request carries, one per key header that holds one."""
        return [token for key in self.keys if (token := key.token(headers)) is not None]

    @property
    def key_hint(self) -> str:
        """How to send the key, for a 401: "'Authorization: Bearer <key>' (or 'x-api-key:
        <key>')"."""
        first, *rest = [f"'{key.label}'" for key in self.keys]
        return f"{first} (or {' or '.join(rest)})" if rest else first

    @property
    def client_headers(self) -> tuple[str, ...]:
        """The request headers a browser client of some face sends: the key headers, JSON's
        Content-Type and each face's own (CORS allows them for `cors_origins`)."""
        own = (h.lower() for face in self.faces for h in face.client_headers)
        return _ordered(["content-type", *(k.name.lower() for k in self.keys), *own])
