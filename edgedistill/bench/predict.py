"""Predicted speeds on a device: a small physical model calibrated on published measurements.

A ceiling (``projection.py``) says what the memory bus or the FP32 units could do at best. A
prediction says what llama.cpp-style decoding has been *measured* to reach on that kind of core:

    t_mem  = bytes per token / (bw_efficiency x DRAM bandwidth)                      # memory
    t_cmp  = 2 x params / (compute_efficiency x thread GFLOP/s)                      # arithmetic
    decode s/token = (t_mem^p + t_cmp^p)^(1/p) + layers x fixed_us_per_layer         # p: overlap
    thread GFLOP/s = the sum over the cores the threads run on (fastest cores first), times the
                     clock a power-limited chip holds with that many cores busy (all_core_clock_ratio)
    prefill tok/s  = thread GFLOP/s x prefill_efficiency / (2 x params)
    TTFT           = prompt / prefill tok/s + one decode step

At one or two threads decode is compute-bound (a core dequantizes and multiplies slower than the bus
delivers), at all cores memory-bound; ``p`` (fitted, shared) says how well the two overlap: a large p
is max(t_mem, t_cmp), p = 1 their sum. Threads add their cores' rates: llama.cpp hands out chunks of
each matrix to whichever thread is free, so a phone's prime core does more of the work than its
performance cores. (The other rule, threads x the slowest core as for an equal static split, was tried
on the same leave-one-out figures: the phone's error 41% instead of 20%; benchmarks/results/predict_calibration.md.)
Per-core GFLOP/s come from the profile's ``core_gflops`` (fastest first, one core busy), else
``peak_gflops / cores``. A 15 W laptop chip cannot hold its one-core turbo clock on every core: the
Surface Book 3's published 7B figures (T-MAC) lose a third of each core's rate from 1 to 4 threads,
and at 4 threads the 2-bit file is only 1.15x faster than the 4-bit one (1.35x if bus-bound),
a clock effect, not a bandwidth one; ``all_core_clock_ratio`` (sustained all-core / one-core clock) models it.

bytes per token = weights read per token + the KV cache at the context reached, so decode slows as
the context grows. ``bw_efficiency`` and ``compute_efficiency`` are per *core class* (Cortex-A76,
Cortex-A72, x86 AVX2, Snapdragon 8 Gen 3); ``fixed_us_per_layer``, ``overlap_exponent`` and
``prefill_efficiency`` are shared. They are fitted by ``benchmarks/predict_calibration.py`` on the
published figures in ``benchmarks/published/decode_figures.yaml`` (each with its source) and written to
``calibration_data.py``. A target whose core class has no published figures uses the constants fitted
on all classes together and says so (``calibration`` in the result).

The range is the calibration's own spread: the largest leave-one-device-out errors of that class
(or of all figures for a fallback), applied around the point prediction.

Runtimes other than llama.cpp are scaled by the ratio this host measured between them and llama.cpp
(``RUNTIME_FACTORS``): a rough correction, labelled as such.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgedistill.bench.calibration_data import CALIBRATION
from edgedistill.errors import ConfigError

# Core classes the calibration knows. A profile names its class in ``core_class``; otherwise it is
# inferred from ``cpu`` / ``isa`` (see core_class_of).
CORE_CLASSES = ("cortex-a76", "cortex-a72", "x86-avx2", "snapdragon-8-gen-3")
PREDICTOR_FIELDS = ("memory_bandwidth_gbs", "peak_gflops", "threads", "cpu_big_cores")


@dataclass(frozen=True)
class ClassConstants:
    bw_efficiency: float
    """Fraction of the theoretical DRAM bandwidth decode reaches when it is memory-bound."""
    compute_efficiency: float
    """Fraction of a core's FP32 peak that quantized matrix-vector decode reaches."""


@dataclass
class SpeedPrediction:
    target: str
    runtime: str
    core_class: str
    calibration: str
    """'core class X (N figures, devices ...)' or 'fallback: ...' when the class has no data."""
    threads: int
    context_length: int
    prompt_len: int
    bytes_per_token: int
    predicted_decode_tok_s: float
    predicted_decode_tok_s_low: float
    predicted_decode_tok_s_high: float
    decode_bound: str
    """'memory' or 'compute': which term of the model is the larger."""
    predicted_prefill_tok_s: float
    predicted_ttft_ms: float
    decode_ceiling_tok_s: float | None
    prefill_ceiling_tok_s: float | None
    label: str = "predicted"

    def to_dict(self) -> dict:
        return asdict(self)


def core_class_of(target) -> tuple[str, bool]:
    """(core class, True when named by the profile) for a TargetProfile."""
    named = getattr(target, "core_class", None)
    if named:
        return named, True
    cpu = (getattr(target, "cpu", "") or "").lower()
    isa = target.isa.lower()
    if "a76" in cpu or "a78" in cpu:
        return "cortex-a76", False
    if "a72" in cpu or "a53" in cpu or "a55" in cpu or (isa.startswith("armv8-a") and "dotprod" not in isa):
        return "cortex-a72", False
    if "snapdragon" in cpu or "x4" in cpu or isa.startswith("armv9"):
        return "snapdragon-8-gen-3", False
    if isa.startswith("x86-64"):
        return "x86-avx2", False
    return "", False


def require_predictor_fields(target) -> None:
    """A clear error naming the field when the profile cannot feed the predictor."""
    where = target.source_file or f"target {target.name!r}"
    for fld in PREDICTOR_FIELDS:
        if getattr(target, fld, None) in (None, 0):
            raise ConfigError(
                f"{where}: field {fld!r} is missing or not measured yet; the speed predictor needs it",
                hint="set it in the profile (with a 'sources' entry), or for the host run "
                     "`edgedistill targets probe` to measure bandwidth and GFLOP/s",
            )


