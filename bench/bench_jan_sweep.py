"""The start-up cost Jan writes add in a Jan data folder: `janwrite.sweep_placing` (a crash
mid-placement undone) walks `llamacpp/models` for Hearth's marker on every start.

Run by hand:
  PYTHONPATH=src .venv/bin/python bench/bench_jan_sweep.py [--models 1000] [--runs 20]

Prints the median, min and max of the sweep over a tree of `--models` model folders (50
authors, one model.yml and one tiny GGUF each), none of them with a marker (the usual case).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hearth.models import janwrite


def build(root: Path, count: int) -> Path:
    models = root / "llamacpp" / "models"
    for i in range(count):
        folder = models / f"author{i % 50}" / f"model-{i}"
        folder.mkdir(parents=True)
        (folder / "model.yml").write_text("model_path: x\n")
        (folder / "model.gguf").write_bytes(b"GGUF")
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = build(Path(tmp), args.models)
        runs = []
        for _ in range(args.runs):
            start = time.perf_counter()
            janwrite.sweep_placing(models)
            runs.append((time.perf_counter() - start) * 1000)
    print(
        f"sweep_placing, {args.models:,} Jan models: median {statistics.median(runs):.1f} ms "
        f"(min {min(runs):.1f}, max {max(runs):.1f}, {args.runs} runs)"
    )


if __name__ == "__main__":
    main()
