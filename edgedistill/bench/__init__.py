"""Benchmark harness: latency and memory of artifacts per device profile (``edgedistill bench``).

    from edgedistill.bench import BenchConfig, bench
    report = bench(BenchConfig(artifacts=["artifacts/student-gguf-q4_k_m"], targets=["raspberry-pi-5"]))

Modules: ``harness`` (BenchConfig, bench), ``runner`` (one run in a fresh process; self-contained so it
can be copied to a device), ``projection`` (bandwidth/GFLOP/s ceilings), ``bandwidth`` (host probe),
``transports`` (local / ssh / adb), ``report`` (JSONL/CSV/Markdown/PNG and compare).
"""

from edgedistill.bench.harness import BenchConfig, BenchReport, bench

__all__ = ["BenchConfig", "BenchReport", "bench"]
