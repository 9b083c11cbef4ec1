"""Time Hearth's GGUF header reader against gguf.GGUFReader on a 150,000-token vocabulary.

Run by hand: `.venv/bin/python bench/bench_gguf_header.py [--repeats N] [--vocab N]`.
The target: read_gguf_header under 100 ms (warm cache) for such a file. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np

from hearth.models.gguf import read_gguf_header

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _tokens(n: int, rng: random.Random) -> list[str]:
    """BPE-looking token strings: specials, bytes, then word pieces with 'Ġ' space markers."""
    letters = "abcdefghijklmnopqrstuvwxyzéüñßçøå"
    out = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    out += [f"<0x{b:02X}>" for b in range(256)]
    seen = set(out)
    while len(out) < n:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(1, 12)))
        token = ("Ġ" if rng.random() < 0.5 else "") + word
        if token not in seen:
            seen.add(token)
            out.append(token)
    return out


def write_model(path: Path, vocab: int) -> Path:
    """A llama-style GGUF: 150k tokens + scores (f32) + token types (i32), template, 4 tensors."""
    rng = random.Random(0)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("Bench 150k")
    writer.add_context_length(32768)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(_tokens(vocab, rng))
    writer.add_token_scores([-float(i) for i in range(vocab)])
    writer.add_token_types([3 if i < 3 else 1 for i in range(vocab)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHAT_TEMPLATE)
    for i in range(4):
        writer.add_tensor(f"blk.{i}.weight", np.zeros((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm: page cache and imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--vocab", type=int, default=150_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model(Path(tmp) / "bench.gguf", args.vocab)
        info = read_gguf_header(path)
        assert info.vocab_size == args.vocab and info.eos_token == "<|im_end|>", info
        rows = {
            "hearth read_gguf_header": _time(lambda: read_gguf_header(path), args.repeats),
            "gguf.GGUFReader (mmap, all fields)": _time(
                lambda: gguf.GGUFReader(path), max(3, args.repeats // 10)
            ),
        }
        size_mb = path.stat().st_size / 1e6
    print(f"\nGGUF with a {args.vocab:,}-token vocabulary, {size_mb:.1f} MB, warm page cache\n")
    print("| reader | runs | min ms | median ms | p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for label, times in rows.items():
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(
            f"| {label} | {len(times)} | {times[0]:.1f} | {statistics.median(times):.1f} "
            f"| {p95:.1f} |"
        )


if __name__ == "__main__":
    main()
