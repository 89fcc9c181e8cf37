"""`edgedistill plan`: will this model run on that device, and how fast — without running anything.

MODEL is a Hugging Face directory, just its ``config.json`` (a student not trained yet), a ``.gguf``
file, or an ONNX / onnxruntime-genai artifact directory. For a config (or HF directory) the file of
each ``--quant`` is estimated (parameters x the quant's bits per weight); for an artifact its own
file and quantization are used. Per target and quant: file size, peak memory (weights + KV cache at
the context + the runtime's own memory), fits or not, predicted TTFT and decode tok/s with a range
(``predict.py``), and the ceilings beside them.

Runtime memory (``RUNTIME_MEMORY``, ``memory.py``) is fitted on this project's host-emulated runs,
whose peak resident memory includes the Python process, and checked on runs it was not fitted on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgedistill.artifacts import FORMAT_RUNTIME, detect_artifact
from edgedistill.bench.predict import predict_speed
from edgedistill.bench.projection import ModelShape, _params_from_config, model_shape
from edgedistill.errors import ConfigError, EdgeDistillError
from edgedistill.quant_spec import FormatQuant

from edgedistill.bench.memory import (  # noqa: F401  (RUNTIME_MEMORY: re-exported for callers)
    MB, RUNTIME_MEMORY, RUNTIME_MEMORY_SOURCE, facts_from_artifact, facts_from_config, fit_check, runtime_memory_bytes,
)


@dataclass
class PlanRow:
    target: str
    format: str
    quant: str
    runtime: str
    file_mb: float
    file_size_source: str
    context_length: int
    kv_cache_mb: float
    runtime_memory_mb: float
    peak_memory_mb: float
    memory_budget_mb: float
    fits: bool
    prompt_len: int
    threads: int
    predicted_ttft_ms: float
    predicted_prefill_tok_s: float
    prefill_ceiling_tok_s: float | None
    predicted_decode_tok_s: float
    predicted_decode_tok_s_low: float
    predicted_decode_tok_s_high: float
    decode_ceiling_tok_s: float | None
    decode_bound: str
    calibration: str

    def to_dict(self) -> dict:
        return asdict(self)


def _read_config(path: Path) -> dict:
    cfg_file = path / "config.json" if path.is_dir() else path
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeDistillError(f"{cfg_file}: cannot read a model config ({exc})") from None
    return cfg


def shape_from_config(cfg: dict, fmt: str, quant: str, where: str) -> tuple[ModelShape, int]:
    """(shape, estimated file bytes) of the (format, quant) export of the model a config describes."""
    from edgedistill.export.formats import FORMATS

    model_type = cfg.get("model_type")
    supported = FORMATS.get(fmt).supported_architectures
    if model_type not in supported:
        raise ConfigError(f"{where}: field 'model_type' is {model_type!r}, an architecture {fmt} export does not "
                          f"support (it supports {', '.join(supported)})")
    text = cfg.get("text_config", cfg)
    try:
        params, untied_embed = _params_from_config(text)
        nh = text["num_attention_heads"]
        layers = text["num_hidden_layers"]
    except KeyError as exc:
        raise ConfigError(f"{where}: lacks field {exc} needed to size the model") from None
    bits = FORMATS.get(fmt).quants[quant].bits_per_weight
    weights = int(params * bits / 8)
    shape = ModelShape(
        params=params, weight_bytes=weights, bytes_read_per_token=int(weights - untied_embed * bits / 8),
        num_layers=layers, num_kv_heads=text.get("num_key_value_heads") or nh,
        head_dim=text.get("head_dim") or text["hidden_size"] // nh,
        kv_bytes_per_value=FORMATS.get(fmt).kv_bytes_per_value(quant),
        source=f"{where} (parameters counted from the config)",
    )
    return shape, weights


def _model_variants(model: Path, quants: list[str]) -> list[tuple[str, str, ModelShape, int, str, object]]:
    """[(format, quant, shape, file bytes, size source, MemoryFacts)] for MODEL and the requested quants."""
    is_config = model.is_file() and model.suffix == ".json"
    is_hf = model.is_dir() and (model / "config.json").exists() and not (model / "manifest.json").exists() \
        and not (model / "genai_config.json").exists() and not any(model.glob("*.onnx"))
    if is_config or is_hf:
        if not quants:
            raise ConfigError("--quant is required when MODEL is a Hugging Face directory or config.json",
                              hint="e.g. --quant q4_k_m --quant onnx:int4")
        cfg = _read_config(model)
        facts = facts_from_config(cfg)
        out = []
        for fmt, quant in FormatQuant.parse_list(quants, field="quant", bare=True):
            shape, size = shape_from_config(cfg, fmt, quant, str(model))
            out.append((fmt, quant, shape, size, "estimated: parameters x bits per weight of the quant", facts))
        return out
    art = detect_artifact(model)
    shape = model_shape(art)
    quant = art.manifest.get("quant") or _gguf_quant(art) or "as stored"
    for spec in FormatQuant.parse_list(quants, field="quant", bare=True, default_format=art.format):
        if spec != FormatQuant(art.format, quant):
            raise ConfigError(f"--quant {str(spec)!r}: {model} is already a {art.format}:{quant} file; plan it as it is "
                              "(omit --quant) or give the Hugging Face model / config.json to compare quants")
    return [(art.format, quant, shape, art.size_bytes(), "the artifact's files", facts_from_artifact(art))]


def _gguf_quant(art) -> str | None:
    if art.format != "gguf":
        return None
    from gguf import Keys

    from edgedistill.gguf_header import read_gguf_header

    ftype = read_gguf_header(art.main_file, with_tensors=False, max_array=0).get(Keys.General.FILE_TYPE)
    try:
        from gguf import LlamaFileType

        return LlamaFileType(ftype).name.removeprefix("MOSTLY_").lower() if ftype is not None else None
    except (ImportError, ValueError):
        return None


def plan(model: str | Path, targets: list, quants: list[str] | None = None, context: int | None = None,
         prompt_len: int = 128, threads: int | None = None) -> list[PlanRow]:
    """One row per (target, format:quant); nothing is run."""
    from edgedistill.targets import load_target

    model = Path(model).expanduser()
    if not model.exists():
        raise EdgeDistillError(f"MODEL {model} does not exist")
    rows = []
    variants = _model_variants(model, list(quants or []))
    for t in targets:
        target = load_target(t) if isinstance(t, str) else t
        ctx = context or target.context_length
        for fmt, quant, shape, size, size_src, facts in variants:
            runtime = FORMAT_RUNTIME[fmt]
            kv = shape.kv_cache_bytes(ctx)
            fit = fit_check(target, size, kv, runtime, facts, prompt_len, ctx)
            p = predict_speed(shape, target, runtime=runtime, context=ctx, prompt_len=prompt_len, threads=threads)
            rows.append(PlanRow(
                target=target.name, format=fmt, quant=quant, runtime=runtime, file_mb=size / MB,
                file_size_source=size_src, context_length=ctx, kv_cache_mb=kv / MB, runtime_memory_mb=fit.overhead_mb,
                peak_memory_mb=fit.need_mb, memory_budget_mb=target.memory_budget_mb,
                fits=fit.fits, prompt_len=prompt_len, threads=p.threads,
                predicted_ttft_ms=p.predicted_ttft_ms, predicted_prefill_tok_s=p.predicted_prefill_tok_s,
                prefill_ceiling_tok_s=p.prefill_ceiling_tok_s, predicted_decode_tok_s=p.predicted_decode_tok_s,
                predicted_decode_tok_s_low=p.predicted_decode_tok_s_low,
                predicted_decode_tok_s_high=p.predicted_decode_tok_s_high,
                decode_ceiling_tok_s=p.decode_ceiling_tok_s, decode_bound=p.decode_bound, calibration=p.calibration,
            ))
    return rows


def plan_table(rows: list[PlanRow]) -> str:
    head = ("| target | artifact | file MB | peak memory MB (weights+KV+runtime) | fits | TTFT ms | "
            "decode tok/s (range) | decode ceiling | bound |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r.target} | {r.format}:{r.quant} | {r.file_mb:.1f} | {r.peak_memory_mb:.0f} of {r.memory_budget_mb:.0f} "
            f"({r.file_mb:.0f}+{r.kv_cache_mb:.0f}+{r.runtime_memory_mb:.0f}) | {'yes' if r.fits else 'NO'} | "
            f"{r.predicted_ttft_ms:.0f} @ {r.prompt_len} tok | {r.predicted_decode_tok_s:.1f} "
            f"({r.predicted_decode_tok_s_low:.1f}-{r.predicted_decode_tok_s_high:.1f}) | "
            f"{r.decode_ceiling_tok_s:.0f} | {r.decode_bound} |")
    notes = sorted({f"- {r.target}: {r.calibration}" for r in rows})
    src = sorted({f"- file size of {r.format}:{r.quant}: {r.file_size_source}" for r in rows})
    return "\n".join(lines + ["", "Predictions are calibrated on published measurements:"] + notes + src
                     + [f"- runtime memory: {RUNTIME_MEMORY_SOURCE}",
                        f"- context {rows[0].context_length if rows else '?'} tokens, {rows[0].threads if rows else '?'} threads"]) + "\n"
