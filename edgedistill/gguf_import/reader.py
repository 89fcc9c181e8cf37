"""The GGUF container as the importer reads it: :mod:`edgedistill.gguf_header` under its import names.

The one header reader lives in ``edgedistill.gguf_header`` (inspect, bench, eval and the llama.cpp
runtime read files through it too); this module keeps the names the importer and tokenizer use.
"""

from __future__ import annotations

import os

from edgedistill.gguf_header import GGUF_MAGIC, GGUFHeader, TensorInfo, read_gguf_header

GGUFFile = GGUFHeader


def read_gguf(path: str | os.PathLike, with_tensors: bool = True) -> GGUFFile:
    """Every key-value (arrays in full) and, optionally, the tensor directory of a GGUF file."""
    return read_gguf_header(path, with_tensors=with_tensors)


__all__ = ["GGUF_MAGIC", "GGUFFile", "TensorInfo", "read_gguf"]
