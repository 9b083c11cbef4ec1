"""The GGUF header reader: right fields on real and synthetic files, and no way to break it.

Every hostile file must raise InvalidModelFile naming the file and the problem; fuzzed files
must parse or raise InvalidModelFile (never another exception, never a big allocation).
"""

from __future__ import annotations

import os
import random
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import gguf
import pytest
from gguf import GGUFValueType as VT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.gguf_factory import (
    gguf_bytes,
    kv,
    pack_string,
    raw_gguf,
    tensor_info,
    token_strings,
    write_gguf,
)
from support.smollm import smollm2_path

from hearth.core.errors import InvalidModelFile
from hearth.models.gguf import GGUFInfo, read_gguf_header, sniff_format

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ARCH = kv("general.architecture", "llama")
F32_4x4 = tensor_info("w", [4, 4], 0, 0)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _read_or_reject(path: Path) -> GGUFInfo | None:
    """Parse, or raise InvalidModelFile from a check (the internal-error safety net is a bug)."""
    try:
        return read_gguf_header(path)
    except InvalidModelFile as e:
        assert str(path) in e.message
        assert "internal error" not in e.message, e.message
        return None


# --- fields ---------------------------------------------------------------------------------


def test_reads_every_field_of_a_synthetic_v3_file(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "tiny.gguf",
        name="Tiny Llama",
        context_length=4096,
        embedding_length=64,
        block_count=2,
        vocab_size=40,
        chat_template="{{ messages }}",
        file_type=15,
        size_label="1K",
        n_tensors=3,
        tensor_shape=(8, 4),
        split=(1, 3),
    )
    info = read_gguf_header(path)
    assert (info.version, info.format, info.tensor_count) == (3, "ggufv3", 3)
    assert (info.architecture, info.name, info.model_type) == ("llama", "Tiny Llama", None)
    assert (info.file_type, info.quantization) == (15, "Q4_K_M")
    assert (info.parameter_count, info.size_label) == (3 * 32, "1K")
    assert (info.context_length, info.embedding_length, info.block_count) == (4096, 64, 2)
    assert info.chat_template == "{{ messages }}"
    assert (info.bos_token_id, info.bos_token, info.eos_token_id, info.eos_token) == (
        1,
        "<s>",
        2,
        "</s>",
    )
    assert info.vocab_size == 40
    assert (info.split_no, info.split_count) == (1, 3)
    assert info.kv_count == len(info.metadata) + 1  # all kept but the token list
    assert info.array_lengths["tokenizer.ggml.tokens"] == 40
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.tensor_types == {"F32": 3}
    assert info.data_bytes == 3 * 32 * 4


def test_version_2_reads_like_version_3(tmp_path: Path) -> None:
    info = read_gguf_header(write_gguf(tmp_path / "v2.gguf", version=2, name="Old"))
    assert (info.version, info.format, info.name) == (2, "ggufv2", "Old")
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")


def test_absent_optional_keys_are_none(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "bare.gguf", context_length=None, vocab_size=0, bos_id=None)
    info = read_gguf_header(path)
    assert info.name is info.chat_template is info.context_length is info.file_type is None
    assert info.vocab_size is info.bos_token_id is info.bos_token is None
    assert info.eos_token_id == 2 and info.eos_token is None  # no vocabulary to look it up in
    assert info.split_no is info.split_count is info.size_label is None


