"""The one reader of a GGUF file's header: metadata key-values and the tensor directory.

gguf-py's ``GGUFReader`` builds a Python object per array element, which takes many seconds (minutes
on a busy small CPU) for a 262k-token vocabulary. This reader walks the header over an mmap, turns
numeric arrays into numpy arrays in one copy, and can skip arrays longer than ``max_array`` (keeping
only their length) when the caller needs scalars only. Tensor data is never read: each
:class:`TensorInfo` records where its bytes are.

The value types, quant block sizes and key names are gguf-py's own (``GGUFValueType``,
``GGML_QUANT_SIZES``, ``Keys``), so a type gguf-py learns is a type this reader learns.

Layout (GGUF v2/v3, little-endian): magic ``GGUF``, version u32, tensor count u64, KV count u64,
then the KV pairs, then one directory entry per tensor, then the aligned tensor data.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFReader, GGUFValueType, Keys

from edgedistill.errors import EdgeDistillError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)

# gguf-py's own scalar table (value type -> numpy type), read little-endian.
_SCALAR_DTYPES = {GGUFValueType(t): np.dtype(np_type).newbyteorder("<")
                  for t, np_type in GGUFReader.gguf_scalar_to_np.items()}
_U32, _U64 = _SCALAR_DTYPES[GGUFValueType.UINT32], _SCALAR_DTYPES[GGUFValueType.UINT64]
# The u64 length before every string: read with struct, the per-string cost of a 262k-token vocabulary.
_STRING_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class SkippedArray:
    """An array longer than the reader was asked to keep: only its element type and length."""

    element_type: GGUFValueType
    count: int

    def __str__(self) -> str:
        return f"<array of {self.count}>"

    def __len__(self) -> int:  # so len() reads a kept and a skipped array alike
        return self.count


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: fastest-varying dimension first (reverse of numpy/torch)
    ggml_type: int
    offset: int  # absolute byte offset in the file
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return GGMLQuantizationType(self.ggml_type).name


@dataclass
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get(Keys.General.ARCHITECTURE)

    def arch_get(self, key: str, default: Any = None) -> Any:
        """A per-architecture key given as gguf-py's template, e.g. ``Keys.LLM.CONTEXT_LENGTH``."""
        return self.metadata.get(key.format(arch=self.architecture), default)


class _Cursor:
    """Sequential little-endian reads over a buffer, with a clear error at the end of the data."""

    def __init__(self, buf, path: Path, pos: int = 0):
        self.buf, self.path, self.pos = buf, path, pos

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise EdgeDistillError(
                f"{self.path} is truncated or corrupt: it ends while reading {what} at byte {self.pos}",
                hint="the download or copy was probably interrupted; get the file again",
            )

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        n = dtype.itemsize * count
        self._need(n, what)
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += n
        return out

    def scalar(self, dtype: np.dtype, what: str):
        return self.array(dtype, 1, what)[0].item()

    def raw_string(self, what: str) -> bytes:
        self._need(8, what)
        (n,) = _STRING_LENGTH.unpack_from(self.buf, self.pos)
        self.pos += 8
        self._need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw

    def string(self, what: str) -> str:
        return self.raw_string(what).decode("utf-8", errors="replace")

    def strings(self, count: int, key: str, keep: bool) -> list[str] | None:
        """``count`` strings of array ``key`` (None when not ``keep``); the vocabulary's hot loop."""
        buf, end, out = self.buf, len(self.buf), []
        for i in range(count):
            if self.pos + 8 > end:
                self._need(8, f"element {i} of {key}")
            (n,) = _STRING_LENGTH.unpack_from(buf, self.pos)
            start = self.pos + 8
            if start + n > end:
                self.pos = start
                self._need(n, f"element {i} of {key}")
            if keep:
                out.append(bytes(buf[start : start + n]).decode("utf-8", errors="replace"))
            self.pos = start + n
        return out if keep else None


