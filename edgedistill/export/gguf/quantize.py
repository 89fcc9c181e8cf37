"""GGUF quantization types and llama.cpp's quantizer.

Two routes:

* ``direct`` — f32, f16, bf16 and q8_0 are written by our own writer (gguf-py's numpy quantizers).
  1-D tensors (norms, biases) stay f32, as llama.cpp's converter keeps them.
* ``llama.cpp`` — the other types are produced by llama.cpp's own quantizer
  (``llama_model_quantize`` through llama-cpp-python) from an f32 GGUF we write first, so the K-quant
  mixes (which tensors get Q6_K/Q5_K/Q4_K in a ``q4_k_m``) are exactly llama.cpp's. An importance
  matrix (``--imatrix``, the GGUF file ``llama-imatrix`` writes) is passed through the C API.

Row widths that are not a multiple of a type's block (256 for K-quants) make llama.cpp fall back to a
compatible type for that tensor (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0, q2_k/q3_k -> q4_0, as observed with llama-cpp-python 0.3.36).

The thresholds are the verification bounds an artifact must meet (mean KL over next-token distributions,
share of greedy tokens equal to PyTorch's, max |logit diff|): figures measured on the tiny test models
of every architecture, with margin. See docs/export-gguf.md for the measurements.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import QuantSpec
from edgedistill.registry import Registry


@dataclass(frozen=True)
class GgufQuant:
    spec: QuantSpec
    route: str
    """"direct" (our writer) or "llama.cpp" (llama_model_quantize)."""
    ggml_type: str | None = None
    """gguf.GGMLQuantizationType member written for 2-D tensors on the direct route."""
    ftype: str | None = None
    """gguf.LlamaFileType member: general.file_type, and the llama.cpp quantizer's target."""


GGUF_QUANTS: Registry[GgufQuant] = Registry("GGUF quant type")


def _q(name, bpw, route, kl, match, logit=None, ggml_type=None, ftype=None, description=""):
    GGUF_QUANTS.register(
        name,
        GgufQuant(QuantSpec(name, bpw, kl, match, logit, description), route, ggml_type, ftype),
    )


# name, bits/weight, route, max_kl, min_greedy_match (teacher-forced), max_abs_logit_diff.
# Measured by benchmarks/gguf_quant_matrix.py on every architecture (worst one; KL margin ~2.5x,
# greedy ~0.15 below the lowest measurement) -- figures in docs/export-gguf.md. q2_k's greedy agreement
# on the random test models is at chance level (0.04), so only its KL is enforced.
_q("f32", 32.0, "direct", 1e-5, 0.9, 0.1, "F32", "ALL_F32", "exact weights (llama.cpp's KV cache is f16)")
_q("f16", 16.0, "direct", 1e-4, 0.9, 0.15, "F16", "MOSTLY_F16", "half precision, norms f32")
_q("bf16", 16.0, "direct", 2e-3, 0.85, 1.2, "BF16", "MOSTLY_BF16", "bfloat16, norms f32")
_q("q8_0", 8.5, "direct", 5e-3, 0.75, None, "Q8_0", "MOSTLY_Q8_0", "8-bit blocks of 32")
_q("q6_k", 6.56, "llama.cpp", 0.02, 0.65, ftype="MOSTLY_Q6_K", description="6-bit K-quant")
_q("q5_k_m", 5.69, "llama.cpp", 0.07, 0.5, ftype="MOSTLY_Q5_K_M", description="5-bit K-quant mix")
_q("q5_k_s", 5.54, "llama.cpp", 0.07, 0.5, ftype="MOSTLY_Q5_K_S", description="5-bit K-quant")
_q("q5_1", 6.0, "llama.cpp", 0.07, 0.5, ftype="MOSTLY_Q5_1", description="5-bit blocks with min")
_q("q5_0", 5.5, "llama.cpp", 0.09, 0.5, ftype="MOSTLY_Q5_0", description="5-bit blocks")
_q("q4_k_m", 4.89, "llama.cpp", 0.2, 0.4, ftype="MOSTLY_Q4_K_M", description="4-bit K-quant mix (recommended)")
_q("q4_k_s", 4.58, "llama.cpp", 0.25, 0.4, ftype="MOSTLY_Q4_K_S", description="4-bit K-quant")
_q("q4_1", 5.0, "llama.cpp", 0.3, 0.3, ftype="MOSTLY_Q4_1", description="4-bit blocks with min")
_q("q4_0", 4.5, "llama.cpp", 0.35, 0.25, ftype="MOSTLY_Q4_0", description="4-bit blocks")
_q("q3_k_m", 3.91, "llama.cpp", 0.6, 0.15, ftype="MOSTLY_Q3_K_M", description="3-bit K-quant mix")
_q("q2_k", 3.35, "llama.cpp", 1.7, 0.0, ftype="MOSTLY_Q2_K", description="2-bit K-quant mix (lossy)")


