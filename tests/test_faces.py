"""A face is a record (`server/face.py`, Hearth's in `server/faces.py`): the app mounts its
routers, and the error writer, the guard and the docs read it. Checked on Hearth's own app (every
route belongs to exactly one record) and on an app with a made-up face (its record alone gives
it its error shape, its body cap, its key header and its public path), over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, Request
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.core.errors import Conflict, HearthError
from hearth.server.app import create_app
from hearth.server.face import BEARER, Face, Faces, KeyHeader
from hearth.server.faces import DOCS, FACES, HEALTH, WEB
from hearth.services import Services

KEY = "s3cret"
MIB = 1024 * 1024


def _leaves(routes: list[BaseRoute]) -> list[Any]:
    """The routes a request can reach, through included routers (FastAPI's RouteContext)."""
    return list(iter_route_contexts(routes))


def test_every_route_of_the_app_belongs_to_exactly_one_face(home: Path) -> None:
    """By router (the record mounts it) and by path (the record owns it, so its errors are
    written in the record's shape): a route added to a face's router under a path its record
    does not own, or mounted outside every record, fails here."""
    app = create_app(Services.create(load_settings(home=home, env={})))
    holders: dict[int, list[str]] = {}
    for face in FACES:
        for leaf in _leaves([r for router in face.routers for r in router.routes]):
            holders.setdefault(id(leaf.original_route), []).append(face.name)
    outside = []
    seen = 0
    for leaf in _leaves(app.routes):
        names = holders.get(id(leaf.original_route))
        if names is None:
            outside.append(leaf.path)
            continue
        seen += 1
        assert len(names) == 1, (leaf.path, names)
        owner = FACES.owner(leaf.path)
        assert owner is not None and owner.name == names[0], (leaf.path, names, owner)
    # only what the docs install beside their router: FastAPI's schema and the /static mount
    assert sorted(outside) == ["/openapi.json", "/static"]
    assert FACES.owner(app.openapi_url or "") is DOCS and FACES.owner("/static/x.css") is DOCS
    assert seen == len(holders) > 40  # every record's route is served, none twice


@pytest.mark.parametrize(
    ("path", "face"),
    [
        ("/api/tags", "ollama"),
        ("/api", None),  # /api/* owns what is under /api/, not /api itself
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
        ("/v1/messagesx", None),
        ("/static/web/app.css", "web"),  # the longer pattern wins over the docs' /static/*
        ("/static/swagger-ui/x.css", "docs"),
        ("/", "web"),
        ("/nope", None),
    ],
)
def test_a_path_belongs_to_its_most_specific_pattern(path: str, face: str | None) -> None:
    owner = FACES.owner(path)
    assert (owner.name if owner else None) == face


def shout(exc: HearthError) -> dict[str, Any]:
    """The made-up dialect's error shape."""
    return {"shout": exc.message.upper(), "status": exc.status}


def made_up_face() -> Face:
    router = APIRouter(prefix="/x-test")

    @router.post("/fail")
    async def fail() -> None:
        raise Conflict("this route always refuses")

    @router.get("/typed")
    async def typed(n: int) -> dict[str, int]:
        return {"n": n}

    @router.post("/big")
    async def big(request: Request) -> dict[str, int]:
        return {"read": len(await request.body())}

    @router.get("/open")
    async def open_() -> dict[str, str]:
        return {"open": "yes"}

    return Face(
        "x-test",
        (router,),
        paths=("/x-test/*",),
        error=shout,
        inference=("/x-test/big",),
        keys=(KeyHeader("X-Test-Key"),),
        public=("/x-test/open",),
    )


@pytest.fixture
def made_up(home: Path) -> Any:
    settings = load_settings(home=home, flags={"api_key": KEY}, env={})
    faces = Faces([*FACES, made_up_face()])
    with ThreadedServer(Services.create(settings), faces=faces) as srv:
        yield srv


def test_a_made_up_face_writes_its_errors_in_its_own_shape(made_up: ThreadedServer) -> None:
    """The route's refusal, FastAPI's validation error and Starlette's 404 (the handlers), and
    the guard's 401 and 413 (before any route runs) all read the record's error shape."""
    key = {"X-Test-Key": KEY}
    with made_up.http() as http:
        refused = http.post("/x-test/fail", headers=key)
        assert refused.status_code == 409
        assert refused.json() == {"shout": "THIS ROUTE ALWAYS REFUSES", "status": 409}
        invalid = http.get("/x-test/typed", params={"n": "many"}, headers=key)
        assert invalid.status_code == 400 and set(invalid.json()) == {"shout", "status"}
        assert "'N'" in invalid.json()["shout"]  # the parameter it names, shouted
        missing = http.get("/x-test/nope", headers=key)
        assert missing.status_code == 404 and "NO ROUTE GET /X-TEST/NOPE" in missing.json()["shout"]
        nokey = http.get("/x-test/typed", params={"n": 1})
        assert nokey.status_code == 401 and nokey.json()["status"] == 401
        assert "'X-TEST-KEY: <KEY>'" in nokey.json()["shout"]  # the 401 names every key header
        large = http.post("/x-test/fail", content=b"{" + b" " * MIB + b"}", headers=key)
        assert large.status_code == 413 and "MANAGEMENT ROUTES" in large.json()["shout"]
        # the other faces keep their own shapes on the same app
        assert set(http.get("/v1/nope", headers=key).json()["error"]) >= {"message", "code"}
        assert http.get("/api/nope", headers=key).json()["error"].startswith("No route")


def test_a_made_up_face_gets_its_body_cap_key_header_and_public_path(
    made_up: ThreadedServer,
) -> None:
    with made_up.http() as http:
        body = b"{" + b" " * (2 * MIB) + b"}"  # over the management cap, under max_body_bytes
        read = http.post("/x-test/big", content=body, headers={"X-Test-Key": KEY})
        assert read.status_code == 200 and read.json() == {"read": len(body)}
        assert http.get("/x-test/typed", params={"n": 3}, headers={"x-test-key": KEY}).json() == {
            "n": 3
        }
        assert http.get("/x-test/open").json() == {"open": "yes"}  # public: no key needed
        wrong = http.get("/x-test/typed", params={"n": 3}, headers={"X-Test-Key": "nope"})
        assert wrong.status_code == 401
        assert http.get("/v1/models", headers={"X-Test-Key": KEY}).status_code == 200  # one key
        schemes = http.get("/openapi.json").json()["components"]["securitySchemes"]
        assert schemes["X-Test-Key"] == {"type": "apiKey", "in": "header", "name": "X-Test-Key"}
        assert list(schemes) == ["bearer", "x-api-key", "X-Test-Key"]


def test_the_web_page_and_liveness_need_no_ollama_face(home: Path) -> None:
    """`/` (the page for browsers, "Ollama is running" for probes) is the web face's: an app
    without Ollama's face still answers it, and /api/ is then nobody's (OpenAI's shape)."""
    services = Services.create(load_settings(home=home, env={}))
    faces = Faces([HEALTH, WEB, DOCS])
    with ThreadedServer(services, faces=faces) as srv, srv.http() as http:
        probe = http.get("/")
        assert probe.status_code == 200 and probe.text == "Ollama is running"
        page = http.get("/", headers={"accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        gone = http.get("/api/tags")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
        assert http.get("/v1/models").status_code == 404  # no management face either


def test_one_key_header_record_reads_its_own_header() -> None:
    headers = {"authorization": "bearer  k1", "x-test-key": "k2", "x-api-key": ""}
    assert BEARER.token(headers) == "k1" and BEARER.label == "Authorization: Bearer <key>"
    assert KeyHeader("X-Test-Key").token(headers) == "k2"
    assert KeyHeader("x-api-key").token(headers) is None  # empty is no key
    assert BEARER.token({"authorization": "Basic k1"}) is None


@pytest.mark.parametrize("pattern", ["api/*", "/a*/b", "/**"])
def test_a_record_with_a_malformed_path_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="not a path pattern"):
        Faces([Face("bad", (), paths=(pattern,))])
    with pytest.raises(ValueError, match="share a name"):
        Faces([HEALTH, HEALTH])
