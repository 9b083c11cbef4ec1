"""A bounded, hardened reader for GGUF headers: metadata and tensor infos, never tensor data.

Why not `gguf.GGUFReader`: it memory-maps the whole file and trusts every count and length in
it, and GGUF parsing has produced real CVEs (llama.cpp, Ollama). The importer runs on files users
download from anywhere, so this reader uses small buffered reads (no mmap, never the whole file),
checks every count and length against the bytes left in the file *before* allocating, enforces
hard caps and a wall-clock limit, and turns every problem into `InvalidModelFile` whose message
names the file, the problem and the fix. The `gguf` package is used only for its constants:
the value types (fixed by the format, kept here) and the tensor types' block sizes and the file
types' names, which grow with llama.cpp and so are borrowed from it, imported on the first
header read (it imports numpy: importing this module must not, see `hearth.cli`).

Policies:
- `metadata` keeps every scalar key plus arrays of at most 64 items (as lists). Bigger arrays
  and arrays of arrays are left out of it; `array_lengths` records the length of every array.
- Of `tokenizer.ggml.tokens` only the count and the bos/eos strings are kept; it is walked in
  1 MiB chunks with checkpoints every 1024 tokens so the two strings can be found afterwards.
- Strings are decoded as UTF-8 with errors="replace": a bad byte in a name must not block an
  import. Strings we skip (the vocabulary) are not decoded at all.
- Tensor data is never read, but its extent is checked against the file size, so a partial
  download fails here with a "truncated" message instead of later inside the engine.
"""

from __future__ import annotations

import enum
import functools
import io
import os
import stat
import struct
import time
from dataclasses import dataclass
from types import ModuleType
from typing import NoReturn

from hearth.core.errors import InvalidModelFile

__all__ = ["GGUFInfo", "MetadataValue", "read_gguf_header", "sniff_format"]

Scalar = int | float | bool | str
MetadataValue = Scalar | list[Scalar]

MAX_STRING = 16 << 20  # any single string
MAX_KEY = 64 << 10  # a metadata key
MAX_KEPT = 64 << 20  # memory for metadata and tensor names together (~64 B per entry + text)
MAX_KV = 1_000_000
MAX_TENSORS = 10_000_000
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME = 64  # GGML_MAX_NAME: llama.cpp rejects names this long or longer
SMALL_ARRAY = 64
INT64_MAX = (1 << 63) - 1
_CHUNK = 1 << 20
_CHECKPOINT = 1024  # tokens between remembered offsets; also how often loops check the clock

_FIX_CORRUPT = "The file is damaged or not a real model; download it again from a trusted source."
_FIX_TRUNCATED = "The download or copy was probably interrupted; download the file again."
_FIX_CONVERT = (
    "Only GGUF files can be imported; convert it with llama.cpp's convert_hf_to_gguf.py "
    "or download a .gguf build of the model."
)
_LEGACY = {b"lmgg": "GGML", b"fmgg": "GGMF", b"tjgg": "GGJT"}  # LE uint32 'ggml' 'ggmf' 'ggjt'


