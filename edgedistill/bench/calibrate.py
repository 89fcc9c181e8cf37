"""Fit the predictor's constants (``predict.py``) to published figures, and check them leave-one-out.

Input: ``benchmarks/published/decode_figures.yaml`` — devices (core class, DRAM bandwidth, cores,
per-core GFLOP/s) and figures (device, model size, parameters, layers, threads, measured tok/s, source).

The fit is a plain grid search (the model has two constants per core class and one shared per-token
cost; a grid is exact enough and needs no optimiser). Each class's constants are pulled weakly toward
the constants fitted on all classes together, so a class with one figure does not get arbitrary values
for a term its figure cannot see (a memory-bound figure says nothing about compute efficiency).

Leave-one-device-out: every device in turn is removed, everything is refitted on the rest, and the
removed device's figures are predicted — with its class's constants if other devices of that class
remain, else with the all-classes fallback, exactly as a profile without calibration data would be.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from edgedistill.bench.predict import ClassConstants, decode_seconds
from edgedistill.errors import ConfigError

GIB = 2**30
BW_GRID = [round(0.15 + 0.01 * i, 2) for i in range(86)]  # 0.15 .. 1.00
COMPUTE_GRID = [0.005 * (1 / 0.005) ** (i / 59) for i in range(60)]  # 0.005 .. 1, log-spaced
FIXED_GRID = [0.0, 2.5, 5.0, 10.0, 20.0]  # us per layer per token; published figures (>= 0.9 GiB) barely see it
PRIOR_WEIGHT = 0.3  # enough that a class whose figures are all compute-bound keeps a physical bandwidth share


def load_figures(path: str | Path) -> tuple[dict, list[dict]]:
    from edgedistill.config import load_yaml

    data = load_yaml(Path(path))
    devices, figures = data.get("devices") or {}, data.get("figures") or []
    for i, f in enumerate(figures):
        missing = [k for k in ("device", "size_gib", "params_b", "layers", "threads", "decode_tps", "source") if k not in f]
        if missing:
            raise ConfigError(f"{path}: figure {i + 1} lacks {', '.join(missing)}")
        if f["device"] not in devices:
            raise ConfigError(f"{path}: figure {i + 1} names unknown device {f['device']!r}")
    return devices, figures


def predict_figure(fig: dict, device: dict, const: ClassConstants, fixed_us: float) -> float:
    threads = min(fig["threads"], device["cores"])
    secs, _ = decode_seconds(fig["size_gib"] * GIB, fig["params_b"] * 1e9, fig["layers"], threads,
                             device["memory_bandwidth_gbs"], device["core_gflops"], const, fixed_us)
    return 1 / secs


def _loss(figs, devices, const, fixed_us, prior: ClassConstants | None) -> float:
    err = sum(math.log(predict_figure(f, devices[f["device"]], const, fixed_us) / f["decode_tps"]) ** 2 for f in figs)
    if prior is not None:
        err += PRIOR_WEIGHT * (math.log(const.bw_efficiency / prior.bw_efficiency) ** 2
                               + math.log(const.compute_efficiency / prior.compute_efficiency) ** 2)
    return err


def _fit_constants(figs, devices, fixed_us, prior=None) -> tuple[ClassConstants, float]:
    best = None
    for bw in BW_GRID:
        for comp in COMPUTE_GRID:
            c = ClassConstants(bw, comp)
            loss = _loss(figs, devices, c, fixed_us, prior)
            if best is None or loss < best[1]:
                best = (c, loss)
    return best


def fit(devices: dict, figures: list[dict]) -> dict:
    """Constants per class, the all-classes fallback and the shared per-layer cost."""
    best = None
    for fixed_us in FIXED_GRID:
        pooled, _ = _fit_constants(figures, devices, fixed_us)
        classes, total = {}, 0.0
        for cls in sorted({devices[f["device"]]["core_class"] for f in figures}):
            figs = [f for f in figures if devices[f["device"]]["core_class"] == cls]
            const, loss = _fit_constants(figs, devices, fixed_us, prior=pooled)
            classes[cls] = (const, figs)
            total += loss
        if best is None or total < best[0]:
            best = (total, fixed_us, pooled, classes)
    _, fixed_us, pooled, classes = best
    prefill = [f["prefill_tps"] * 2 * f["params_b"] * 1e9 / (min(f["threads"], devices[f["device"]]["cores"])
               * devices[f["device"]]["core_gflops"] * 1e9) for f in figures if f.get("prefill_tps")]
    return {
        "fixed_us_per_layer": fixed_us,
        "prefill_efficiency": statistics.median(prefill) if prefill else 0.5,
        "prefill_figures": len(prefill),
        "global": _entry(pooled, figures, devices),
        "classes": {cls: _entry(c, figs, devices) for cls, (c, figs) in classes.items()},
    }


def _entry(const: ClassConstants, figs, devices) -> dict:
    return {"bw_efficiency": const.bw_efficiency, "compute_efficiency": round(const.compute_efficiency, 4),
            "n_figures": len(figs), "devices": sorted({f["device"] for f in figs}), "loo_low": 1.0, "loo_high": 1.0}


def leave_one_device_out(devices: dict, figures: list[dict]) -> list[dict]:
    """One row per figure: published, predicted with its device left out of the fit, the error."""
    rows = []
    for dev in sorted({f["device"] for f in figures}):
        rest = [f for f in figures if f["device"] != dev]
        cal = fit(devices, rest)
        cls = devices[dev]["core_class"]
        entry = cal["classes"].get(cls)
        used = f"class {cls}" if entry else "fallback (all other classes)"
        entry = entry or cal["global"]
        const = ClassConstants(entry["bw_efficiency"], entry["compute_efficiency"])
        for f in figures:
            if f["device"] != dev:
                continue
            pred = predict_figure(f, devices[dev], const, cal["fixed_us_per_layer"])
            rows.append({**f, "core_class": cls, "calibrated_with": used, "predicted_tps": pred,
                         "error": (pred - f["decode_tps"]) / f["decode_tps"]})
    return rows


def with_ranges(cal: dict, loo_rows: list[dict]) -> dict:
    """Set each class's (and the fallback's) range from the leave-one-out prediction/measured ratios."""
    def factors(rows):
        ratios = [1 + r["error"] for r in rows] or [1.0]
        return min(1.0, 1 / max(ratios)), max(1.0, 1 / min(ratios))

    for cls, entry in cal["classes"].items():
        entry["loo_low"], entry["loo_high"] = factors([r for r in loo_rows if r["core_class"] == cls])
    cal["global"]["loo_low"], cal["global"]["loo_high"] = factors(loo_rows)
    return cal
