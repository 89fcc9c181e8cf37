"""The contract between the export orchestrator and each export format.

A format (``onnx``, ``ort-genai``, ``gguf``) is a subclass of :class:`ExportFormat` registered in
:data:`FORMATS`; its quantization types are :class:`QuantSpec` entries carrying the verification
thresholds that an artifact of that type must meet. The orchestrator (``edgedistill.export.run``)
builds each artifact inside an ``atomic_dir``, verifies it through ``edgedistill.runtimes`` and writes
the manifest; a format only knows how to write its files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.registry import Registry


@dataclass(frozen=True)
class QuantSpec:
    """One quantization type of one format, with the thresholds its verification must meet."""

    name: str
    """As the user types it: fp32, fp16, int8, int4, f16, bf16, q8_0, q4_k_m, ..."""
    bits_per_weight: float
    """Average stored bits per weight (for size estimates in target-aware export)."""
    max_kl: float
    """Largest allowed mean KL(torch || artifact) of next-token distributions over the prompt set."""
    min_greedy_match: float
    """Smallest allowed share of greedy tokens equal to the PyTorch model's (0..1)."""
    max_abs_logit_diff: float | None = None
    """Largest allowed max |logit difference|; None when only KL/greedy are meaningful (quantized)."""
    description: str = ""
    min_stream_consistency: float | None = None
    """Smallest allowed share of streamed (KV-cache) tokens equal to the argmax of the artifact's own
    full-sequence pass; None: verify's default. Lower only where the quantization itself depends on
    the number of tokens in a run (dynamic per-tensor activation scales, onnx:int8)."""
    matmul_nbits: int | None = None
    """Weight bits of a weight-only block type (onnxruntime's MatMulNBits: int4 4, ort-genai's int8 8), the
    types ``ExportOptions.int4_block_size`` and the accuracy level apply to; None for the others."""
    default_accuracy_level: int = 0
    """MatMulNBits accuracy_level when ``ExportOptions.int4_accuracy_level`` is unset: 4 (int8 compute) where
    the 4-bit weight error dominates, so it costs no measured accuracy and decodes 2-3x faster; 0 (fp32
    compute) otherwise (for 8-bit weights level 4 doubles the KL; docs/export-onnx.md)."""


#: onnx:int4 weight rounding (``ExportOptions.int4_algorithm``): onnxruntime's MatMulNBitsQuantizer algorithms.
INT4_ALGORITHMS = ("rtn", "hqq", "k_quant", "gptq")


@dataclass
class ExportOptions:
    """Options a format may use; every format ignores what does not apply to it."""

    int4_block_size: int = field(default=32, metadata={"help": "Block size of weight-only int4 (MatMulNBits)."})
    int4_accuracy_level: int | None = field(
        default=None,
        metadata={"help": "MatMulNBits accuracy_level (0 = fp32 compute; 4 = int8 compute, faster, less exact); "
                          "unset: 4 for int4 (its 4-bit weight error dominates, so level 4 costs no measured "
                          "accuracy and decodes 2-3x faster) and 0 for ort-genai's int8 (where level 4 doubles KL)."},
    )
    int4_embeddings: bool = field(
        default=True,
        metadata={"help": "onnx:int4 also quantizes the input-embedding table (GatherBlockQuantized, int4 blocks "
                          "along the hidden axis), as llama.cpp's 4-bit types and ort-genai's tied int4 do; false "
                          "keeps it float32 as optimum wrote it (Gemma 3 270M: 834 instead of 294 MiB). Needs opset >= 18."},
    )
    imatrix: Path | None = field(default=None, metadata={"help": "llama.cpp importance matrix file for K-quants."})
    int4_algorithm: str = field(default="rtn", metadata={
        "help": "onnx:int4 weight rounding by onnxruntime's MatMulNBitsQuantizer: rtn (round to nearest, "
                "symmetric), hqq or k_quant (data-free scale searches), gptq (data-aware: needs calibration "
                "data); see docs/export-onnx.md.",
        "choices": INT4_ALGORITHMS})
    calibration_texts: list[str] | None = field(default=None, repr=False, metadata={
        "help": "Set by export from calibration_data for int4_algorithm gptq (not a user option)."})
    opset: int | None = field(default=None, metadata={"help": "ONNX opset (unset: the exporter's default)."})
    onnx_exporter: str = field(
        default="builder",
        metadata={"help": "What writes the onnx format's float graph: 'builder' (onnxruntime-genai's model builder: "
                          "fused attention and norms, the fast graph) or 'optimum' (optimum-onnx's graph, needs "
                          "the `optimum` extra and a transformers it accepts, i.e. 4.x).",
                  "choices": ("builder", "optimum")},
    )

    def accuracy_level(self, quant: QuantSpec) -> int:
        """The MatMulNBits accuracy_level of a ``quant`` artifact (its type's default unless one is given)."""
        if self.int4_accuracy_level is not None:
            return self.int4_accuracy_level
        return quant.default_accuracy_level


class ExportFormat(ABC):
    """Writes one kind of artifact. Subclasses set ``name``, ``quants`` and ``supported_architectures``."""

    name: str = ""
    quants: dict[str, QuantSpec] = {}
    supported_architectures: tuple[str, ...] = ()
    """HF ``config.model_type`` values this format can export."""

    @abstractmethod
    def write(self, model_dir: Path, out_dir: Path, quant: str, options: ExportOptions) -> dict[str, Any]:
        """Write the artifact's files into ``out_dir`` (a fresh temporary directory).

        Must leave ``out_dir`` loadable by this format's runtime (``edgedistill.runtimes``), including the
        tokenizer/config files the runtime needs. Returns extra manifest fields (e.g. tool versions).
        """

    def describe(self, artifact_dir: Path) -> dict[str, Any]:
        """File-level metadata for ``edgedistill inspect`` (GGUF key-values, ONNX opset/inputs...)."""
        return {}

    def takes_imatrix(self, quant: str) -> bool:
        """A ``quant`` artifact is made with an importance matrix (``--imatrix``, or the one export computes
        from ``--calibration-data``)."""
        return False

    def takes_calibration_texts(self, quant: str, options: ExportOptions) -> bool:
        """The calibration texts themselves feed a ``quant`` artifact's rounding (``options.calibration_texts``)."""
        return False

    @abstractmethod
    def kv_cache_dtype(self, quant: str) -> str:
        """numpy name of the KV cache's element type when a ``quant`` artifact runs ("float32", "float16").

        The one rule that target-aware export, the bench fit check and ``bench plan`` size the cache
        with; tests/test_kv_cache_rule.py compares it with what the exported files really hold.
        """

    def kv_bytes_per_value(self, quant: str) -> int:
        import numpy as np  # imported when used: the CLI reads this module for ExportOptions

        return np.dtype(self.kv_cache_dtype(quant)).itemsize


def _builtin_formats() -> None:
    # Each module registers its format; imported at the first lookup, so reading ExportOptions (the
    # CLI does, for --help) does not import gguf, onnx and numpy. Which modules: the runtime registry's
    # `exporter`s, the list device profiles check their formats against (targets.FORMATS).
    import importlib

    from edgedistill.runtime_registry import runtime_specs

    for spec in runtime_specs():
        if spec.exporter:
            importlib.import_module(spec.exporter)


FORMATS: Registry[ExportFormat] = Registry("export format", loader=_builtin_formats)