class GGUFValueType(enum.IntEnum):
    """The metadata value types of the GGUF format (gguf-py's enum of the same name)."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


@functools.cache
def _ggml() -> ModuleType:
    """gguf-py, for GGML_QUANT_SIZES, GGMLQuantizationType and LlamaFileType."""
    import gguf

    return gguf


_T = GGUFValueType
_FIXED: dict[int, struct.Struct] = {
    t: struct.Struct("<" + c)
    for t, c in [
        (_T.UINT8, "B"), (_T.INT8, "b"), (_T.UINT16, "H"), (_T.INT16, "h"),
        (_T.UINT32, "I"), (_T.INT32, "i"), (_T.FLOAT32, "f"), (_T.BOOL, "?"),
        (_T.UINT64, "Q"), (_T.INT64, "q"), (_T.FLOAT64, "d"),
    ]
}  # fmt: skip
_U32, _U64 = _FIXED[_T.UINT32], _FIXED[_T.UINT64]
_DIMS = [struct.Struct(f"<{n}Q") for n in range(MAX_DIMS + 1)]


@dataclass(frozen=True)
class GGUFInfo:
    """What the importer needs from a GGUF header, without the vocabulary or the weights."""

    path: str
    version: int
    tensor_count: int
    kv_count: int
    architecture: str
    name: str | None
    model_type: str | None  # general.type: "model", "adapter", "mmproj", ...
    file_type: int | None
    quantization: str | None  # "Q4_K_M", "Q4_1", "F16", ... (from file_type, else tensors)
    parameter_count: int  # sum over tensors of the product of their dims
    size_label: str | None  # general.size_label, e.g. "135M"
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    vocab_size: int | None  # length of tokenizer.ggml.tokens
    split_no: int | None
    split_count: int | None
    alignment: int
    header_bytes: int  # offset where tensor data begins
    data_bytes: int  # bytes of tensor data the tensor infos describe
    tensor_types: dict[str, int]  # tensor type name -> number of tensors
    metadata: dict[str, MetadataValue]  # scalars and arrays of <= 64 items
    array_lengths: dict[str, int]  # every array key -> its item count

    @property
    def format(self) -> str:
        """model.json's `format` value: "ggufv3" or "ggufv2"."""
        return f"ggufv{self.version}"


class _Source:
    """Buffered reads that refuse, before reading or allocating, anything past the file's end."""

    def __init__(self, f: io.RawIOBase, size: int, path: str, time_limit: float) -> None:
        self.f, self.size, self.path, self.time_limit = f, size, path, time_limit
        self.deadline = time.monotonic() + time_limit
        self.buf = b""
        self.base = 0  # file offset of buf[0]; the OS file position is base + len(buf)
        self.at = 0  # read position inside buf
        self.where = "the file header"  # what is being read, for error messages
        self.kept = 0  # bytes of strings kept so far
        self.arrays: dict[str, int] = {}  # array key -> length

    @property
    def pos(self) -> int:
        return self.base + self.at

    def left(self) -> int:
        return self.size - self.base - self.at

    def fail(self, problem: str, fix: str | None = None) -> NoReturn:
        """Raise with path, problem and fix; truncation gets the "download again" fix."""
        fix = fix or (_FIX_TRUNCATED if problem.startswith("truncated") else _FIX_CORRUPT)
        raise InvalidModelFile(f"{self.path} is not a valid GGUF model: {problem}. {fix}")

    def check_clock(self) -> None:
        if time.monotonic() >= self.deadline:
            self.fail(
                f"reading its header took longer than the {self.time_limit:g} s limit (stopped "
                f"at byte {self.pos} in {self.where})",
                "The file is probably corrupt or crafted to be slow to read; "
                "download it again from a trusted source.",
            )

    def need(self, n: int) -> None:
        """Make n bytes available in buf, reading at least a chunk (bounded by the file)."""
        if n > self.left():
            self.fail(f"truncated: the file ends at byte {self.size} inside {self.where}")
        avail = len(self.buf) - self.at
        if n <= avail:
            return
        end = self.base + len(self.buf)
        want = min(max(n - avail, _CHUNK), self.size - end)
        parts = [self.buf[self.at :]]
        while want > 0:
            data = self.f.read(want)
            if not data:
                self.fail(f"truncated: the file shrank to {end} bytes while being read")
            parts.append(data)
            want -= len(data)
            end += len(data)
        self.buf, self.base, self.at = b"".join(parts), self.pos, 0

    def unpack(self, st: struct.Struct) -> tuple[int | float | bool, ...]:
        self.need(st.size)
        values = st.unpack_from(self.buf, self.at)
        self.at += st.size
        return values

    def u32(self) -> int:
        return int(self.unpack(_U32)[0])

    def u64(self) -> int:
        return int(self.unpack(_U64)[0])

    def take(self, n: int) -> bytes:
        self.need(n)
        data = self.buf[self.at : self.at + n]
        self.at += n
        return data

    def seek(self, offset: int) -> None:
        self.f.seek(offset)
        self.buf, self.base, self.at = b"", offset, 0

    def skip(self, n: int) -> None:
        if n > self.left():
            self.need(n)  # raises the truncation error
        if n <= len(self.buf) - self.at:
            self.at += n
        else:
            self.seek(self.pos + n)

    def strlen(self, cap: int, what: str) -> int:
        n, at = self.u64(), f"{what} at byte {self.pos - 8} (in {self.where})"
        if n > cap:
            self.fail(f"{at} claims to be {n} bytes long, over the {cap}-byte limit")
        if n > self.left():
            self.fail(f"truncated: {at} claims {n} bytes; the file ends at byte {self.size}")
        return n

    def charge(self, n: int) -> None:
        """Bound the memory kept (metadata, tensor names), however many small entries there are."""
        self.kept += n
        if self.kept > MAX_KEPT:
            self.fail(f"holding its header would take more than {MAX_KEPT} bytes of memory")

    def string(self, cap: int = MAX_STRING, what: str = "a string", keep: bool = True) -> str:
        n = self.strlen(cap, what)
        self.charge(n if keep else 0)
        return self.take(n).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, checkpoints: list[int] | None = None) -> None:
        """Walk `count` strings fast: lengths are parsed straight from the buffer."""
        unpack, i = _U64.unpack_from, 0
        while i < count:
            self.check_clock()
            if checkpoints is not None:
                checkpoints.append(self.pos)
            stop = min(count, i + _CHECKPOINT)
            buf, p, end = self.buf, self.at, len(self.buf)
            while i < stop:
                if p + 8 <= end:
                    q = p + 8 + unpack(buf, p)[0]
                    if q <= end:
                        p, i = q, i + 1
                        continue
                self.at = p  # slow path: refill the buffer or seek past a long string
                self.skip(self.strlen(MAX_STRING, "a string in an array"))
                buf, p, end, i = self.buf, self.at, len(self.buf), i + 1
            self.at = p