def constants_for(core_class: str, calibration: dict | None = None) -> tuple[ClassConstants, str, tuple[float, float]]:
    """(constants, description, (low factor, high factor)) for a class, falling back to all classes."""
    cal = calibration or CALIBRATION
    entry = cal["classes"].get(core_class)
    if entry:
        desc = f"core class {core_class} ({entry['n_figures']} published figures: {', '.join(entry['devices'])})"
    else:
        entry = cal["global"]
        desc = (f"fallback: no published figures for core class {core_class or '(unknown)'}; constants fitted "
                f"on all {entry['n_figures']} figures of {', '.join(sorted(cal['classes']))}")
    const = ClassConstants(entry["bw_efficiency"], entry["compute_efficiency"])
    return const, desc, (entry["loo_low"], entry["loo_high"])


def thread_gflops(core_gflops, threads: int, all_core_clock_ratio: float = 1.0) -> float:
    """GFLOP/s of ``threads`` threads on the fastest cores (one thread a core).

    ``core_gflops`` are one-core rates. A power-limited chip (a 15 W laptop part) lowers every busy
    core's clock as more cores work, down to ``all_core_clock_ratio`` of the one-core clock with all
    cores busy; in between the clock is taken to fall linearly with the number of busy cores.
    """
    rates = sorted(core_gflops, reverse=True)
    n = max(1, min(threads, len(rates)))
    busy = (n - 1) / (len(rates) - 1) if len(rates) > 1 else 0.0
    return sum(rates[:n]) * (1 - (1 - all_core_clock_ratio) * busy)


def core_rates(target) -> list[float]:
    """Per-core FP32 GFLOP/s of a profile, fastest first."""
    given = getattr(target, "core_gflops", None)
    if given:
        return sorted(given, reverse=True)
    return [target.peak_gflops / target.cores] * target.cores


def decode_seconds(bytes_per_token: float, params: float, layers: int, compute_gflops: float, bandwidth_gbs: float,
                   const: ClassConstants, fixed_us_per_layer: float, overlap: float) -> tuple[float, str]:
    """Seconds per decoded token and which term is the larger.

    ``compute_gflops`` is what the decode threads together can do (thread_gflops); ``overlap`` is the
    exponent p of the smooth maximum (t_mem^p + t_cmp^p)^(1/p).
    """
    t_mem = bytes_per_token / (const.bw_efficiency * bandwidth_gbs * 1e9)
    t_cmp = 2 * params / (compute_gflops * 1e9 * const.compute_efficiency)
    both = (t_mem ** overlap + t_cmp ** overlap) ** (1 / overlap)
    return both + layers * fixed_us_per_layer * 1e-6, "memory" if t_mem >= t_cmp else "compute"


def threads_used(target, threads: int | None = None) -> int:
    """Decode threads, at most the cores (threads beyond the cores only contend)."""
    return max(1, min(threads or target.threads, target.cores))


def predict_speed(shape, target, runtime: str = "llama.cpp", context: int | None = None, prompt_len: int = 128,
                  threads: int | None = None, calibration: dict | None = None) -> SpeedPrediction:
    """Predicted decode/prefill/TTFT of a model (projection.ModelShape) on ``target``."""
    require_predictor_fields(target)
    cal = calibration or CALIBRATION
    if runtime not in cal["runtime_factors"]:
        raise ConfigError(f"no speed calibration for runtime {runtime!r}; known: {', '.join(cal['runtime_factors'])}")
    cls, named = core_class_of(target)
    const, desc, (low, high) = constants_for(cls, cal)
    if cls and not named and not desc.startswith("fallback"):
        desc = f"nearest {desc} (inferred from the profile's cpu/isa; it names no core_class)"
    n = threads_used(target, threads)
    context = context or target.context_length
    per_token = shape.bytes_read_per_token + shape.kv_cache_bytes(context)
    gflops = thread_gflops(core_rates(target), n, getattr(target, "all_core_clock_ratio", 1.0))
    secs, bound = decode_seconds(per_token, shape.params, shape.num_layers, gflops, target.memory_bandwidth_gbs,
                                 const, cal["fixed_us_per_layer"], cal["overlap_exponent"])
    factor = cal["runtime_factors"][runtime]["decode"]
    decode = factor / secs
    prefill = gflops * 1e9 * cal["prefill_efficiency"] * cal["runtime_factors"][runtime]["prefill"] / (2 * shape.params)
    ttft_ms = (prompt_len / prefill + 1 / decode) * 1e3
    if runtime != "llama.cpp":
        desc += f"; x{factor:.2f} for {runtime} ({cal['runtime_factors'][runtime]['source']})"
    return SpeedPrediction(
        target=target.name, runtime=runtime, core_class=cls or "(unknown)", calibration=desc, threads=n,
        context_length=context, prompt_len=prompt_len, bytes_per_token=int(per_token),
        predicted_decode_tok_s=decode, predicted_decode_tok_s_low=decode * low,
        predicted_decode_tok_s_high=decode * high, decode_bound=bound,
        predicted_prefill_tok_s=prefill, predicted_ttft_ms=ttft_ms,
        decode_ceiling_tok_s=target.memory_bandwidth_gbs * 1e9 / per_token,
        prefill_ceiling_tok_s=target.peak_gflops * 1e9 / (2 * shape.params),
    )


def relative_error(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def log_error(predicted: float, measured: float) -> float:
    return math.log(predicted / measured)
