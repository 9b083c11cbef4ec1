"""Small synthetic GGUF files for Hearth's tests, written with the real `gguf.GGUFWriter`.

    path = write_gguf(tmp_path / "tiny.gguf", name="Tiny", chat_template="{{ messages }}")
    data = gguf_bytes(vocab_size=100)       # the same kind of file, as bytes (for mutations)
    bad = raw_gguf(kvs=[kv("general.architecture", "llama")], tensor_count=10**6)

`write_gguf` makes a valid file of a few KB: a llama-style header, a tokenizer whose tokens are
`token_strings(vocab_size)` ("<unk>", "<s>", "</s>", "tok3", ...), and `n_tensors` F32 tensors.
`raw_gguf` packs headers by hand, for hostile files GGUFWriter refuses to write.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter

__all__ = [
    "gguf_bytes",
    "kv",
    "pack_string",
    "raw_gguf",
    "tensor_info",
    "token_strings",
    "write_gguf",
]

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
_PACK = {
    GGUFValueType.UINT8: "B", GGUFValueType.INT8: "b", GGUFValueType.UINT16: "H",
    GGUFValueType.INT16: "h", GGUFValueType.UINT32: "I", GGUFValueType.INT32: "i",
    GGUFValueType.FLOAT32: "f", GGUFValueType.BOOL: "?", GGUFValueType.UINT64: "Q",
    GGUFValueType.INT64: "q", GGUFValueType.FLOAT64: "d",
}  # fmt: skip


def token_strings(vocab_size: int) -> list[str]:
    """The vocabulary `write_gguf` writes: three special tokens, then "tok3", "tok4", ..."""
    return [SPECIAL_TOKENS[i] if i < len(SPECIAL_TOKENS) else f"tok{i}" for i in range(vocab_size)]


def _value_type(value: Any) -> GGUFValueType:
    if isinstance(value, bool):
        return GGUFValueType.BOOL
    if isinstance(value, int):
        return GGUFValueType.INT32 if -(2**31) <= value < 2**31 else GGUFValueType.INT64
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, (str, bytes)):
        return GGUFValueType.STRING
    if isinstance(value, (list, tuple)):
        return GGUFValueType.ARRAY
    raise TypeError(f"cannot store {value!r} in GGUF metadata; pass (value, GGUFValueType)")


def write_gguf(
    path: str | os.PathLike[str],
    *,
    arch: str = "llama",
    name: str | None = None,
    context_length: int | None = 2048,
    embedding_length: int | None = None,
    block_count: int | None = None,
    vocab_size: int = 32,
    chat_template: str | None = None,
    file_type: int | None = None,
    size_label: str | None = None,
    bos_id: int | None = 1,
    eos_id: int | None = 2,
    n_tensors: int = 2,
    tensor_shape: tuple[int, ...] = (4, 4),
    tensor_type: str = "F32",
    split: tuple[int, int] | None = None,
    extra_kv: Mapping[str, Any] | None = None,
    version: int = 3,
) -> Path:
    """Write a small valid GGUF and return its path.

    `tensor_shape` is numpy order (GGUF stores the dims reversed); `tensor_type` is a
    GGMLQuantizationType name ("F32", "F16", "Q4_1", ...; quantized data is zeros) and its last
    dim must be a multiple of that type's block size. `split` is (split_no, split_count).
    `extra_kv` values may be plain Python values or (value, GGUFValueType) pairs.
    `version=2` patches the version field: v2 and v3 share one little-endian layout.
    """
    path = Path(path)
    writer = GGUFWriter(path, arch)
    if name is not None:
        writer.add_name(name)
    if size_label is not None:
        writer.add_size_label(size_label)
    if file_type is not None:
        writer.add_file_type(file_type)
    if context_length is not None:
        writer.add_context_length(context_length)
    if embedding_length is not None:
        writer.add_embedding_length(embedding_length)
    if block_count is not None:
        writer.add_block_count(block_count)
    if vocab_size:
        writer.add_tokenizer_model("llama")
        writer.add_token_list(token_strings(vocab_size))
        writer.add_token_scores([float(-i) for i in range(vocab_size)])
        writer.add_token_types([3 if i < len(SPECIAL_TOKENS) else 1 for i in range(vocab_size)])
    if bos_id is not None:
        writer.add_bos_token_id(bos_id)
    if eos_id is not None:
        writer.add_eos_token_id(eos_id)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if split is not None:
        writer.add_uint16("split.no", split[0])
        writer.add_uint16("split.count", split[1])
        writer.add_int32("split.tensors.count", n_tensors)
    for key, value in (extra_kv or {}).items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], GGUFValueType):
            writer.add_key_value(key, value[0], value[1])
        else:
            writer.add_key_value(key, value, _value_type(value))
    qtype = GGMLQuantizationType[tensor_type]
    for i in range(n_tensors):
        if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            dtype = np.float32 if qtype == GGMLQuantizationType.F32 else np.float16
            writer.add_tensor(f"blk.{i}.weight", np.full(tensor_shape, i, dtype=dtype))
        else:
            block, size = GGML_QUANT_SIZES[qtype]
            byte_shape = (*tensor_shape[:-1], tensor_shape[-1] // block * size)
            data = np.zeros(byte_shape, dtype=np.uint8)
            writer.add_tensor(f"blk.{i}.weight", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if version != 3:
        with open(path, "r+b") as f:
            f.seek(4)
            f.write(struct.pack("<I", version))
    return path


def gguf_bytes(**kwargs: Any) -> bytes:
    """`write_gguf(...)`'s file as bytes (written to, then removed from, a temp dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_gguf(Path(tmp) / "model.gguf", **kwargs).read_bytes()


