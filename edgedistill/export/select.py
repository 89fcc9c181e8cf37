"""Target-aware export: pick the format and quantization that fit a device profile.

For every (format, quant) the profile allows and the model's architecture supports, the memory need is
estimated statically:

    weights  = parameters x QuantSpec.bits_per_weight / 8
    KV cache = 2 (keys, values) x layers x kv_heads x head_dim x context x bytes per value
    need     = weights + KV cache + the runtime's memory

the runtime's memory being ``edgedistill.bench.memory.fit_check``'s, the same as `edgedistill plan`
predicts (its physical terms: the process, onnxruntime's prepacked weights and prompt logits,
llama.cpp's attention scores, RoPE tables, at a 128-token prompt); a runtime without terms (PyTorch)
falls back to the profile's ``runtime_overhead_mb``,

with the context the profile's ``context_length`` (capped at the model's ``max_position_embeddings``)
and bytes per value the format's rule (``ExportFormat.kv_cache_dtype``: 2 for llama.cpp's f16 cache,
4 for every ONNX / onnxruntime-genai export, whose graphs keep a float32 cache, fp16 included). Sliding-window layers (Gemma 3) are counted at full
context, so the estimate errs on the safe side.

The choice: the first entry of the profile's ``preferred_quants`` that fits; if none fits, the fitting
candidate with the most bits per weight (closest to the original model); if nothing fits, an error
with the table of numbers.

With eval data (``--eval-data``/``--task``) the choice is quality-aware: the fitting candidates are
exported and verified smallest first (:func:`quality_order`) until one keeps ``min_retention`` of the
float model's task score; the table of those tried (size, projected decode speed, retention) is printed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS
from edgedistill.export.source import SourceModel
from edgedistill.runtime_registry import kv_bytes_per_value

MB = 2**20


@dataclass(frozen=True)
class Candidate:
    format: str
    quant: str
    bits_per_weight: float
    weights_mb: float
    kv_cache_mb: float
    overhead_mb: float
    need_mb: float
    fits: bool
    preferred_rank: int | None
    """Position in the profile's preferred_quants (0 = most preferred), None when not listed."""
    predicted_decode_tok_s: float | None = None
    """edgedistill.bench.predict's decode speed on the target (None when the profile cannot feed it)."""

    @property
    def spec(self) -> str:
        return f"{self.format}:{self.quant}"


@dataclass(frozen=True)
class Selection:
    target: str
    budget_mb: float
    context_length: int
    candidates: tuple[Candidate, ...]
    chosen: Candidate
    reason: str
    quality: tuple = ()
    """With eval data: the candidates tried (spec, need_mb, size_mb, projected_tok_s, retention, passed)."""

    def table(self) -> str:
        return candidates_table(self.candidates, chosen=self.chosen)

    def explain(self) -> str:
        tried = f"candidates tried on the eval data:\n{quality_table(self.quality)}\n" if self.quality else ""
        return (
            f"target {self.target}: memory budget {self.budget_mb:.0f} MB, context {self.context_length} tokens\n"
            f"{self.table()}\n{tried}"
            f"chose {self.chosen.spec}: {self.reason}"
        )

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "budget_mb": self.budget_mb,
            "context_length": self.context_length,
            "chosen": self.chosen.spec,
            "reason": self.reason,
            "candidates": [c.__dict__ | {"spec": c.spec} for c in self.candidates],
            **({"quality": list(self.quality)} if self.quality else {}),
        }


def model_dims(config: dict) -> tuple[int, int, int, int | None]:
    """(layers, kv_heads, head_dim, max_position_embeddings) from a HF config dict."""
    cfg = config.get("text_config", config)  # multimodal wrappers keep the LM config inside
    try:
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeDistillError(f"model config lacks {exc} needed to size the KV cache") from None
    return layers, kv_heads, head_dim, cfg.get("max_position_embeddings")


