"""`keep_alive`, read one way everywhere: the parser, its pydantic type, the setting, and the
two request bodies that carry it (start and inference), which refuse bad values alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.core.errors import InvalidParameter, InvalidRequest
from hearth.core.keepalive import KEEP_ALIVE_HELP, KeepAlive, keep_alive_param, parse_keep_alive

VALUES = [
    (300, 300.0),
    (0, 0.0),
    (1.5, 1.5),
    ("90", 90.0),
    (" 90 ", 90.0),
    ("+90", 90.0),
    ("5m", 300.0),
    ("5M", 300.0),
    ("1h30m", 5400.0),
    ("1.5s", 1.5),
    ("250ms", 0.25),
    ("0", 0.0),
    ("-1", -1.0),
    ("-5m", -1.0),
    (-5, -1.0),
]
REJECTED = ["soon", "5x", "", "m", "5 m", "1h 30m", True, False, None, [1], {}, "1e999",
            float("nan"), float("inf"), "nan"]  # fmt: skip


class _Body(BaseModel):
    keep_alive: KeepAlive = 300.0


@pytest.mark.parametrize(("value", "seconds"), VALUES)
def test_values(value: object, seconds: float) -> None:
    assert parse_keep_alive(value) == seconds
    assert keep_alive_param(value) == seconds
    assert _Body(keep_alive=value).keep_alive == seconds


@pytest.mark.parametrize("value", REJECTED)
def test_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_keep_alive(value)
    with pytest.raises(InvalidParameter) as info:
        keep_alive_param(value)
    assert info.value.param == "keep_alive" and KEEP_ALIVE_HELP in info.value.message
    with pytest.raises(ValidationError, match="must be seconds or a duration"):
        _Body(keep_alive=value)


def test_a_long_bad_value_is_quoted_short() -> None:
    with pytest.raises(InvalidParameter) as info:
        keep_alive_param("x" * 10_000)
    assert len(info.value.message) < 400


def test_the_setting_takes_the_same_values(home: Path) -> None:
    assert load_settings(home=home, env={"HEARTH_KEEP_ALIVE": "10m"}).keep_alive == 600
    assert load_settings(home=home, env={"HEARTH_KEEP_ALIVE": "-1"}).keep_alive == -1
    with pytest.raises(InvalidRequest) as info:
        load_settings(home=home, env={"HEARTH_KEEP_ALIVE": "soon"})
    assert info.value.param == "keep_alive" and "duration" in info.value.message


def test_start_and_inference_bodies_refuse_a_bad_keep_alive_alike(server: ThreadedServer) -> None:
    """Checked before any model is looked up or loaded: a 400 naming the field, never a 500."""
    with server.http() as http:
        started = http.post("/v1/models/anything/start", json={"keep_alive": "soon"})
        chat = http.post(
            "/v1/chat/completions",
            json={"model": "anything", "messages": [], "keep_alive": "soon"},
        )
    for r in (started, chat):
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_parameter" and error["param"] == "keep_alive"
    assert started.json()["error"]["message"] == chat.json()["error"]["message"]
