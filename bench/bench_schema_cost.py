"""What a request's JSON schema costs the engine: the time of one chat completion (16 tokens,
temperature 0) under each of a few schemas, on one SmolLM2 engine with one slot.

Run by hand:  .venv/bin/python bench/bench_schema_cost.py [enum:1000 opt:500 ...]

Shapes (the number is the size): `enum:N` one property, an enum of N strings; `opt:N` one object
of N optional integer properties; `anyof:D` an `anyOf` of two branches nested D deep (each level
naming the one below twice through `$ref`). A schema over Hearth's limits (see README "Limits on
schemas") answers 400 at once: that is the point of the limits; to time what such a schema would
cost the engine, the limits are lifted here with `--no-limits` (never in a served Hearth).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.engines import add_smol
from support.server import ThreadedServer

from hearth.core.config import load_settings
from hearth.services import Services, schema_limits

DEFAULT = ["enum:10", "enum:1000", "enum:2000", "opt:100", "opt:500", "anyof:10"]


def schema(shape: str) -> dict[str, Any]:
    kind, _, raw = shape.partition(":")
    n = int(raw)
    if kind == "enum":
        values = [f"value {i:06d}" for i in range(n)]
        return {"type": "object", "properties": {"v": {"enum": values}}, "required": ["v"]}
    if kind == "opt":
        return {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(n)}}
    if kind == "anyof":
        defs: dict[str, Any] = {"a0": {"type": "string", "maxLength": 5}}
        for i in range(1, n + 1):
            defs[f"a{i}"] = {"anyOf": [{"$ref": f"#/$defs/a{i - 1}"}] * 2}
        return {"type": "object", "properties": {"v": {"$ref": f"#/$defs/a{n}"}},
                "required": ["v"], "$defs": defs}  # fmt: skip
    raise SystemExit(f"unknown shape {shape!r}: enum:N, opt:N or anyof:D")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", default=DEFAULT)
    parser.add_argument("--no-limits", action="store_true", help="time what the limits refuse")
    args = parser.parse_args()
    if args.no_limits:
        schema_limits.check_request = lambda body: None  # type: ignore[assignment]
    home = Path(tempfile.mkdtemp()) / "home"
    (home / "models").mkdir(parents=True)
    add_smol(home, "one", {"n_parallel": 1})
    ask = [{"role": "user", "content": "Pick one."}]
    with (
        ThreadedServer(Services.create(load_settings(home=home, env={}))) as srv,
        httpx.Client(base_url=srv.url, timeout=900) as http,
    ):
        http.post("/v1/models/one/start").raise_for_status()
        warm = {"model": "one", "messages": ask, "max_tokens": 1}  # the prompt, read once
        http.post("/v1/chat/completions", json=warm).raise_for_status()
        print(f"{'schema':<12} {'seconds':>8}  status")
        for shape in args.shapes:
            fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema(shape)}}
            body = {"model": "one", "messages": ask, "max_tokens": 16, "temperature": 0,
                    "response_format": fmt}  # fmt: skip
            started = time.monotonic()
            answer = http.post("/v1/chat/completions", json=body)
            seconds = time.monotonic() - started
            print(f"{shape:<12} {seconds:8.2f}  {answer.status_code}", flush=True)


if __name__ == "__main__":
    main()