def _regular_file(path: str | os.PathLike[str]) -> str:
    shown = str(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise InvalidModelFile(
            f"{shown} could not be read: {e.strerror or e}. Check the path and its permissions."
        ) from e
    if not stat.S_ISREG(st.st_mode):
        raise InvalidModelFile(f"{shown} is not a regular file. Point Hearth at a .gguf file.")
    return shown


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """Say what a file is from its first 4 bytes: "gguf", "ggml" (legacy GGML/GGMF/GGJT) or None."""
    shown = _regular_file(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InvalidModelFile(f"{shown} could not be read: {e.strerror or e}.") from e
    if head == b"GGUF":
        return "gguf"
    return "ggml" if head in _LEGACY else None


def _describe(head: bytes) -> tuple[str, str]:
    """Guess what a non-GGUF file is, so the message can say how to fix it."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip file, e.g. a PyTorch .bin/.pt checkpoint", _FIX_CONVERT
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself", "Run `git lfs pull` or download it again."
    if len(head) >= 9 and head[8:9] == b"{" and _U64.unpack_from(head)[0] < 1 << 30:
        return "a safetensors file", _FIX_CONVERT
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle, e.g. a PyTorch checkpoint", _FIX_CONVERT
    if head.startswith(b"\x1f\x8b"):
        return "a gzip archive", "Unpack it first; " + _FIX_CONVERT
    text = head.lstrip()
    if text[:1] == b"<":
        return "an HTML page, probably an error page saved instead of the model", (
            "Download it again from a link to the .gguf file itself."
        )
    if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file", _FIX_CONVERT
    return "an unknown format", _FIX_CONVERT


def read_gguf_header(path: str | os.PathLike[str], *, time_limit: float = 5.0) -> GGUFInfo:
    """Read a GGUF file's header safely; raise InvalidModelFile for anything wrong with it."""
    if not time_limit >= 0:
        raise ValueError(f"time_limit must be a number of seconds >= 0, not {time_limit}")
    shown = _regular_file(path)
    try:
        with open(path, "rb", buffering=0) as f:
            src = _Source(f, os.fstat(f.fileno()).st_size, shown, time_limit)
            try:
                return _parse(src)
            except (struct.error, ValueError, IndexError, OverflowError, KeyError) as e:
                # A safety net: the parser checks everything first, so this is a Hearth bug.
                src.fail(f"it could not be parsed at byte {src.pos} (internal error: {e!r})")
    except OSError as e:
        raise InvalidModelFile(f"{shown} could not be read: {e.strerror or e}.") from e


def _parse(src: _Source) -> GGUFInfo:
    if src.size == 0:
        src.fail("it is empty (0 bytes)", _FIX_TRUNCATED)
    src.need(min(32, src.size))
    head = src.buf[:32]
    if src.size < 4 and b"GGUF".startswith(head):
        src.fail(f"truncated: the file is only {src.size} bytes long")
    if head[:4] != b"GGUF":
        if head[:4] in _LEGACY:
            raise InvalidModelFile(
                f"{src.path} is a legacy {_LEGACY[head[:4]]} model (from before August 2023), "
                "which llama.cpp no longer loads. Convert it with llama.cpp's "
                "convert_llama_ggml_to_gguf.py or download a GGUF version of the model."
            )
        what, fix = _describe(head)
        raise InvalidModelFile(
            f"{src.path} is not a GGUF model ({what}). {fix}"  # never quote a stranger's bytes
        )
    src.at, src.where = 4, "the GGUF version"
    version = src.u32()
    if version == 1:
        src.fail("it is GGUF v1, which is no longer supported", "Re-convert it with llama.cpp.")
    if version not in (2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (1, 2, 3):
            src.fail(
                "it is a big-endian GGUF (made for s390x machines)",
                "Convert it with gguf-py's gguf_convert_endian.py or get the little-endian build.",
            )
        src.fail(
            f"it has GGUF version {version}; Hearth reads versions 2 and 3",
            "Update Hearth, or re-convert the model with a llama.cpp that writes GGUF v3.",
        )
    src.where = "the tensor and metadata counts"
    tensor_count, kv_count = src.u64(), src.u64()
    if kv_count > MAX_KV or tensor_count > MAX_TENSORS:
        src.fail(
            f"its header claims {kv_count} metadata entries and {tensor_count} tensors (limits: "
            f"{MAX_KV} and {MAX_TENSORS})"
        )
    if kv_count * 13 > src.left():  # key length (8) + type (4) + 1-byte value
        claim = f"header claims {kv_count} metadata entries"
        src.fail(f"truncated: {claim} but the file ends at byte {src.size}")
    metadata, src.arrays, tokens = _read_kvs(src, kv_count)
    return _finish(src, version, tensor_count, kv_count, metadata, tokens)


def _read_kvs(
    src: _Source, kv_count: int
) -> tuple[dict[str, MetadataValue], dict[str, int], list[int]]:
    """Read every key/value; return kept values, array lengths and token-string checkpoints."""
    metadata: dict[str, MetadataValue] = {}
    lengths: dict[str, int] = {}
    checkpoints: list[int] = []
    for i in range(kv_count):
        src.check_clock()
        src.where = f"metadata entry {i + 1} of {kv_count}"
        key = src.string(MAX_KEY, "a metadata key")
        src.charge(64)  # a dict entry's overhead
        if key in metadata or key in lengths:
            src.fail(f"metadata key {key[:80]!r} appears twice")
        src.where = f"metadata key {key[:80]!r}"
        vtype = _value_type(src, src.u32(), key)
        if vtype != _T.ARRAY:
            metadata[key] = src.string() if vtype == _T.STRING else src.unpack(_FIXED[vtype])[0]
            continue
        marks = checkpoints if key == "tokenizer.ggml.tokens" else None
        kept, lengths[key] = _array(src, key, marks)
        if kept is not None:
            metadata[key] = kept
    return metadata, lengths, checkpoints


def _value_type(src: _Source, vtype: int, key: str) -> int:
    if vtype not in _FIXED and vtype not in (_T.STRING, _T.ARRAY):
        src.fail(f"metadata key {key[:80]!r} has unknown value type {vtype} (known: 0-12)")
    return vtype


def _array(src: _Source, key: str, marks: list[int] | None) -> tuple[list[Scalar] | None, int]:
    """Read or skip one array; keep it only when small and flat. Nesting: one level at most."""
    itype = _value_type(src, src.u32(), key)
    count = src.u64()
    least = {int(_T.STRING): 8, int(_T.ARRAY): 12}.get(itype) or _FIXED[itype].size
    if count * least > src.left():
        src.fail(
            f"truncated: array {key[:80]!r} claims {count} items; only {src.left()} bytes are left"
        )
    if itype == _T.ARRAY:
        for j in range(count):
            if j % _CHECKPOINT == 0:
                src.check_clock()
            inner = _value_type(src, src.u32(), key)
            if inner == _T.ARRAY:
                src.fail(f"array {key[:80]!r} nests arrays more than two levels deep")
            n = src.u64()
            if inner == _T.STRING:
                if n * 8 > src.left():
                    src.fail(f"truncated: array {key[:80]!r} claims more strings than fit")
                src.skip_strings(n)
            else:
                src.skip(n * _FIXED[inner].size)
        return None, count
    if itype == _T.STRING:
        if count <= SMALL_ARRAY and marks is None:
            return [src.string() for _ in range(count)], count
        src.skip_strings(count, marks)
        return None, count
    st = _FIXED[itype]
    if count > SMALL_ARRAY:
        src.skip(count * st.size)
        return None, count
    return list(src.unpack(struct.Struct(f"<{count}{st.format[1:]}"))), count


def _typed(src: _Source, meta: dict[str, MetadataValue], key: str, kind: type) -> object:
    """A metadata value Hearth relies on, with a clear error if it has the wrong type."""
    value = meta.get(key)
    if key in src.arrays:
        src.fail(f"metadata key {key!r} should be {kind.__name__} but holds a long array")
    if value is None or (isinstance(value, kind) and not (kind is int and type(value) is bool)):
        return value
    src.fail(f"metadata key {key!r} should be {kind.__name__} but holds {value!r:.80}")


def _int(src: _Source, meta: dict[str, MetadataValue], key: str) -> int | None:
    return _typed(src, meta, key, int)  # type: ignore[return-value]


def _str(src: _Source, meta: dict[str, MetadataValue], key: str) -> str | None:
    return _typed(src, meta, key, str)  # type: ignore[return-value]


def _tensors(
    src: _Source, count: int, alignment: int
) -> tuple[int, dict[int, int], int, dict[int, int]]:
    """Walk the tensor infos: parameters, elements per type, data extent, tensors per type."""
    if count * 24 > src.left():  # name length + n_dims + type + offset
        src.fail(f"truncated: header claims {count} tensors but the file ends at byte {src.size}")
    ggml = _ggml()
    sizes = ggml.GGML_QUANT_SIZES
    names: set[bytes] = set()
    elements: dict[int, int] = {}
    tensors_by_type: dict[int, int] = {}
    params = data_end = 0
    for i in range(count):
        if i % _CHECKPOINT == 0:
            src.check_clock()
        src.where = f"tensor info {i + 1} of {count}"
        name_len = src.u64()
        if name_len >= MAX_TENSOR_NAME:
            src.fail(f"tensor {i + 1}'s name is {name_len} bytes (limit {MAX_TENSOR_NAME - 1})")
        raw = src.take(name_len)
        name = raw.decode("utf-8", errors="replace")
        if raw in names:
            src.fail(f"tensor {name!r} appears twice")
        names.add(raw)
        src.charge(name_len + 64)
        n_dims = src.u32()
        if n_dims > MAX_DIMS:
            src.fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        dims = src.unpack(_DIMS[n_dims])
        n = 1
        for d in dims:
            n *= int(d)
            if d < 1 or n > INT64_MAX:
                src.fail(f"tensor {name!r} has invalid dimensions {list(dims)}")
        ttype = src.u32()
        if ttype not in sizes:
            src.fail(f"tensor {name!r} has unknown type {ttype}", "Update Hearth's gguf package.")
        block, type_size = sizes[ggml.GGMLQuantizationType(ttype)]
        if dims and dims[0] % block:
            src.fail(f"tensor {name!r}: dimension {dims[0]} is not a multiple of {block}")
        offset = src.u64()
        if offset % alignment:
            src.fail(f"tensor {name!r} has offset {offset}, not a multiple of {alignment}")
        params += n
        elements[ttype] = elements.get(ttype, 0) + n
        tensors_by_type[ttype] = tensors_by_type.get(ttype, 0) + 1
        data_end = max(data_end, offset + n // block * type_size)
    return params, elements, data_end, tensors_by_type


def _quantization(file_type: int | None, elements: dict[int, int]) -> str | None:
    """llama.cpp's name for general.file_type, else the type holding the most weights."""
    ggml = _ggml()
    try:
        name = ggml.LlamaFileType(file_type).name if file_type is not None else "GUESSED"
    except ValueError:
        name = "GUESSED"
    if name != "GUESSED":
        return str(name).removeprefix("MOSTLY_").removeprefix("ALL_")
    if not elements:
        return None
    return str(ggml.GGMLQuantizationType(max(elements, key=elements.__getitem__)).name)


def _token_at(src: _Source, marks: list[int], count: int, index: int | None) -> str | None:
    if index is None or not 0 <= index < count:
        return None
    src.where = f"token {index} of tokenizer.ggml.tokens"
    src.seek(marks[index // _CHECKPOINT])
    src.skip_strings(index % _CHECKPOINT)
    return src.string(keep=False)


def _finish(
    src: _Source,
    version: int,
    tensor_count: int,
    kv_count: int,
    meta: dict[str, MetadataValue],
    marks: list[int],
) -> GGUFInfo:
    alignment = _int(src, meta, "general.alignment")
    alignment = 32 if alignment is None else alignment
    if alignment < 1 or alignment & (alignment - 1) or alignment > 1 << 20:
        src.fail(f"general.alignment is {alignment}, not a power of two up to 1 MiB")
    arch = _str(src, meta, "general.architecture")
    if not arch:
        src.fail("it has no general.architecture key, so no engine knows how to run it")
    params, elements, data_end, by_type = _tensors(src, tensor_count, alignment)
    header_bytes = -(-src.pos // alignment) * alignment
    if tensor_count and header_bytes + data_end > src.size:
        end = header_bytes + data_end
        src.fail(f"truncated: its tensors need data up to byte {end}; the file ends at {src.size}")
    file_type = _int(src, meta, "general.file_type")
    n_vocab = src.arrays.get("tokenizer.ggml.tokens")
    bos = _int(src, meta, "tokenizer.ggml.bos_token_id")
    eos = _int(src, meta, "tokenizer.ggml.eos_token_id")
    n_strings = len(marks) and (n_vocab or 0)  # 0 unless the tokens are strings

    def get(field: str) -> int | None:
        return _int(src, meta, f"{arch}.{field}")

    return GGUFInfo(
        path=src.path,
        version=version,
        tensor_count=tensor_count,
        kv_count=kv_count,
        architecture=arch,
        name=_str(src, meta, "general.name"),
        model_type=_str(src, meta, "general.type"),
        file_type=file_type,
        quantization=_quantization(file_type, elements),
        parameter_count=params,
        size_label=_str(src, meta, "general.size_label"),
        context_length=get("context_length"),
        embedding_length=get("embedding_length"),
        block_count=get("block_count"),
        chat_template=_str(src, meta, "tokenizer.chat_template"),
        bos_token_id=bos,
        eos_token_id=eos,
        bos_token=_token_at(src, marks, n_strings, bos),
        eos_token=_token_at(src, marks, n_strings, eos),
        vocab_size=n_vocab,
        split_no=_int(src, meta, "split.no"),
        split_count=_int(src, meta, "split.count"),
        alignment=alignment,
        header_bytes=header_bytes,
        data_bytes=data_end,
        tensor_types={_ggml().GGMLQuantizationType(t).name: c for t, c in by_type.items()},
        metadata=meta,
        array_lengths=src.arrays,
    )