def candidates_for(source: SourceModel, profile) -> list[Candidate]:
    from edgedistill.artifacts import FORMAT_RUNTIME
    from edgedistill.bench.memory import facts_from_config, fit_check
    from edgedistill.targets import kv_cache_bytes

    layers, kv_heads, head_dim, max_pos = model_dims(source.config)
    context = min(profile.context_length, max_pos) if max_pos else profile.context_length
    preferred = list(profile.preferred_quants)
    facts = facts_from_config(source.config)
    out = []
    for fmt_name in profile.formats:
        if fmt_name not in FORMATS:
            continue
        fmt = FORMATS.get(fmt_name)
        if source.model_type not in fmt.supported_architectures:
            continue
        for quant, spec in fmt.quants.items():
            weights = int(source.param_count * spec.bits_per_weight / 8)
            kv = kv_cache_bytes(layers, kv_heads, head_dim, context, kv_bytes_per_value(fmt_name, quant))
            fit = fit_check(profile, weights, kv, FORMAT_RUNTIME.get(fmt_name), facts, context=context)
            key = f"{fmt_name}:{quant}"
            out.append(
                Candidate(
                    fmt_name, quant, spec.bits_per_weight, fit.weights_mb, fit.kv_cache_mb, fit.overhead_mb,
                    fit.need_mb, fit.fits, preferred.index(key) if key in preferred else None,
                    _predicted_decode(source.config, fmt_name, quant, profile, context),
                )
            )
    return out


def _predicted_decode(config: dict, fmt: str, quant: str, profile, context: int) -> float | None:
    """The same prediction `edgedistill plan` prints; None where the profile lacks what it needs or the
    format's runtime has no speed calibration (e.g. hf/torch)."""
    from edgedistill.artifacts import FORMAT_RUNTIME
    from edgedistill.bench.plan import shape_from_config
    from edgedistill.bench.predict import predict_speed

    try:
        shape, _ = shape_from_config(config, fmt, quant, "model config")
        return predict_speed(shape, profile, runtime=FORMAT_RUNTIME[fmt], context=context).predicted_decode_tok_s
    except EdgeDistillError:
        return None


def select_for_target(source: SourceModel, profile) -> Selection:
    """Choose one (format, quant) for ``profile``; an error with the numbers when nothing fits."""
    from edgedistill.targets import load_target

    if isinstance(profile, str):
        profile = load_target(profile)
    layers, kv_heads, head_dim, max_pos = model_dims(source.config)
    context = min(profile.context_length, max_pos) if max_pos else profile.context_length
    cands = candidates_for(source, profile)
    if not cands:
        supported = {n: FORMATS.get(n).supported_architectures for n in profile.formats if n in FORMATS}
        raise EdgeDistillError(
            f"target {profile.name}: no export format of this target ({', '.join(profile.formats)}) supports "
            f"architecture {source.model_type!r}",
            hint="; ".join(f"{n} supports {', '.join(a)}" for n, a in supported.items()) or "no formats are registered",
        )
    fitting = [c for c in cands if c.fits]
    if not fitting:
        smallest = min(cands, key=lambda c: c.need_mb)
        raise EdgeDistillError(
            f"target {profile.name}: nothing fits the {profile.memory_budget_mb:.0f} MB memory budget; the "
            f"smallest, {smallest.spec}, needs {smallest.need_mb:.1f} MB (weights {smallest.weights_mb:.1f} + "
            f"KV cache {smallest.kv_cache_mb:.1f} at {context} tokens + runtime {smallest.overhead_mb:.1f})\n"
            + candidates_table(cands),
            hint="use a smaller student, a target with more memory, or a shorter context_length in the profile",
        )
    ranked = sorted((c for c in fitting if c.preferred_rank is not None), key=lambda c: c.preferred_rank)
    if ranked:
        chosen = ranked[0]
        skipped = [c.spec for c in cands if c.preferred_rank is not None and c.preferred_rank < chosen.preferred_rank]
        reason = (
            f"the most preferred of the profile's preferred_quants that fits ({chosen.need_mb:.1f} of "
            f"{profile.memory_budget_mb:.0f} MB)"
            + (f"; more preferred but too big: {', '.join(skipped)}" if skipped else "")
        )
    else:
        chosen = max(fitting, key=lambda c: (c.bits_per_weight, -c.need_mb))
        reason = (
            "none of the profile's preferred_quants fits or is available; this is the highest-precision "
            f"candidate that fits ({chosen.need_mb:.1f} of {profile.memory_budget_mb:.0f} MB)"
        )
    return Selection(profile.name, profile.memory_budget_mb, context, tuple(cands), chosen, reason)


