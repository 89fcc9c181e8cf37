"""A fast GGUF header reader for ``describe``: key-values and tensor infos, without token arrays.

gguf-py's ``GGUFReader`` decodes every element of every array into Python objects, which takes minutes
for a 262k-token vocabulary on a small CPU. This reader walks the header with ``struct`` over an
mmap, keeps scalars and short arrays, and records only the length of long arrays.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from edgedistill.errors import EdgeDistillError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_ARRAY = 64


class _Cursor:
    def __init__(self, buf, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        try:
            (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        except struct.error:
            raise EdgeDistillError(f"{self.path}: GGUF header is truncated") from None
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise EdgeDistillError(f"{self.path}: GGUF header is truncated")
        s = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.take("<I"), self.take("<Q")
            if count > MAX_ARRAY:
                if etype in _SCALARS:
                    self.pos += count * struct.calcsize(_SCALARS[etype])
                else:
                    for _ in range(count):
                        self.value(etype)
                return f"<array of {count}>"
            return [self.value(etype) for _ in range(count)]
        raise EdgeDistillError(f"{self.path}: unknown GGUF value type {vtype}; corrupt file?")


def read_gguf_header(path: Path) -> tuple[dict[str, Any], list[tuple[str, tuple[int, ...], str]]]:
    """(metadata, [(tensor name, shape, ggml type name)]) of a GGUF file."""
    import gguf

    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise EdgeDistillError(f"{path} is not a GGUF file (bad magic)")
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        cur = _Cursor(buf, path)
        cur.pos = 4
        version, n_tensors, n_kv = cur.take("<I"), cur.take("<Q"), cur.take("<Q")
        meta: dict[str, Any] = {"GGUF.version": version}
        for _ in range(n_kv):
            key = cur.string()
            meta[key] = cur.value(cur.take("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = cur.string()
            dims = tuple(cur.take("<Q") for _ in range(cur.take("<I")))
            ttype = cur.take("<I")
            cur.take("<Q")  # data offset
            try:
                tname = gguf.GGMLQuantizationType(ttype).name
            except ValueError:
                tname = f"type{ttype}"
            tensors.append((name, dims, tname))
    finally:
        buf.close()
    return meta, tensors


def describe_gguf(path: Path) -> dict[str, Any]:
    """Key-values (long arrays shown by length) and tensor types of a GGUF file."""
    path = Path(path)
    meta, tensors = read_gguf_header(path)
    meta.pop("GGUF.version", None)
    for key, value in list(meta.items()):
        if isinstance(value, str) and len(value) > 400:
            meta[key] = value[:400] + "..."
    types = {name: t for name, _, t in tensors}
    n_params = 0
    for _, dims, _ in tensors:
        p = 1
        for d in dims:
            p *= d
        n_params += p
    return {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "metadata": meta,
        "tensor_count": len(tensors),
        "tensor_type_counts": dict(Counter(types.values())),
        "tensor_types": types,
        "parameters": n_params,
    }