def test_header_bytes_and_metadata_agree_with_gguf_reader(tmp_path: Path) -> None:
    extra = {
        "x.u8": (200, VT.UINT8),
        "x.i8": (-5, VT.INT8),
        "x.u16": (60000, VT.UINT16),
        "x.i16": (-300, VT.INT16),
        "x.u64": (2**63 + 5, VT.UINT64),
        "x.i64": (-(2**40), VT.INT64),
        "x.f64": (0.1, VT.FLOAT64),
        "x.bool": True,
        "x.small": [1.5, 2.5],
        "x.words": ["a", "b"],
    }
    path = write_gguf(tmp_path / "types.gguf", extra_kv=extra, n_tensors=5, vocab_size=100)
    info = read_gguf_header(path)
    reader = gguf.GGUFReader(path)
    assert info.header_bytes == reader.data_offset
    assert info.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == VT.ARRAY:
            assert info.array_lengths[key] == len(field.data)
        if key in info.metadata:
            expected = field.contents()
            assert info.metadata[key] == pytest.approx(expected), key
    assert info.metadata["x.u64"] == 2**63 + 5 and info.metadata["x.bool"] is True


def test_big_and_nested_arrays_are_summarized_by_length(tmp_path: Path) -> None:
    extra = {"x.big": list(range(65)), "x.edge": list(range(64)), "x.nested": [[1, 2], [3]]}
    info = read_gguf_header(write_gguf(tmp_path / "a.gguf", extra_kv=extra, vocab_size=100))
    assert "x.big" not in info.metadata and info.array_lengths["x.big"] == 65
    assert info.metadata["x.edge"] == list(range(64))
    assert "x.nested" not in info.metadata and info.array_lengths["x.nested"] == 2
    assert "tokenizer.ggml.scores" not in info.metadata
    assert info.array_lengths["tokenizer.ggml.scores"] == 100


@pytest.mark.parametrize(
    ("file_type", "tensor_type", "expected"),
    [
        (15, "F32", "Q4_K_M"),
        (3, "F32", "Q4_1"),
        (1, "F32", "F16"),
        (0, "F32", "F32"),
        (7, "F32", "Q8_0"),
        (None, "F16", "F16"),  # no file_type: the type holding the most weights
        (None, "Q4_1", "Q4_1"),
        (4242, "Q8_0", "Q8_0"),  # unknown file_type: inferred too
    ],
)
def test_quantization_name(
    tmp_path: Path, file_type: int | None, tensor_type: str, expected: str
) -> None:
    path = write_gguf(
        tmp_path / "q.gguf", file_type=file_type, tensor_type=tensor_type, tensor_shape=(2, 64)
    )
    info = read_gguf_header(path)
    assert info.quantization == expected
    assert info.tensor_types == {tensor_type: 2}


@pytest.mark.parametrize(("bos", "eos"), [(0, 1023), (1024, 2999), (2047, 2048), (5, 3000)])
def test_special_tokens_found_across_checkpoints(tmp_path: Path, bos: int, eos: int) -> None:
    path = write_gguf(tmp_path / "v.gguf", vocab_size=3000, bos_id=bos, eos_id=eos)
    info = read_gguf_header(path)
    tokens = token_strings(3000)
    assert info.bos_token == tokens[bos]
    assert info.eos_token == (tokens[eos] if eos < 3000 else None)  # out of range: no string
    assert info.eos_token_id == eos


def test_vocab_with_a_string_longer_than_a_read_chunk(tmp_path: Path) -> None:
    words = ["a", "b" * (3 << 20), *[f"t{i}" for i in range(2000)]]
    tokens = kv("tokenizer.ggml.tokens", words, VT.ARRAY, VT.STRING)
    data = raw_gguf(kvs=[ARCH, tokens, kv("tokenizer.ggml.eos_token_id", 1500, VT.UINT32)])
    info = read_gguf_header(_write(tmp_path / "long.gguf", data))
    assert (info.vocab_size, info.eos_token) == (2002, "t1498")


def test_non_string_tokens_give_no_token_strings(tmp_path: Path) -> None:
    tokens = kv("tokenizer.ggml.tokens", list(range(10)), VT.ARRAY, VT.INT32)
    data = raw_gguf(kvs=[ARCH, tokens, kv("tokenizer.ggml.bos_token_id", 1, VT.UINT32)])
    info = read_gguf_header(_write(tmp_path / "t.gguf", data))
    assert (info.vocab_size, info.bos_token_id, info.bos_token) == (10, 1, None)


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    data = raw_gguf(kvs=[ARCH, kv("general.name", b"caf\xe9 \xff")])
    info = read_gguf_header(_write(tmp_path / "u.gguf", data))
    assert info.name == "caf\ufffd \ufffd"