def candidates_table(cands, chosen: Candidate | None = None) -> str:
    head = (f"  {'artifact':<20} {'bits/w':>6} {'weights MB':>11} {'KV MB':>8} {'runtime MB':>10} {'total MB':>9}  fits  pref"
            "  predicted tok/s")
    lines = [head]
    for c in sorted(cands, key=lambda c: (c.format, -c.bits_per_weight)):
        mark = "*" if chosen is not None and c == chosen else " "
        pref = "-" if c.preferred_rank is None else str(c.preferred_rank + 1)
        lines.append(
            f"{mark} {c.spec:<20} {c.bits_per_weight:>6.2f} {c.weights_mb:>11.1f} {c.kv_cache_mb:>8.1f} "
            f"{c.overhead_mb:>10.1f} {c.need_mb:>9.1f}  {'yes ' if c.fits else 'no  '}  {pref:<4}  "
            + ("–" if c.predicted_decode_tok_s is None else f"{c.predicted_decode_tok_s:.1f}")
        )
    return "\n".join(lines)


# --- quality-aware choice (export --target NAME --eval-data FILE --task TASK) ------------------------

#: Unquantized types: tried only when no quantized candidate fits (they keep the score by construction).
FLOAT_QUANTS = ("f32", "fp32", "f16", "fp16", "bf16")


def projected_tok_s(c: Candidate, profile) -> float | None:
    """Decode speed ceiling: one full read of the weights per token at the profile's memory bandwidth."""
    bw = getattr(profile, "memory_bandwidth_gbs", None)
    return bw * 1e9 / (c.weights_mb * MB) if bw and c.weights_mb > 0 else None


def quality_order(selection: Selection) -> list[Candidate]:
    """Fitting candidates in the order they are tried: smallest (= fastest, decoding being bound by
    reading the weights) first; equal sizes by preference. Float types come last, as a fallback."""
    fitting = [c for c in selection.candidates if c.fits]
    quantized = [c for c in fitting if c.quant not in FLOAT_QUANTS]
    rank = (lambda c: c.preferred_rank if c.preferred_rank is not None else 1 << 20)
    key = (lambda c: (c.need_mb, rank(c), c.spec))
    return sorted(quantized, key=key) + sorted((c for c in fitting if c.quant in FLOAT_QUANTS), key=key)


def quality_choice(selection: Selection, profile, tried: list[tuple[Candidate, dict]],
                   chosen: Candidate | None, min_retention: float) -> Selection:
    """The selection after trying candidates: ``tried`` holds (candidate, figures) with the artifact's
    size_mb, retention and the reasons it failed."""
    rows = tuple({"spec": c.spec, "need_mb": c.need_mb, "projected_tok_s": projected_tok_s(c, profile), **f}
                 for c, f in tried)
    if chosen is None:
        reason = f"no fitting candidate kept {min_retention:.0%} of the float model's task score"
        return dataclasses.replace(selection, quality=rows, reason=reason)
    reason = (f"the smallest fitting candidate that keeps >= {min_retention:.0%} of the float model's task score "
              f"({len(tried) - 1} smaller one(s) did not)" if len(tried) > 1 else
              f"the smallest fitting candidate, and it keeps >= {min_retention:.0%} of the float model's task score")
    return dataclasses.replace(selection, chosen=chosen, reason=reason, quality=rows)


def quality_table(rows) -> str:
    """The candidates tried, with size, projected speed and retention (a small Pareto table)."""
    lines = [f"  {'artifact':<20} {'need MB':>8} {'file MB':>8} {'proj tok/s':>10} {'retention':>9}  result"]
    for r in rows:
        ret = r.get("retention")
        tok = r.get("projected_tok_s")
        lines.append(f"  {r['spec']:<20} {r['need_mb']:>8.1f} {r.get('size_mb', 0):>8.2f} "
                     f"{(f'{tok:.0f}' if tok else '-'):>10} {(f'{ret:.1%}' if ret is not None else '-'):>9}  "
                     f"{'kept' if r.get('passed') else 'rejected: ' + '; '.join(r.get('failures') or [])}")
    return "\n".join(lines)