def _value_type(cur: _Cursor, raw: int, key: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise EdgeDistillError(
            f"{cur.path}: metadata key {key!r} has an unknown value type {raw}; is the file corrupt?"
        ) from None


def _read_value(cur: _Cursor, vtype: GGUFValueType, key: str, max_array: int | None) -> Any:
    if vtype in _SCALAR_DTYPES:
        return cur.scalar(_SCALAR_DTYPES[vtype], f"the value of {key}")
    if vtype == GGUFValueType.STRING:
        return cur.string(f"the value of {key}")
    etype = _value_type(cur, cur.scalar(_U32, f"the array type of {key}"), key)
    count = cur.scalar(_U64, f"the array length of {key}")
    if max_array is not None and count > max_array:
        _skip_array(cur, etype, count, key)
        return SkippedArray(etype, count)
    if etype in _SCALAR_DTYPES:
        return cur.array(_SCALAR_DTYPES[etype], count, f"the array {key}")
    if etype == GGUFValueType.STRING:
        return cur.strings(count, key, keep=True)
    return [_read_value(cur, etype, f"{key}[{i}]", max_array) for i in range(count)]


def _skip_array(cur: _Cursor, etype: GGUFValueType, count: int, key: str) -> None:
    """Move past an array without building its elements (strings still need their lengths read)."""
    if etype in _SCALAR_DTYPES:
        n = _SCALAR_DTYPES[etype].itemsize * count
        cur._need(n, f"the array {key}")
        cur.pos += n
    elif etype == GGUFValueType.STRING:
        cur.strings(count, key, keep=False)
    else:
        for i in range(count):
            _read_value(cur, etype, f"{key}[{i}]", 0)


def read_gguf_header(path: str | os.PathLike, *, with_tensors: bool = True,
                     max_array: int | None = None) -> GGUFHeader:
    """Parse a GGUF file's header, metadata and (optionally) tensor directory.

    ``max_array``: arrays with more elements become :class:`SkippedArray` (None keeps every array;
    numeric ones as numpy arrays, string ones as lists). Raises :class:`EdgeDistillError` naming the
    file for a missing, non-GGUF, unsupported-version or truncated file.
    """
    path = Path(path)
    if not path.exists():
        raise EdgeDistillError(f"GGUF file {path} does not exist", hint="give the path of a local .gguf file")
    if not path.is_file():
        raise EdgeDistillError(f"{path} is not a file; expected a .gguf model file")
    size = path.stat().st_size
    if size < 24:
        raise EdgeDistillError(f"{path} is not a GGUF file (only {size} bytes): truncated or corrupt")
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return _parse(mm, path, size, with_tensors, max_array)
        finally:
            mm.close()


def _parse(buf, path: Path, size: int, with_tensors: bool, max_array: int | None) -> GGUFHeader:
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise EdgeDistillError(
            f"{path} is not a GGUF file (it starts with {bytes(buf[:4])!r}, not b'GGUF')",
            hint="give a llama.cpp .gguf model file, or a Hugging Face model directory",
        )
    cur = _Cursor(buf, path, pos=4)
    version = cur.scalar(_U32, "the version")
    if version not in SUPPORTED_VERSIONS:
        raise EdgeDistillError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    n_tensors = cur.scalar(_U64, "the tensor count")
    n_kv = cur.scalar(_U64, "the metadata count")
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        vtype = _value_type(cur, cur.scalar(_U32, f"the type of {key}"), key)
        metadata[key] = _read_value(cur, vtype, key, max_array)
    header = GGUFHeader(path=path, version=version, metadata=metadata)
    if with_tensors:
        header.tensors = _read_tensor_infos(cur, n_tensors, int(metadata.get(Keys.General.ALIGNMENT,
                                                                              GGUF_DEFAULT_ALIGNMENT)), size)
    return header


def _read_tensor_infos(cur: _Cursor, n_tensors: int, alignment: int, size: int) -> list[TensorInfo]:
    raw = []
    for i in range(n_tensors):
        name = cur.string(f"tensor name #{i}")
        n_dims = cur.scalar(_U32, f"the rank of tensor {name}")
        dims = tuple(int(d) for d in cur.array(_U64, n_dims, f"the shape of tensor {name}"))
        ggml_type = cur.scalar(_U32, f"the type of tensor {name}")
        offset = cur.scalar(_U64, f"the offset of tensor {name}")
        raw.append((name, dims, ggml_type, offset))
    data_start = (cur.pos + alignment - 1) // alignment * alignment
    tensors = []
    for name, dims, ggml_type, offset in raw:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise EdgeDistillError(f"{cur.path}: tensor {name} has an unknown ggml type {ggml_type}") from None
        info = TensorInfo(name, dims, ggml_type, data_start + offset, 0)
        info.n_bytes = info.n_elements // block * type_size
        if info.offset + info.n_bytes > size:
            raise EdgeDistillError(
                f"{cur.path} is truncated: tensor {name} needs bytes {info.offset}..{info.offset + info.n_bytes} "
                f"but the file has {size}",
                hint="the download or copy was probably interrupted; get the file again",
            )
        tensors.append(info)
    return tensors