def test_real_smollm2_model() -> None:
    info = read_gguf_header(smollm2_path())
    assert (info.format, info.architecture, info.quantization) == ("ggufv3", "llama", "Q4_1")
    assert info.context_length == 8192
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert (info.bos_token, info.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert 134_000_000 <= info.parameter_count <= 135_500_000
    assert (info.size_label, info.vocab_size, info.tensor_count) == ("135M", 49152, 272)
    assert info.header_bytes + info.data_bytes == smollm2_path().stat().st_size
    assert sniff_format(smollm2_path()) == "gguf"


# --- sniffing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"GGUF\x03\x00\x00\x00", "gguf"),
        (struct.pack("<I", 0x67676D6C) + b"\0" * 8, "ggml"),
        (struct.pack("<I", 0x67676D66) + b"\0" * 8, "ggml"),
        (struct.pack("<I", 0x67676A74) + b"\0" * 8, "ggml"),
        (b"PK\x03\x04rest", None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff_format(tmp_path: Path, head: bytes, expected: str | None) -> None:
    assert sniff_format(_write(tmp_path / "f", head)) == expected


def test_sniff_missing_file_is_invalid_model_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="could not be read"):
        sniff_format(tmp_path / "absent.gguf")


# --- hostile files --------------------------------------------------------------------------


def _valid() -> bytes:
    return raw_gguf(kvs=[ARCH], tensors=[F32_4x4], data=b"\0" * 64)


def _header(version: int = 3, tensors: int = 0, kvs: int = 0, order: str = "<") -> bytes:
    return b"GGUF" + struct.pack(order + "IQQ", version, tensors, kvs)


def _one_kv(body: bytes) -> bytes:
    """A header with one metadata entry, padded so the entry count alone is plausible."""
    return _header(3, 0, 1) + body + b"\0" * 32


def _str_kv(key: str, length: int) -> bytes:
    return pack_string(key) + struct.pack("<IQ", VT.STRING, length)


def _array_kv(key: str, item_type: int, count: int) -> bytes:
    return pack_string(key) + struct.pack("<IIQ", VT.ARRAY, item_type, count)


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "is empty"),
    "partial magic": (lambda: b"GG", "truncated"),
    "text": (lambda: b"hello, I am a README\n", "text file"),
    "zip": (lambda: b"PK\x03\x04" + b"\0" * 40, "zip file"),
    "html": (lambda: b"<!DOCTYPE html><html>Not found</html>", "HTML"),
    "lfs pointer": (lambda: b"version https://git-lfs.github.com/spec/v1\n", "git lfs pull"),
    "safetensors": (lambda: struct.pack("<Q", 60) + b'{"__metadata__":{}}', "safetensors"),
    "pickle": (lambda: b"\x80\x02}q\x00.", "pickle"),
    "random bytes": (lambda: random.Random(7).randbytes(4096), "not a GGUF model"),
    "legacy ggjt": (lambda: struct.pack("<II", 0x67676A74, 3) + b"\0" * 64, "legacy GGJT"),
    "legacy ggml": (lambda: struct.pack("<I", 0x67676D6C) + b"\0" * 64, "legacy GGML"),
    "magic only": (lambda: b"GGUF", "truncated"),
    "version 1": (lambda: _header(1) + b"\0" * 16, "GGUF v1"),
    "big-endian": (lambda: _header(3, order=">"), "big-endian"),
    "unknown version": (lambda: _header(4), "version 4"),
    "version 0": (lambda: _header(0), "version 0"),
    "kv count over cap": (lambda: _header(3, 0, 2**40), "metadata entries"),
    "tensor count over cap": (lambda: _header(3, 2**60, 0), "tensors (limits"),
    "kv count past file end": (lambda: _header(3, 0, 1000) + ARCH, "claims 1000 metadata"),
    "metadata over the memory budget": (
        lambda: raw_gguf(kvs=[ARCH, *(kv(f"k{i}", b"x" * (14 << 20)) for i in range(5))]),
        "more than 67108864 bytes of memory",
    ),
    "tensor count past end": (lambda: raw_gguf(kvs=[ARCH], tensor_count=100), "claims 100 tensors"),
    "huge key length": (lambda: _one_kv(struct.pack("<Q", 2**63) + b"k"), "over the"),
    "key past file end": (lambda: _one_kv(struct.pack("<Q", 5000) + b"\0" * 16), "5000"),
    "string over 16 MiB": (lambda: _one_kv(_str_kv("k", 17 << 20)), "over the 16777216"),
    "string past end": (lambda: _one_kv(_str_kv("k", 900) + b"x" * 20), "claims 900"),
    "u32 array past end": (lambda: _one_kv(_array_kv("a", VT.UINT32, 2**61)), "items; only"),
    "string array past end": (
        lambda: _one_kv(_array_kv("a", VT.STRING, 10**6)),
        "claims 1000000 items",
    ),
    "nested array past end": (
        lambda: _one_kv(_array_kv("a", VT.ARRAY, 10**9)),
        "claims 1000000000 items",
    ),
    "string in array too long": (
        lambda: _one_kv(_array_kv("a", VT.STRING, 1) + struct.pack("<Q", 2**40)),
        "over the",
    ),
    "unknown value type": (lambda: raw_gguf(kvs=[ARCH, kv("k", 0, 13)]), "unknown value type 13"),
    "unknown array type": (
        lambda: _one_kv(_array_kv("a", 99, 0)),
        "unknown value type 99",
    ),
    "arrays nested 3 deep": (
        lambda: _one_kv(_array_kv("a", VT.ARRAY, 1) + struct.pack("<IQ", VT.ARRAY, 0)),
        "nests arrays",
    ),
    "duplicate key": (lambda: raw_gguf(kvs=[ARCH, ARCH]), "appears twice"),
    "no architecture": (lambda: raw_gguf(kvs=[kv("general.name", "x")]), "general.architecture"),
    "architecture not a string": (
        lambda: raw_gguf(kvs=[kv("general.architecture", 7, VT.UINT32)]),
        "should be str",
    ),
    "context length a string": (
        lambda: raw_gguf(kvs=[ARCH, kv("llama.context_length", "4096")]),
        "should be int",
    ),
    "context length a long array": (
        lambda: raw_gguf(kvs=[ARCH, kv("llama.context_length", list(range(100)))]),
        "long array",
    ),
    "alignment zero": (
        lambda: raw_gguf(kvs=[ARCH, kv("general.alignment", 0, VT.UINT32)]),
        "power of two",
    ),
    "alignment not a power of two": (
        lambda: raw_gguf(kvs=[ARCH, kv("general.alignment", 48, VT.UINT32)]),
        "power of two",
    ),
    "five dimensions": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [1] * 5)]),
        "5 dimensions",
    ),
    "zero dimension": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [4, 0])]),
        "invalid dimensions",
    ),
    "dims overflow int64": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [2**32, 2**32])]),
        "invalid dimensions",
    ),
    "unknown tensor type": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [4], 99)]),
        "unknown type 99",
    ),
    "tensor name too long": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w" * 100, [4])]),
        "name is 100 bytes",
    ),
    "duplicate tensor": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[F32_4x4, F32_4x4], data=b"\0" * 64),
        "appears twice",
    ),
    "misaligned offset": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [4], 0, 4)], data=b"\0" * 64),
        "not a multiple of 32",
    ),
    "row not whole blocks": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [10], 2)], data=b"\0" * 64),
        "not a multiple of 32",
    ),
    "tensor data missing": (lambda: raw_gguf(kvs=[ARCH], tensors=[F32_4x4]), "need data up to"),
    "tensor offset past end": (
        lambda: raw_gguf(kvs=[ARCH], tensors=[tensor_info("w", [4], 0, 2**62)], data=b"\0" * 32),
        "need data up to",
    ),
    "cut inside the vocabulary": (lambda: gguf_bytes(vocab_size=500)[:3000], "truncated"),
    "cut inside tensor data": (lambda: _valid()[:-10], "truncated"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_rejected(tmp_path: Path, case: str) -> None:
    build, problem = HOSTILE[case]
    path = _write(tmp_path / "hostile.gguf", build())
    with pytest.raises(InvalidModelFile) as raised:
        read_gguf_header(path)
    assert str(path) in raised.value.message
    assert problem.lower() in raised.value.message.lower()
    assert "internal error" not in raised.value.message


def test_the_valid_base_of_hostile_cases_parses(tmp_path: Path) -> None:
    info = read_gguf_header(_write(tmp_path / "ok.gguf", _valid()))
    assert (info.parameter_count, info.quantization, info.data_bytes) == (16, "F32", 64)


def test_time_limit_stops_reading(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "slow.gguf")
    with pytest.raises(InvalidModelFile, match="longer than the 0 s limit"):
        read_gguf_header(path, time_limit=0)


def test_missing_file_and_directory_are_invalid_model_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelFile, match="could not be read"):
        read_gguf_header(tmp_path / "absent.gguf")
    with pytest.raises(InvalidModelFile, match="not a regular file"):
        read_gguf_header(tmp_path)


