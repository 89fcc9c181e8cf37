"""Quantization-aware distillation: the last part of training sees the student's weights as they will be
shipped.

``distill --qat FORMAT:QUANT`` (e.g. ``gguf:q4_k_m``, ``onnx:int4``) switches, at step
``(1 - qat_fraction) x total_steps``, every linear layer of the student (``lm_head`` excluded: the
exporters keep it at higher precision or tie it to the embedding) to a forward pass with its weight
*fake-quantized* to the format's grid -- blocks along the input dimension, one scale (and for the
asymmetric types one minimum) per block, values rounded as the exporter rounds them -- and the
straight-through estimator (``w + (fq(w) - w).detach()``) as its gradient. The optimizer keeps
updating the float ("latent") weights, so the student learns weights whose rounding costs less; the
saved model holds those latent weights and the exporter quantizes them again.

Exact grids (``exact=True``): the exporter's rounding follows from the weights alone, and the
exported weights equal ``fake_quantize(w)`` bit for bit (tests/test_qat.py):

* ``gguf:q8_0``  gguf-py's Q8_0: d = max|x| / 127 (stored f16), q = roundf(x / d);
* ``gguf:q4_0``  llama.cpp's ``quantize_row_q4_0_ref``: d = (signed max|x|) / -8 (stored f16),
  q = min(15, trunc(x / d + 8.5)) - 8 -- without an importance matrix (with one, llama.cpp searches);
* ``onnx:int4``  onnxruntime's MatMulNBits RTN (symmetric, block 32 = ``--int4-block-size``'s default).

K-quants (and the other llama.cpp types) search their scales per super-block, so the grid here is an
approximation of the same bits and block size; their gap is measured, not assumed: :func:`kl_to_artifact`
gives the KL between the fake-quantized student and its exported artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgedistill.config import require
from edgedistill.quant_spec import FormatQuant


@dataclass(frozen=True)
class Grid:
    bits: int
    block: int | None
    """Block size along the input dimension; None: one block per row (per-channel)."""
    symmetric: bool
    rounding: str
    """q8_0 (roundf), q4_0 (llama.cpp trunc(x/d + 8.5)), mlas (onnxruntime's), asym (min/max)."""
    exact: bool = False


_K4, _K5 = Grid(4, 32, False, "asym"), Grid(5, 32, False, "asym")
GRIDS: dict[str, dict[str, Grid]] = {
    "gguf": {
        "q8_0": Grid(8, 32, True, "q8_0", exact=True),
        "q4_0": Grid(4, 32, True, "q4_0", exact=True),
        "q6_k": Grid(6, 16, True, "sym"), "q5_k_m": _K5, "q5_k_s": _K5, "q5_1": _K5,
        "q5_0": Grid(5, 32, True, "sym"), "q4_k_m": _K4, "q4_k_s": _K4, "q4_1": _K4,
        "q3_k_m": Grid(3, 16, True, "sym"), "q2_k": Grid(2, 16, False, "asym"),
    },
    "onnx": {"int4": Grid(4, 32, True, "mlas", exact=True), "int8": Grid(8, None, True, "sym")},
    "ort-genai": {"int4": Grid(4, 32, True, "mlas"), "int8": Grid(8, 32, True, "sym")},
}


def grid_for(spec: FormatQuant | str) -> Grid:
    """The grid of ``gguf:q4_k_m`` (a :class:`FormatQuant` or its text); a ConfigError naming ``qat``
    and what is valid otherwise."""
    spec = FormatQuant.parse(spec, field="qat")
    require(spec.format in GRIDS, "qat", f"format {spec.format!r} has no quantization grid; valid: {', '.join(GRIDS)}")
    grids = GRIDS[spec.format]
    require(spec.quant in grids, "qat", f"{spec.format} has no quantized type {spec.quant!r} to train for; valid: "
                                        f"{', '.join(grids)} (float types need no quantization-aware training)")
    return grids[spec.quant]


def _roundf(x: torch.Tensor) -> torch.Tensor:
    """C's roundf: halves away from zero (torch.round rounds them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _signed_absmax(b: torch.Tensor) -> torch.Tensor:
    """Per block, the value of largest magnitude with its sign (first one on ties, as llama.cpp)."""
    idx = b.abs().argmax(dim=-1, keepdim=True)
    return b.gather(-1, idx)


def fake_quantize(w: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``w`` (out, in) rounded to ``grid`` and dequantized, in float32 (no gradient)."""
    with torch.no_grad():
        w32 = w.detach().float()
        out_f, in_f = w32.shape
        block = grid.block or in_f
        if in_f % block:  # the exporters keep such tensors at higher precision: leave them alone
            return w32
        b = w32.reshape(out_f, in_f // block, block)
        q = _quantize_blocks(b, grid)
        return q.reshape(out_f, in_f).to(w.dtype)


def _quantize_blocks(b: torch.Tensor, grid: Grid) -> torch.Tensor:
    half = 2 ** (grid.bits - 1)
    if grid.rounding == "q8_0":
        d = b.abs().amax(-1, keepdim=True) / 127
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
        return _roundf(b * inv) * d.half().float()
    if grid.rounding == "q4_0":
        d = _signed_absmax(b) / -8
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
        q = torch.clamp(torch.trunc(b * inv + 8.5), max=15)
        return (q - 8) * d.half().float()
    if grid.rounding == "mlas":
        scale = _signed_absmax(b) / -half
        inv = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)
        q = torch.clamp(_roundf(b * inv) + half, 0, 2 * half - 1)
        return (q - half) * scale
    if grid.symmetric:
        scale = _signed_absmax(b) / -half
        inv = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)
        return torch.clamp(_roundf(b * inv), -half, half - 1) * scale
    lo, hi = b.amin(-1, keepdim=True), b.amax(-1, keepdim=True)
    scale = (hi - lo) / (2 ** grid.bits - 1)
    inv = torch.where(scale == 0, torch.zeros_like(scale), 1.0 / scale)
    return _roundf((b - lo) * inv) * scale + lo


