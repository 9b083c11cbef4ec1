"""Schemathesis against a real `hearth serve` and its /openapi.json: generated and mutated
requests for every route, and not one server error (5xx) among them.

Bounded (a time budget and a number of examples per route) and seeded, so a run is repeatable.
The home holds a model folder, so id routes see both hits and misses; pulls and downloads go to
a closed loopback port or a name that does not resolve, never the network; a bare name (an Ollama
name) goes to a loopback registry that has no models, so it is a 404 rather than a 502."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_model
from support.fault_server import FaultServer
from support.server import HearthProcess, free_port

pytestmark = pytest.mark.slow  # SmolLM2 engines, `hearth serve` or seconds: see pyproject.toml


def test_no_generated_request_makes_a_server_error(home: Path) -> None:
    # A model with no file yet: its routes answer for real, and nothing can start an engine
    # (an engine that fails to start is a 502, which this check would count).
    source = {"filename": "m.gguf", "url": "https://x.invalid/m.gguf"}
    make_model(home, "m", {"description": "a model to poke at", "sources": [source]})
    registry = FaultServer()  # answers 404 to every manifest
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "HEARTH_OLLAMA_REGISTRY": registry.base,
    }
    with registry, HearthProcess(home, "--no-starter", env=env) as server:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")), "run",
                f"{server.url}/openapi.json",
                "--checks", "not_a_server_error",
                "--max-examples", "30",
                "--max-time", "60",
                "--seed", "8",
                "--request-timeout", "30",
                "--workers", "1",
                "--no-color",
            ],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    generated = re.search(r"(\d+) generated", report)
    assert generated and int(generated.group(1)) > 500, report[-3000:]  # it really ran
