"""Measure this host's memory bandwidth (STREAM-like) and float32 matmul GFLOP/s, once, cached.

Bandwidth: every usable CPU copies its own slice of a 256 MiB float64 array into another
(``np.copyto`` releases the GIL, so the threads run in parallel); bytes moved = read + write, the
STREAM "copy" convention. The best of several repetitions is kept, as STREAM does. GFLOP/s: a
float32 matmul (BLAS, all threads), 2*n^3 FLOPs. The result is cached in
``$EDGEDISTILL_CACHE/bandwidth.json`` (default ``~/.cache/edgedistill``) keyed by host name and CPU
count; ``refresh=True`` measures again.
"""

from __future__ import annotations

import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgedistill.atomic import atomic_write_json
from edgedistill.packaged_models import cache_root


def cache_path() -> Path:
    return cache_root() / "bandwidth.json"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure_bandwidth(mib: int = 256, reps: int = 5) -> float:
    """Best copy bandwidth over ``reps`` in GB/s (1e9 bytes/s)."""
    import numpy as np

    n = mib * 2**20 // 8
    src = np.ones(n)
    dst = np.zeros(n)
    workers = _cpus()
    bounds = [(i * n // workers, (i + 1) * n // workers) for i in range(workers)]

    def copy(b):
        np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]])

    best = float("inf")
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, bounds))  # touch pages first
        for _ in range(reps):
            t = time.perf_counter()
            list(pool.map(copy, bounds))
            best = min(best, time.perf_counter() - t)
    return 2 * n * 8 / best / 1e9


def measure_gflops(n: int = 1024, reps: int = 5) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def probe_under_load(result: dict) -> str | None:
    """A warning when the 1-minute load average reached half the CPUs during the probe, else None."""
    loads = [la[0] for la in (result.get("loadavg_before"), result.get("loadavg_after")) if la]
    if loads and max(loads) >= 0.5 * (result.get("cpus") or 1):
        return (f"probe taken under load (1-min load average up to {max(loads):.2f} on {result.get('cpus')} CPUs): "
                "bandwidth and GFLOP/s may read low; rerun `edgedistill targets probe` on a quiet machine")
    return None


def host_probe(refresh: bool = False) -> dict:
    """{"bandwidth_gbs", "gflops", "method", "host", "cpus", "measured_at"}, cached."""
    path = cache_path()
    key = {"host": platform.node(), "cpus": _cpus()}
    if not refresh and path.exists():
        try:
            cached = json.loads(path.read_text())
            if all(cached.get(k) == v for k, v in key.items()) and cached.get("bandwidth_gbs"):
                return cached
        except (OSError, json.JSONDecodeError):
            pass
    load_before = _loadavg()
    result = {
        **key,
        "bandwidth_gbs": round(measure_bandwidth(), 2),
        "gflops": round(measure_gflops(), 1),
        "method": f"numpy: best of 5 parallel copies of 256 MiB over {key['cpus']} threads; best of 5 float32 1024^3 matmuls",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # load average (1, 5, 15 min) before and after: a probe taken on a busy machine reads low
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
    }
    try:
        atomic_write_json(path, result)
    except Exception:  # a read-only home must not stop a benchmark
        pass
    return result
