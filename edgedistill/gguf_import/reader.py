"""A small, fast reader for the GGUF container: header, metadata and tensor directory.

gguf-py's ``GGUFReader`` builds a Python object per array element, which takes ~14 s on a
262k-token vocabulary; reading the metadata here takes well under a second, so a tokenizer can be
built from a large GGUF file without touching its weights. Tensor data is not read: each
:class:`TensorInfo` records where its bytes are, and :func:`tensor_bytes` maps them on demand.

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

from edgedistill.errors import EdgeDistillError

GGUF_MAGIC = b"GGUF"

# GGUF metadata value types -> (struct code, numpy dtype) for the fixed-size ones.
_SCALARS = {
    0: ("<B", np.uint8),
    1: ("<b", np.int8),
    2: ("<H", np.uint16),
    3: ("<h", np.int16),
    4: ("<I", np.uint32),
    5: ("<i", np.int32),
    6: ("<f", np.float32),
    7: ("<?", np.bool_),
    10: ("<Q", np.uint64),
    11: ("<q", np.int64),
    12: ("<d", np.float64),
}
_STRING, _ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGUF order: fastest-varying dimension first (reverse of numpy/torch)
    ggml_type: int
    offset: int  # absolute byte offset in the file
    n_bytes: int


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")


class _Cursor:
    """Sequential little-endian reads over a buffer, with a clear error at the end of the data."""

    def __init__(self, buf, path: Path):
        self.buf = buf
        self.pos = 0
        self.path = path

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > len(self.buf):
            raise EdgeDistillError(
                f"{self.path} is truncated: it ends while reading {what} at byte {self.pos}",
                hint="the download or copy was probably interrupted; get the file again",
            )

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self._need(size, what)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        self._need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def array(self, dtype, count: int, what: str) -> np.ndarray:
        n = np.dtype(dtype).itemsize * count
        self._need(n, what)
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += n
        return out


def _read_value(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype][0], f"the value of {key}")
    if vtype == _STRING:
        return cur.string(f"the value of {key}")
    if vtype == _ARRAY:
        etype = cur.unpack("<I", f"the array type of {key}")
        count = cur.unpack("<Q", f"the array length of {key}")
        if etype in _SCALARS:
            return cur.array(_SCALARS[etype][1], count, f"the array {key}")
        if etype == _STRING:
            return [cur.string(f"element {i} of {key}") for i in range(count)]
        if etype == _ARRAY:
            return [_read_value(cur, _ARRAY, f"{key}[{i}]") for i in range(count)]
    raise EdgeDistillError(f"{cur.path}: metadata key {key!r} has an unknown value type {vtype}; is the file corrupt?")


def read_gguf(path: str | os.PathLike, with_tensors: bool = True) -> GGUFFile:
    """Parse a GGUF file's header, metadata and (optionally) tensor directory.

    Raises :class:`EdgeDistillError` for a missing, non-GGUF, unsupported-version or truncated file.
    """
    path = Path(path)
    if not path.exists():
        raise EdgeDistillError(f"GGUF file {path} does not exist", hint="give the path of a local .gguf file")
    if not path.is_file():
        raise EdgeDistillError(f"{path} is not a file; expected a .gguf model file")
    size = path.stat().st_size
    if size < 24:
        raise EdgeDistillError(f"{path} is not a GGUF file (only {size} bytes)")
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return _parse(mm, path, size, with_tensors)
        finally:
            mm.close()


def _parse(buf, path: Path, size: int, with_tensors: bool) -> GGUFFile:
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise EdgeDistillError(
            f"{path} is not a GGUF file (it starts with {bytes(buf[:4])!r}, not b'GGUF')",
            hint="give a llama.cpp .gguf model file, or a Hugging Face model directory",
        )
    cur = _Cursor(buf, path)
    cur.pos = 4
    version = cur.unpack("<I", "the version")
    if version not in (2, 3):
        raise EdgeDistillError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    n_tensors = cur.unpack("<Q", "the tensor count")
    n_kv = cur.unpack("<Q", "the metadata count")
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        vtype = cur.unpack("<I", f"the type of {key}")
        metadata[key] = _read_value(cur, vtype, key)
    gguf = GGUFFile(path=path, version=version, metadata=metadata)
    if not with_tensors:
        return gguf

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    raw = []
    for i in range(n_tensors):
        name = cur.string(f"tensor name #{i}")
        n_dims = cur.unpack("<I", f"the rank of tensor {name}")
        dims = tuple(int(cur.unpack("<Q", f"the shape of tensor {name}")) for _ in range(n_dims))
        ggml_type = cur.unpack("<I", f"the type of tensor {name}")
        offset = cur.unpack("<Q", f"the offset of tensor {name}")
        raw.append((name, dims, ggml_type, offset))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = (cur.pos + alignment - 1) // alignment * alignment
    for name, dims, ggml_type, offset in raw:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise EdgeDistillError(f"{path}: tensor {name} has an unknown ggml type {ggml_type}") from None
        n_elements = int(np.prod(dims)) if dims else 1
        n_bytes = n_elements // block * type_size
        start = data_start + offset
        if start + n_bytes > size:
            raise EdgeDistillError(
                f"{path} is truncated: tensor {name} needs bytes {start}..{start + n_bytes} "
                f"but the file has {size}",
                hint="the download or copy was probably interrupted; get the file again",
            )
        gguf.tensors.append(TensorInfo(name, dims, ggml_type, start, n_bytes))
    return gguf
