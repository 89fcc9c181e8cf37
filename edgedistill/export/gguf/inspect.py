"""``describe`` for a GGUF artifact: key-values (long arrays shown by length) and tensor types.

The header is read by the one GGUF reader, :mod:`edgedistill.gguf_header`; arrays longer than
``MAX_ARRAY`` are skipped there (a 262k-token vocabulary would otherwise fill the output and the time).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.gguf_header import SkippedArray, read_gguf_header

MAX_ARRAY = 64


def _shown(value: Any) -> Any:
    """A metadata value as JSON shows it: skipped arrays by length, numpy arrays as lists, long strings cut."""
    if isinstance(value, SkippedArray):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, str) and len(value) > 400:
        return value[:400] + "..."
    return value


def describe_gguf(path: Path) -> dict[str, Any]:
    """Key-values (long arrays shown by length) and tensor types of a GGUF file."""
    path = Path(path)
    header = read_gguf_header(path, max_array=MAX_ARRAY)
    meta = {key: _shown(value) for key, value in header.metadata.items()}
    types = {t.name: t.type_name for t in header.tensors}
    n_params = sum(t.n_elements for t in header.tensors)
    return {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "metadata": meta,
        "tensor_count": len(header.tensors),
        "tensor_type_counts": dict(Counter(types.values())),
        "tensor_types": types,
        "parameters": n_params,
    }