def quant_specs() -> dict[str, QuantSpec]:
    return {name: q.spec for name, q in GGUF_QUANTS.items()}


def file_type(quant: GgufQuant) -> int:
    import gguf

    return int(getattr(gguf.LlamaFileType, quant.ftype))


# ------------------------------------------------------------------------------------ direct route


def encode_tensor(name: str, data: np.ndarray, quant: GgufQuant):
    """(array, raw_dtype) for ``GGUFWriter.add_tensor``: 1-D tensors f32, 2-D ones in the quant's type."""
    import gguf
    from gguf.quants import QuantError, quantize

    data = np.ascontiguousarray(data, dtype=np.float32)
    qtype = gguf.GGMLQuantizationType[quant.ggml_type or "F32"]
    if data.ndim < 2 or name.endswith("norm.weight") or name.startswith("rope_") or qtype == gguf.GGMLQuantizationType.F32:
        return data, gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    try:
        return quantize(data, qtype), qtype
    except QuantError:  # row width not a multiple of the block size: keep f16, as llama.cpp's converter
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16


# ---------------------------------------------------------------------------------- llama.cpp route


def load_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Per-tensor importance vectors from a GGUF imatrix file (``<tensor>.in_sum2`` / ``<tensor>.counts``).

    Normalised as llama-quantize does: mean squared activation = sum / count (1 where count is 0).
    The legacy binary ``.dat`` format is not read; convert it with ``llama-imatrix --in-file x.dat -o x.gguf``.
    """
    import gguf

    path = Path(path)
    if not path.is_file():
        raise EdgeDistillError(f"imatrix {path} does not exist")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise EdgeDistillError(
                f"imatrix {path} is not a GGUF imatrix file (legacy .dat files are not supported)",
                hint="convert it with: llama-imatrix --in-file old.dat -o new.gguf",
            )
    reader = gguf.GGUFReader(path)
    sums, counts = {}, {}
    for t in reader.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.asarray(t.data, dtype=np.float32)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = np.asarray(t.data, dtype=np.float32).reshape(-1)
    if not sums:
        raise EdgeDistillError(f"imatrix {path} holds no '<tensor>.in_sum2' entries; is it an imatrix file?")
    out = {}
    for name, s in sums.items():
        if name not in counts:
            raise EdgeDistillError(f"imatrix {path}: tensor {name!r} has in_sum2 but no counts")
        c = counts[name]
        s = s.reshape(len(c), -1)
        values = np.where(c[:, None] > 0, s / np.maximum(c[:, None], 1e-30), 1.0).astype(np.float32).reshape(-1)
        if not np.all(np.isfinite(values)):
            raise EdgeDistillError(f"imatrix {path}: tensor {name!r} has non-finite values")
        out[name] = np.ascontiguousarray(values)
    return out


def write_imatrix(path: Path, entries: dict[str, np.ndarray], chunk_count: int = 1, chunk_size: int = 512) -> None:
    """Write importance vectors (mean squared activations per input column) as a GGUF imatrix file."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch="imatrix")
    w.add_type("imatrix")
    w.add_array(gguf.Keys.IMatrix.DATASETS, ["edgedistill"])
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, chunk_count)
    w.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, chunk_size)
    for name, values in entries.items():
        w.add_tensor(f"{name}.in_sum2", np.asarray(values, dtype=np.float32).reshape(1, -1))
        w.add_tensor(f"{name}.counts", np.ones((1, 1), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_quantize(src: Path, dst: Path, quant: GgufQuant, imatrix: Path | None = None, threads: int = 0) -> None:
    """Quantize the GGUF file ``src`` into ``dst`` with llama.cpp's own quantizer."""
    try:
        import llama_cpp
    except ImportError:
        raise EdgeDistillError(
            f"GGUF quant type {quant.spec.name!r} needs llama.cpp's quantizer",
            hint="pip install 'edgedistill[llama]' (llama-cpp-python), or choose f16, bf16 or q8_0",
        ) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{quant.ftype}")
    params.nthread = threads
    keep_alive = []
    if imatrix is not None:
        entries = load_imatrix(imatrix)
        arr = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
        for i, (name, values) in enumerate(entries.items()):
            cname = name.encode()
            keep_alive += [cname, values]
            arr[i].name = cname
            arr[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = values.size
        arr[len(entries)].name = None  # terminator
        params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep_alive.append(arr)
    from llama_cpp._utils import suppress_stdout_stderr

    # llama.cpp prints a line per tensor (and per fallback) straight to the C stdio streams; the
    # resulting tensor types are reported by describe() / the manifest instead
    with suppress_stdout_stderr(disable=False):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not Path(dst).exists():
        raise EdgeDistillError(f"llama.cpp could not quantize {src.name} to {quant.spec.name} (return code {rc})")