def test_every_truncation_of_a_valid_file_is_reported(tmp_path: Path) -> None:
    data = gguf_bytes(vocab_size=20, n_tensors=1, chat_template="{{ x }}")
    path = tmp_path / "cut.gguf"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidModelFile) as raised:
            read_gguf_header(path)
        assert ("truncated" if cut else "is empty") in raised.value.message, cut


# --- fuzzing --------------------------------------------------------------------------------

BASE = gguf_bytes(vocab_size=40, chat_template="{{ messages }}", extra_kv={"x.n": [1, 2, 3]})
EXTREMES = [0, 1, 7, 8, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.binary(max_size=600), gguf_prefix=st.booleans())
@pytest.mark.slow  # over ~0.5 s: out of the fast loop (kept under 60 s)
def test_fuzz_random_bytes(fuzz_dir: Path, data: bytes, gguf_prefix: bool) -> None:
    head = b"GGUF" + struct.pack("<I", 3) if gguf_prefix else b""
    _read_or_reject(_write(fuzz_dir / "random.gguf", head + data))


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), max_size=6),
    words=st.lists(st.tuples(st.integers(0, len(BASE) - 8), st.sampled_from(EXTREMES)), max_size=2),
    cut=st.integers(0, len(BASE)),
)
@pytest.mark.slow
def test_fuzz_mutated_valid_header(
    fuzz_dir: Path, flips: list[tuple[int, int]], words: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(BASE)
    for at, value in flips:
        data[at] = value
    for at, value in words:  # extreme counts and lengths land where length fields live
        data[at : at + 8] = struct.pack("<Q", value)
    path = _write(fuzz_dir / "mutated.gguf", bytes(data[: max(cut, len(BASE) // 2)]))
    tracemalloc.start()
    try:
        _read_or_reject(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"reading a {os.path.getsize(path)}-byte file peaked at {peak} bytes"


def test_the_value_types_kept_here_are_gguf_pys() -> None:
    """The reader keeps the format's value types itself (importing gguf imports numpy)."""
    from hearth.models.gguf import GGUFValueType as Local

    assert {t.name: int(t) for t in Local} == {t.name: int(t) for t in VT}
