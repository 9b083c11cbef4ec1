"""One error tree (`hearth.core.errors`), written to the wire in one place, read back by its
code."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from conftest import FAKE_GGUF, make_model
from support.server import ThreadedServer

import hearth
from hearth.cli.client import HearthClient
from hearth.core import errors
from hearth.core.errors import (
    ChecksumMismatch,
    DownloadCancelled,
    HearthError,
    InvalidModelId,
    MethodNotAllowed,
    ModelNotFound,
    NotFound,
    Unavailable,
    from_wire,
)

KEYS = {"message", "type", "param", "code"}


def _subclasses(cls: type[HearthError]) -> set[type[HearthError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_hearth_error_is_defined_in_errors_py() -> None:
    for module in pkgutil.walk_packages(hearth.__path__, "hearth."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    elsewhere = {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _subclasses(HearthError)
        if cls.__module__ != "hearth.core.errors"
    }
    assert elsewhere == set()


def test_old_import_paths_still_name_the_same_classes() -> None:
    from jinja2.exceptions import SecurityError

    from hearth.downloads import common, transfer
    from hearth.engines import templates
    from hearth.server import serve
    from hearth.services.starter import StarterError

    assert common.DownloadFailed is transfer.DownloadFailed is errors.DownloadFailed
    assert common.DownloadCancelled is errors.DownloadCancelled
    assert common.ChecksumMismatch is errors.ChecksumMismatch
    assert common.BodyTooLarge is errors.BodyTooLarge
    assert serve.ServeError is errors.ServeError and StarterError is errors.StarterError
    unsafe = templates.UnsafeChatTemplate
    assert unsafe is errors.UnsafeChatTemplate
    assert issubclass(unsafe, errors.InvalidParameter) and issubclass(unsafe, SecurityError)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("POST", "/v1/nope"),
        ("DELETE", "/nope"),
        ("GET", "/v1/modelz/m"),
    ],
)
def test_an_unknown_route_is_a_404_naming_the_path(
    server: ThreadedServer, home: Path, method: str, path: str
) -> None:
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    with server.http() as http:
        r = http.request(method, path)
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert set(error) == KEYS and error["code"] == "not_found" and error["param"] is None
    assert error["type"] == "invalid_request_error"
    assert f"{method} " in error["message"] and "/docs" in error["message"]
    assert path.split("%")[0] in error["message"]


def test_a_path_below_a_model_is_a_nested_id(server: ThreadedServer, home: Path) -> None:
    """Ids nest as Jan's do (`unsloth/Qwen3-...`): /v1/models/m/nope names the model `m/nope`."""
    make_model(home, "m", {}, {"m.gguf": FAKE_GGUF})
    with server.http() as http:
        r = http.get("/v1/models/m/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "'m/nope'" in r.json()["error"]["message"]


def test_a_bad_id_where_a_model_route_would_be_is_a_bad_id(server: ThreadedServer) -> None:
    with server.http() as http:
        for method, path in [
            ("GET", "/v1/models/a%2F..%2Fb"),
            ("POST", "/v1/models/a%2F..%2Fb/start"),
            ("POST", "/v1/models/%2Fetc%2Fpasswd/start"),
        ]:
            r = http.request(method, path)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["code"] == "invalid_model_id"


def test_the_guard_and_the_handlers_write_errors_the_same_way(
    home: Path, server: ThreadedServer
) -> None:
    """The security middleware refuses before any route runs, with the handlers' writer."""
    with server.http() as http:
        refused = http.get("/v1/models", headers={"host": "evil.example"})
        handled = http.get("/v1/nope")
    assert refused.status_code == 403 and handled.status_code == 404
    for r in (refused, handled):
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert set(body) == {"error"} and set(body["error"]) == KEYS
        compact = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        assert r.content == compact
    assert refused.json()["error"]["code"] == "host_not_allowed"
    assert refused.headers["connection"] == "close"


def test_the_client_maps_errors_back_by_code(server: ThreadedServer) -> None:
    with HearthClient(server.url) as client:
        with pytest.raises(ModelNotFound) as missing:
            client.get_model("nope")
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        assert "does not exist" in missing.value.message and missing.value.status == 404
        with pytest.raises(NotFound) as route:
            client.request("GET", "/v1/nope")
        assert type(route.value) is NotFound and route.value.code == "not_found"
        with pytest.raises(InvalidModelId):
            client.request("GET", "/v1/models/a%2F..%2Fb")
        with pytest.raises(MethodNotAllowed):
            client.request("PUT", "/v1/models")
        with pytest.raises(NotFound) as job:
            client.request("DELETE", "/v1/downloads/no-such-job")
        assert "no-such-job" in job.value.message


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (404, {"error": {"message": "m", "code": "model_not_found"}}, ModelNotFound, None),
        (409, {"error": {"message": "m", "code": "download_cancelled"}}, DownloadCancelled, None),
        (502, {"error": {"message": "m", "code": "checksum_mismatch"}}, ChecksumMismatch, None),
        # a code no class declares (set on one instance): the class of the status, code kept
        (503, {"error": {"message": "m", "code": "home_busy"}}, Unavailable, "home_busy"),
        (404, {"error": {"message": "m", "code": None}}, NotFound, "not_found"),
        (418, {"error": {"message": "m", "code": "teapot"}}, HearthError, "teapot"),
        (503, {"detail": "not ours"}, Unavailable, "unavailable"),
        (500, None, HearthError, "internal_error"),
    ],
)
def test_from_wire(status: int, body: object, cls: type[HearthError], code: str | None) -> None:
    exc = from_wire(status, body, "fallback text")
    assert type(exc) is cls
    assert exc.code == (code or cls.code)
    expected = "m" if isinstance(body, dict) and "error" in body else "fallback text"
    assert exc.message == expected and str(exc) == expected