# --- hand-packed headers, for files GGUFWriter would refuse to write ---------------------------


def pack_string(value: str | bytes) -> bytes:
    """A GGUF string: uint64 length, then the bytes (str is UTF-8 encoded)."""
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("<Q", len(data)) + data


def _pack_value(value: Any, vtype: GGUFValueType, item_type: GGUFValueType | None) -> bytes:
    if vtype == GGUFValueType.STRING:
        return pack_string(value)
    if vtype == GGUFValueType.ARRAY:
        items = list(value)
        sub = item_type or (_value_type(items[0]) if items else GGUFValueType.UINT8)
        body = b"".join(_pack_value(v, sub, None) for v in items)
        return struct.pack("<IQ", sub, len(items)) + body
    return struct.pack("<" + _PACK[vtype], value)


def kv(
    key: str | bytes,
    value: Any,
    vtype: GGUFValueType | int | None = None,
    item_type: GGUFValueType | None = None,
) -> bytes:
    """One packed metadata entry; the value type is inferred unless given (any int allowed)."""
    vt = _value_type(value) if vtype is None else vtype
    try:
        payload = _pack_value(value, GGUFValueType(vt), item_type)
    except ValueError:  # an unknown type code: write no value at all
        payload = b""
    return pack_string(key) + struct.pack("<I", vt) + payload


def tensor_info(name: str | bytes, dims: Sequence[int], ttype: int = 0, offset: int = 0) -> bytes:
    """One packed tensor info: name, n_dims, dims (GGUF order), type, data offset."""
    head = pack_string(name) + struct.pack("<I", len(dims))
    return head + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, offset)


def raw_gguf(
    *,
    kvs: Sequence[bytes] = (),
    tensors: Sequence[bytes] = (),
    kv_count: int | None = None,
    tensor_count: int | None = None,
    version: int = 3,
    magic: bytes = b"GGUF",
    data: bytes = b"",
    alignment: int = 32,
) -> bytes:
    """Pack a header by hand; counts default to the real ones; `data` follows, aligned."""
    header = magic + struct.pack(
        "<IQQ",
        version,
        len(tensors) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    header += b"".join(kvs) + b"".join(tensors)
    if data:
        header += b"\0" * (-len(header) % alignment) + data
    return header