def _ste_forward(grid: Grid):
    def forward(self, x):
        w = self.weight
        wq = w + (fake_quantize(w, grid) - w).detach()  # straight-through: gradient of the identity
        return torch.nn.functional.linear(x, wq, self.bias)

    return forward


def quantized_linears(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The linear layers QAT applies to: all but the LM head."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and n.split(".")[-1] != "lm_head"]


def enable_fake_quant(model: torch.nn.Module, grid: Grid) -> int:
    """Patch the linear layers' forward (instance attribute: state_dict and saving are unchanged)."""
    import types

    layers = quantized_linears(model)
    for _, m in layers:
        m.forward = types.MethodType(_ste_forward(grid), m)
    return len(layers)


def disable_fake_quant(model: torch.nn.Module) -> None:
    for _, m in quantized_linears(model):
        m.__dict__.pop("forward", None)


class QatPhase:
    """The trainer's hook: ``at_step(student, step)`` switches fake quantization on at ``start``."""

    def __init__(self, spec: FormatQuant | str, fraction: float, total_steps: int):
        self.spec = str(spec)
        self.grid = grid_for(spec)
        self.start = total_steps - max(1, math.ceil(fraction * total_steps)) + 1
        self.layers = 0

    def at_step(self, student: torch.nn.Module, step: int) -> None:
        if step >= self.start and not self.layers:
            self.layers = enable_fake_quant(student, self.grid)
            print(f"note: step {step}: quantization-aware phase on ({self.spec}, {self.layers} linear layers)",
                  flush=True)


def kl_to_artifact(model_dir, artifact_dir, spec: FormatQuant | str, prompts=None, threads: int | None = None) -> dict:
    """Mean KL(fake-quantized student || artifact) over the verification prompts' positions: how close
    the grid trained against is to what the exporter wrote (0 up to float noise for the exact grids)."""
    import numpy as np

    from edgedistill.export.verify import VERIFY_PROMPTS, _log_softmax
    from edgedistill.models import load_causal_lm
    from edgedistill.runtimes import open_runtime

    grid = grid_for(spec)
    model, tok = load_causal_lm(model_dir, what="model")
    model.eval()
    enable_fake_quant(model, grid)
    kls = []
    with open_runtime(artifact_dir, threads=threads) as rt, torch.inference_mode():
        for p in prompts or VERIFY_PROMPTS:
            ids = tok(p).input_ids
            t = model(torch.tensor([ids])).logits[0].double().numpy()
            a = np.asarray(rt.logits(ids), dtype=np.float64)
            n = min(t.shape[-1], a.shape[-1])
            if not rt.full_logits:
                t = t[-1:]
            lp_t, lp_a = _log_softmax(t[:, :n]), _log_softmax(a[-t.shape[0]:, :n])
            kls.extend((np.exp(lp_t) * (lp_t - lp_a)).sum(-1).clip(min=0).tolist())
    return {"qat": str(spec), "exact_grid": grid.exact, "kl_mean": float(np.mean(kls)), "kl_max": float(np.max(kls)),
            "positions": len(kls)}
