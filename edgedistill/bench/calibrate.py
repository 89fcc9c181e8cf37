"""Fit the predictor's constants (``predict.py``) to published figures, and check them leave-one-out.

Input: ``benchmarks/published/decode_figures.yaml`` — devices (core class, DRAM bandwidth, cores,
per-core GFLOP/s with one core busy: one figure, or a list fastest first where the cores differ; optional
``all_core_clock_ratio`` for a power-limited chip) and figures (device,
model size, parameters, layers, threads, measured tok/s, source).

The fit is a plain grid search (the model has two constants per core class, and a shared per-token
cost and overlap exponent; a grid, evaluated with numpy, is exact enough and needs no optimiser).
Each class's constants are pulled weakly toward the constants fitted on all classes together, so a
class with one figure does not get arbitrary values for a term its figure cannot see (a memory-bound figure says nothing about compute efficiency).

Leave-one-device-out: every device in turn is removed, everything is refitted on the rest, and the
removed device's figures are predicted — with its class's constants if other devices of that class
remain, else with the all-classes fallback, exactly as a profile without calibration data would be.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from edgedistill.bench.predict import ClassConstants, decode_seconds, thread_gflops
from edgedistill.errors import ConfigError

GIB = 2**30
BW_GRID = np.round(0.15 + 0.01 * np.arange(86), 2)  # 0.15 .. 1.00
COMPUTE_GRID = 0.005 * (1 / 0.005) ** (np.arange(60) / 59)  # 0.005 .. 1, log-spaced
FIXED_GRID = [0.0, 2.5, 5.0, 10.0, 20.0, 40.0]  # us per layer per token; bounded: see docs/plan.md
OVERLAP_GRID = [1.0, 1.5, 2.0, 3.0, 4.0, 8.0]  # p of the smooth maximum: 1 = sum of the terms, 8 ~ max
PRIOR_WEIGHT = 0.3  # enough that a class whose figures are all compute-bound keeps a physical bandwidth share


def load_figures(path: str | Path) -> tuple[dict, list[dict]]:
    from edgedistill.config import load_yaml

    data = load_yaml(Path(path))
    devices, figures = data.get("devices") or {}, data.get("figures") or []
    for name, dev in devices.items():
        missing = [k for k in ("core_class", "cores", "memory_bandwidth_gbs", "core_gflops", "spec_source") if k not in dev]
        if missing:
            raise ConfigError(f"{path}: device {name!r} lacks {', '.join(missing)}")
        rates = dev["core_gflops"]
        if isinstance(rates, list) and len(rates) != dev["cores"]:
            raise ConfigError(f"{path}: device {name!r}: core_gflops lists {len(rates)} cores, cores is {dev['cores']}")
    for i, f in enumerate(figures):
        missing = [k for k in ("device", "size_gib", "params_b", "layers", "threads", "decode_tps", "source") if k not in f]
        if missing:
            raise ConfigError(f"{path}: figure {i + 1} lacks {', '.join(missing)}")
        if f["device"] not in devices:
            raise ConfigError(f"{path}: figure {i + 1} names unknown device {f['device']!r}")
    return devices, figures


def device_gflops(device: dict, threads: int) -> float:
    """GFLOP/s of ``threads`` threads on a device (core_gflops: one figure for all cores, or a list)."""
    rates = device["core_gflops"]
    rates = rates if isinstance(rates, list) else [rates] * device["cores"]
    return thread_gflops(rates, min(threads, device["cores"]), device.get("all_core_clock_ratio", 1.0))


def predict_figure(fig: dict, device: dict, const: ClassConstants, fixed_us: float, overlap: float) -> float:
    secs, _ = decode_seconds(fig["size_gib"] * GIB, fig["params_b"] * 1e9, fig["layers"],
                             device_gflops(device, fig["threads"]), device["memory_bandwidth_gbs"], const,
                             fixed_us, overlap)
    return 1 / secs


def _terms(figs, devices) -> dict:
    """Per figure: memory and compute seconds at efficiency 1, layers, log of the measured rate."""
    return {
        "mem": np.array([f["size_gib"] * GIB / (devices[f["device"]]["memory_bandwidth_gbs"] * 1e9) for f in figs]),
        "cmp": np.array([2 * f["params_b"] / device_gflops(devices[f["device"]], f["threads"]) for f in figs]),
        "layers": np.array([f["layers"] for f in figs], dtype=float),
        "log_tps": np.log([f["decode_tps"] for f in figs]),
    }


def _fit_constants(figs, devices, fixed_us, overlap, prior=None) -> tuple[ClassConstants, float]:
    """Best (bw_efficiency, compute_efficiency) on the grid: squared log errors (+ the pull to ``prior``)."""
    t = _terms(figs, devices)
    t_mem = t["mem"][None, None, :] / BW_GRID[:, None, None]
    t_cmp = t["cmp"][None, None, :] / COMPUTE_GRID[None, :, None]
    secs = (t_mem ** overlap + t_cmp ** overlap) ** (1 / overlap) + t["layers"] * fixed_us * 1e-6
    loss = ((-np.log(secs) - t["log_tps"]) ** 2).sum(axis=-1)
    if prior is not None:
        loss = loss + PRIOR_WEIGHT * (np.log(BW_GRID / prior.bw_efficiency)[:, None] ** 2
                                      + np.log(COMPUTE_GRID / prior.compute_efficiency)[None, :] ** 2)
    i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
    return ClassConstants(float(BW_GRID[i]), float(COMPUTE_GRID[j])), float(loss[i, j])


def fit(devices: dict, figures: list[dict]) -> dict:
    """Constants per class, the all-classes fallback, the shared per-layer cost and overlap exponent."""
    best = None
    for fixed_us in FIXED_GRID:
        for overlap in OVERLAP_GRID:
            pooled, _ = _fit_constants(figures, devices, fixed_us, overlap)
            classes, total = {}, 0.0
            for cls in sorted({devices[f["device"]]["core_class"] for f in figures}):
                figs = [f for f in figures if devices[f["device"]]["core_class"] == cls]
                const, loss = _fit_constants(figs, devices, fixed_us, overlap, prior=pooled)
                classes[cls] = (const, figs)
                total += loss
            if best is None or total < best[0]:
                best = (total, fixed_us, overlap, pooled, classes)
    _, fixed_us, overlap, pooled, classes = best
    prefill = [f["prefill_tps"] * 2 * f["params_b"] * 1e9 / (device_gflops(devices[f["device"]], f["threads"]) * 1e9)
               for f in figures if f.get("prefill_tps")]
    return {
        "fixed_us_per_layer": fixed_us,
        "overlap_exponent": overlap,
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
            pred = predict_figure(f, devices[dev], const, cal["fixed_us_per_layer"], cal["overlap_exponent"])
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
