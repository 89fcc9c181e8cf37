"""The ``ort-genai`` export format: onnxruntime-genai's model builder, for its CPU provider.

The builder (``python -m onnxruntime_genai.models.builder``) writes a graph built for ORT's fused
operators (GroupQueryAttention, SkipSimplifiedLayerNormalization, MatMulNBits), ``genai_config.json``
and the tokenizer files; ``onnxruntime_genai.Model(dir)`` loads the directory as it is, on a desktop
or through ORT's Android / iOS packages. It runs in a subprocess: the builder prints a lot, holds the
whole model in memory, and a crash in it must not take the export run down with it.

Quantization types (all for ``-e cpu``):

* ``fp32`` - float32 weights and activations.
* ``int8`` - weight-only block-wise int8 (MatMulNBits bits=8).
* ``int4`` - weight-only block-wise int4 (MatMulNBits bits=4); for a model with tied embeddings the
  embedding table is shared with the LM head and quantized too (the builder's default).

For both weight-only types the block size is ``options.int4_block_size`` and the compute precision
``options.accuracy_level(spec)`` (the spec's ``default_accuracy_level``): by default 4 (int8 compute, the builder's own CPU default) for int4,
where the 4-bit weight error dominates and level 4 is 2-3x faster at no measured accuracy cost, and 0
(float32 compute) for int8, where level 4 doubles the KL - see docs/export-onnx.md for the figures.
It is always passed to the builder explicitly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS, ExportFormat, ExportOptions, QuantSpec
from edgedistill.export.onnx_format import check_architecture, check_quant_options, describe_onnx_file, model_type_of
from edgedistill.export.onnx_rotary import slim_rotary_tables

# Thresholds measured like the onnx format's (benchmarks/onnx_quant_figures.py, docs/export-onnx.md).
ORTGENAI_QUANTS: dict[str, QuantSpec] = {
    "fp32": QuantSpec(
        "fp32", 32.0, max_kl=1e-4, min_greedy_match=0.95, max_abs_logit_diff=1e-2,
        description="float32; fused ORT operators, matches PyTorch to rounding.",
    ),
    "int8": QuantSpec(
        "int8", 9.0, max_kl=1e-2, min_greedy_match=0.8, max_abs_logit_diff=None,
        description="weight-only block-wise int8 (MatMulNBits bits=8).",
        matmul_nbits=8,
    ),
    "int4": QuantSpec(
        "int4", 5.0, max_kl=0.5, min_greedy_match=0.25, max_abs_logit_diff=None,
        description="weight-only block-wise int4 (MatMulNBits bits=4).",
        matmul_nbits=4, default_accuracy_level=4,
    ),
}

#: Seconds after which a hung builder is stopped.
BUILDER_TIMEOUT_S = 6 * 3600


class OrtGenaiFormat(ExportFormat):
    name = "ort-genai"
    quants = ORTGENAI_QUANTS
    # Each built, loaded by onnxruntime_genai.Model and compared with PyTorch on the tiny models
    # (tests/test_export_ortgenai.py).
    supported_architectures = ("gemma3_text", "llama", "phi3", "qwen2", "qwen3")

    def write(self, model_dir: Path, out_dir: Path, quant: str, options: ExportOptions) -> dict[str, Any]:
        model_dir, out_dir = Path(model_dir), Path(out_dir)
        check_quant_options(self, quant, options)
        check_architecture(self, model_dir)
        extra = []
        spec = self.quants[quant]
        if spec.matmul_nbits:
            extra += [f"block_size={options.int4_block_size}", f"accuracy_level={options.accuracy_level(spec)}"]
            if spec.matmul_nbits == 8:
                # Builder 0.15 writes a dangling lm_head weight name (weight_Q4) for int8 with shared
                # embeddings, which it turns on for tied models (Gemma 3); keeping the LM head as its own
                # int8 matrix avoids it. For untied models this is the builder's default anyway.
                extra.append("shared_embeddings=false")
        run_builder(model_dir, out_dir, quant, extra)
        for needed in ("genai_config.json", "model.onnx"):
            if not (out_dir / needed).exists():
                raise EdgeDistillError(f"onnxruntime-genai's builder finished but wrote no {needed} into {out_dir}")
        # the builder's stored cos/sin tables (67 MB for Gemma 3) become nodes computing them at load time
        saved = slim_rotary_tables(out_dir / "model.onnx", "model.onnx.data")
        if not (out_dir / "tokenizer.json").exists() and not (out_dir / "tokenizer.model").exists():
            raise EdgeDistillError(
                f"onnxruntime-genai's builder wrote no tokenizer files for {model_dir}; "
                "onnxruntime_genai.Tokenizer needs tokenizer.json (save the model's fast tokenizer)"
            )
        return {"builder": {"onnxruntime-genai": _version("onnxruntime-genai"), "onnxruntime": _version("onnxruntime"),
                            "precision": quant, "execution_provider": "cpu", "extra_options": extra},
                "rotary_tables": f"computed at load time ({saved} bytes not stored)" if saved else "as built"}

    def kv_cache_dtype(self, quant: str) -> str:
        # The builder's CPU graphs take float32 past_key_values at every precision (fp32, int8, int4:
        # weight-only), measured on the exported tiny models (tests/test_kv_cache_rule.py).
        return "float32"

    def describe(self, artifact_dir: Path) -> dict[str, Any]:
        artifact_dir = Path(artifact_dir)
        if artifact_dir.is_file():
            artifact_dir = artifact_dir.parent
        cfg_path = artifact_dir / "genai_config.json"
        if not cfg_path.exists():
            raise EdgeDistillError(f"{artifact_dir} has no genai_config.json; it is not an ort-genai artifact")
        cfg = json.loads(cfg_path.read_text())
        model = cfg.get("model", {})
        decoder = model.get("decoder", {})
        info = describe_onnx_file(artifact_dir / decoder.get("filename", "model.onnx"))
        info["genai_config"] = {
            "type": model.get("type"),
            "context_length": model.get("context_length"),
            "vocab_size": model.get("vocab_size"),
            "num_hidden_layers": decoder.get("num_hidden_layers"),
            "num_attention_heads": decoder.get("num_attention_heads"),
            "num_key_value_heads": decoder.get("num_key_value_heads"),
            "head_size": decoder.get("head_size"),
            "eos_token_id": model.get("eos_token_id"),
            "past_present_share_buffer": cfg.get("search", {}).get("past_present_share_buffer"),
        }
        return info


def run_builder(model_dir: Path, out_dir: Path, precision: str, extra: list[str]) -> None:
    """onnxruntime-genai's model builder, ``-e cpu``, in a subprocess (used by the onnx format too)."""
    # The builder's scratch space lives inside the (atomic, temporary) output directory, so a killed
    # export leaves nothing outside it; it is removed before the artifact is verified.
    cache = out_dir / ".builder-cache"
    # the builder's own command line, with edgedistill's compatibility fixes (export/ortgenai_builder.py)
    cmd = [sys.executable, "-m", "edgedistill.export.ortgenai_builder", "-i", str(model_dir), "-o", str(out_dir),
           "-p", precision, "-e", "cpu", "-c", str(cache)]
    if extra:
        cmd += ["--extra_options", *extra]
    try:
        _run_builder(cmd, model_dir, precision)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _run_builder(cmd: list[str], model_dir: Path, quant: str) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # never fetch anything
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=BUILDER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EdgeDistillError(f"onnxruntime-genai's builder did not finish {quant} of {model_dir} "
                               f"within {BUILDER_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        # Its progress bars use \r; keep the last few real lines, where the Python error is.
        lines = [ln.strip() for ln in proc.stdout.replace("\r", "\n").splitlines() if ln.strip()]
        tail = "\n    ".join(lines[-6:])
        raise EdgeDistillError(
            f"onnxruntime-genai's model builder failed on {model_dir} ({quant}, exit code {proc.returncode}; "
            f"model_type {model_type_of(model_dir)!r}):\n    {tail}",
            hint="run the command by hand to see its whole output: " + " ".join(cmd),
        )


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


FORMATS.register("ort-genai", OrtGenaiFormat())
