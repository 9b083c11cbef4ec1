"""The real aider (PyPI `aider-chat`, pinned) for the agent tests, in its own virtual environment.

aider pins ~110 packages (litellm, tree-sitter's language pack, scipy, ...): about 700 MB and
a minute or two to install, so it lives in a venv cached with SmolLM2 (~/.cache/hearth-tests,
or $HEARTH_TEST_CACHE), built once per machine under a lock and reused. A `.complete` marker
is written last: an install cut short is thrown away and redone, never half-used.

aider is kept offline: analytics off, no update or release-notes check, litellm reads its
bundled model-cost map (LITELLM_LOCAL_MODEL_COST_MAP) instead of fetching it, and the model's
metadata comes from a `--model-metadata-file`, so aider never fetches litellm's price list
from GitHub. HOME is a folder of the test's, so ~/.aider (its caches, its analytics id) is too.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.smollm import cache_dir

AIDER_VERSION = "0.86.2"
SPEC = f"aider-chat=={AIDER_VERSION}"


def aider_bin() -> Path:
    """The pinned `aider` executable, installing it on first use (safe across processes)."""
    root = cache_dir() / f"aider-{AIDER_VERSION}"
    exe = root / "venv" / "bin" / "aider"
    marker = root / ".complete"
    if marker.exists():
        return exe
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return exe
        shutil.rmtree(root / "venv", ignore_errors=True)  # what a cut-short install left
        subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
        pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--disable-pip-version-check", SPEC], check=True)
        marker.write_text(SPEC + "\n", encoding="utf-8")
    return exe


@dataclass
class AiderRun:
    returncode: int
    output: str
    #: aider's transcript of the chat (`.aider.chat.history.md` in the repository)
    history: str


def _write_model_files(folder: Path, model: str, max_tokens: int) -> tuple[Path, Path]:
    """A metadata file (so aider asks no website about the model) and a settings file that
    bounds what the model writes: greedy (aider sends temperature 0 itself), a seed, few
    tokens, and a stop at the first line's end so the answer ends by "stop", not "length"
    (a "length" answer makes aider offer to open a web page, which --yes-always accepts)."""
    provider = model.split("/", 1)[0]
    metadata = {
        model: {
            "max_input_tokens": 1024,
            "max_output_tokens": max_tokens,
            "max_tokens": 1024,
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "litellm_provider": provider,
            "mode": "chat",
        }
    }
    meta = folder / "model-metadata.json"
    meta.write_text(json.dumps(metadata), encoding="utf-8")
    settings = folder / "model-settings.yml"
    extra = {"max_tokens": max_tokens, "seed": 42, "stop": ["\n"]}
    settings.write_text(f"- name: {model}\n  extra_params: {json.dumps(extra)}\n", encoding="utf-8")
    return meta, settings


def run_aider(
    work: Path,
    model: str,
    message: str,
    env: dict[str, str],
    extra_args: tuple[str, ...] = (),
    max_tokens: int = 16,
) -> AiderRun:
    """aider, non-interactive, in a fresh git repository under `work`: one message, no
    commits, no repo map, plain output. `env` and `extra_args` say where the model is
    (`--openai-api-base` and OPENAI_API_KEY, or OLLAMA_API_BASE)."""
    repo, home = work / "repo", work / "home"
    repo.mkdir(parents=True)
    home.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    meta, settings = _write_model_files(work, model, max_tokens)
    keep = {name: os.environ[name] for name in ("PATH", "LANG", "TMPDIR") if name in os.environ}
    full_env = {
        **keep,
        "HOME": str(home),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        **env,
    }
    args = [
        str(aider_bin()),
        "--model", model,
        "--message", message,
        "--yes-always",
        "--no-auto-commits",
        "--no-check-update",
        "--analytics-disable",
        "--no-show-release-notes",
        "--no-show-model-warnings",
        "--no-pretty",
        "--no-fancy-input",
        "--map-tokens", "0",
        "--model-metadata-file", str(meta),
        "--model-settings-file", str(settings),
        *extra_args,
    ]  # fmt: skip
    done = subprocess.run(
        args,
        cwd=repo,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    history_file = repo / ".aider.chat.history.md"
    history = history_file.read_text(encoding="utf-8") if history_file.exists() else ""
    return AiderRun(done.returncode, done.stdout + done.stderr, history)
