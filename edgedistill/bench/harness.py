"""``edgedistill bench``: measure artifacts per device profile, project device speeds, write reports.

For each (artifact, target, prompt length) one fresh runner subprocess (``runner.py``) loads the
artifact and times it. In ``emulate`` mode (the default) that subprocess runs on this host with the
profile's thread count, pinned to that many CPUs, and its memory budget enforced (see
``runner.MemoryWatch``), labelled ``host-emulated`` (``measured`` for the ``host`` target itself). In
``device`` mode it runs on the real device through the profile's transport, labelled ``device``.
Every (artifact, target) also gets a ``projected`` row from the profile's bandwidth and GFLOP/s.
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.artifacts import Artifact, detect_artifact, verify_manifest_hashes
from edgedistill.atomic import check_writable_dir
from edgedistill.config import one_of, require, to_dict
from edgedistill.errors import EdgeDistillError
from edgedistill.runtime_registry import runtime_for_format
from edgedistill.targets import TargetProfile, load_target



@dataclass
class BenchConfig:
    """Settings of one benchmark; every field is a CLI option and a recipe key (``bench:`` section)."""

    artifacts: list[str] = field(default_factory=list, metadata={"help": "Artifacts: export directories, .gguf files or HF model directories."})
    targets: list[str] = field(default_factory=lambda: ["host"], metadata={"help": "Device profile names (targets/*.yaml)."})
    targets_dir: str | None = field(default=None, metadata={"help": "Extra directory searched first for profiles."})
    prompt_lens: list[int] = field(default_factory=lambda: [128], metadata={"help": "Synthetic prompt lengths in tokens (a sweep)."})
    gen_len: int = field(default=128, metadata={"help": "Tokens decoded per sample."})
    warmup: int = field(default=1, metadata={"help": "Unrecorded warm-up samples per run."})
    min_reps: int = field(default=3, metadata={"help": "At least this many recorded samples per run."})
    min_duration_s: float = field(default=2.0, metadata={"help": "Keep sampling until the recorded samples took this many seconds."})
    max_reps: int = field(default=20, metadata={"help": "At most this many recorded samples per run."})
    cv_threshold: float = field(default=0.10, metadata={"help": "Flag a run whose decode tokens/s or TTFT coefficient of variation exceeds this."})
    mode: str = field(default="emulate", metadata={"help": "emulate: on this host with the profile's threads and memory budget; device: on the device via its transport.", "choices": ("emulate", "device")})
    threads: int | None = field(default=None, metadata={"help": "Override the profile's thread count."})
    enforce_memory: bool = field(default=True, metadata={"help": "Enforce the profile's memory budget on the run (emulate mode)."})
    static_check: bool = field(default=True, metadata={"help": "Skip runs whose size + KV cache cannot fit the budget (reported as does not fit)."})
    timeout_s: float = field(default=1800.0, metadata={"help": "Longest one run may take, in seconds."})
    impl: str = field(default="auto", metadata={"help": "auto: edgedistill's runtimes where importable; standalone: the runner's own minimal adapters.", "choices": ("auto", "standalone")})
    probe_host: bool = field(default=True, metadata={"help": "Measure this host's bandwidth/GFLOP/s (cached) for the host ceiling."})
    out: str = field(default="bench-results", metadata={"help": "Output directory: results.jsonl, results.csv, results.md, results.png."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    verify_hashes: bool = field(default=True, metadata={"help": "Check an artifact's files against its manifest's "
                                                                "sha256 sums before measuring it."})

    def __post_init__(self):
        if isinstance(self.artifacts, (str, os.PathLike)):
            self.artifacts = [str(self.artifacts)]
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        if isinstance(self.prompt_lens, (int, str)):
            self.prompt_lens = [int(x) for x in str(self.prompt_lens).split(",") if x.strip()]
        require(len(self.artifacts) > 0, "artifacts", "give at least one artifact")
        require(len(self.targets) > 0, "targets", "give at least one target")
        require(all(isinstance(n, int) and n >= 1 for n in self.prompt_lens) and self.prompt_lens,
                "prompt_lens", f"{self.prompt_lens!r} must be whole numbers >= 1")
        require(isinstance(self.gen_len, int) and self.gen_len >= 2, "gen_len", "must be >= 2 (decode speed needs two tokens)")
        require(self.warmup >= 0, "warmup", "must be >= 0")
        require(1 <= self.min_reps <= self.max_reps, "min_reps", "must be >= 1 and <= max_reps")
        require(self.min_duration_s >= 0, "min_duration_s", "must be >= 0")
        require(0 < self.cv_threshold < 10, "cv_threshold", "must be a fraction such as 0.1")
        require(self.timeout_s > 0, "timeout_s", "must be > 0")
        require(self.threads is None or self.threads >= 1, "threads", "must be >= 1")
        one_of(self.mode, "mode", ("emulate", "device"))
        one_of(self.impl, "impl", ("auto", "standalone"))


@dataclass
class BenchReport:
    rows: list[dict]
    """One summary row per run (measured / host-emulated / device / does-not-fit / error) and per projection."""
    samples: list[dict]
    """Raw per-sample records (what results.jsonl holds besides the rows)."""
    host: dict | None
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "error"]

    def summary(self) -> str:
        from edgedistill.bench.report import markdown_table

        return markdown_table(self.rows)


# -- helpers -----------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def cv(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    if len(vals) < 2 or statistics.mean(vals) == 0:
        return None
    return statistics.stdev(vals) / statistics.mean(vals)


def check_runtime_available(artifact: Artifact, impl: str = "auto") -> None:
    """A clear error before any run when the runtime a format needs is not installed."""
    spec = runtime_for_format(artifact.format)
    missing = spec.missing_packages()
    if missing:
        raise EdgeDistillError(
            f"artifact {artifact.path} is {artifact.format}, which needs the {artifact.runtime} runtime "
            f"(Python package {', '.join(map(repr, missing))}), and it is not installed",
            hint=spec.install)
    if impl == "auto" and importlib.util.find_spec(spec.module) is None:
        raise EdgeDistillError(
            f"edgedistill has no {artifact.runtime} runtime module yet ({spec.module.replace('.', '/')}.py)",
            hint="use impl: standalone (--impl standalone) for gguf, ort-genai and hf artifacts")


def _predicted_row(base: dict, shape, target, runtime: str, prompt_len: int) -> list[dict]:
    """The calibrated prediction for the device (never a measurement); none where it cannot be made."""
    from edgedistill.bench.predict import predict_speed

    try:
        p = predict_speed(shape, target, runtime=runtime, prompt_len=prompt_len)
    except EdgeDistillError:
        return []
    return [{**base, "prompt_len": None, "label": "predicted", "status": "predicted",
             "decode_tps": p.predicted_decode_tok_s, "decode_tps_low": p.predicted_decode_tok_s_low,
             "decode_tps_high": p.predicted_decode_tok_s_high, "prefill_tps": p.predicted_prefill_tok_s,
             "ttft_ms": p.predicted_ttft_ms, "context_length": p.context_length, "note": p.calibration}]


def summarize(result: dict, cv_threshold: float) -> dict:
    """Metrics of one runner result (without the raw samples)."""
    samples = result.get("samples") or []
    decode = [s["decode_tps"] for s in samples if s.get("decode_tps")]
    itl = [x for s in samples for x in s["itl_s"]]
    row = {
        "cold_load_s": result.get("cold_load_s"),
        "warm_load_s": result.get("warm_load_s"),
        "peak_rss_mb": (result.get("peak_rss_bytes") or 0) / 2**20 or None,
        "reps": len(samples),
        "impl": result.get("impl"),
    }
    if samples:
        row.update(
            ttft_ms=statistics.median(s["ttft_s"] for s in samples) * 1000,
            prefill_tps=statistics.median(s["prefill_tps"] for s in samples),
            decode_tps=statistics.median(decode) if decode else None,
            itl_p50_ms=percentile(itl, 50) * 1000 if itl else None,
            itl_p90_ms=percentile(itl, 90) * 1000 if itl else None,
            itl_p99_ms=percentile(itl, 99) * 1000 if itl else None,
            gen_tokens=min(s["gen_tokens"] for s in samples),
            decode_cv=cv(decode),
            ttft_cv=cv([s["ttft_s"] for s in samples]),
        )
        tripped = [f"{name} CV {c * 100:.1f}%" for name, c in (("decode", row["decode_cv"]), ("TTFT", row["ttft_cv"]))
                   if c is not None and c > cv_threshold]
        row["high_cv"] = bool(tripped)
        row["high_cv_of"] = ", ".join(tripped) or None  # the figure(s) that tripped the flag, shown beside it
    return row


def _cpus_for(threads: int) -> tuple[int, list[int] | None, str | None]:
    """(threads to use, CPUs to pin to, note) on this host."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return threads, None, "no CPU pinning on this OS"
    if threads <= len(allowed):
        return threads, allowed[:threads], None
    return len(allowed), allowed, f"profile wants {threads} threads; this host has {len(allowed)} CPUs, ran with {len(allowed)}"


# -- the benchmark -----------------------------------------------------------------------------------
def bench(config: BenchConfig) -> BenchReport:
    from edgedistill.bench.report import write_reports

    # Everything that can be wrong with the input is checked before the first (slow) run.
    artifacts, targets, shapes = _check_inputs(config)
    host, targets, host_target = _probe_host(config, targets)
    jobs = [(a, t, n) for a in artifacts for t in targets for n in config.prompt_lens]
    facts = {a.path: _memory_facts(a) for a in artifacts}  # one header read per artifact, not per job
    rows: list[dict] = []
    samples: list[dict] = []
    bar = _progress(len(jobs), config.progress)
    transports: dict = {}  # one per target in device mode, so an artifact is copied to a device once
    for art, target, prompt_len in jobs:
        bar.set_description(f"{art.name} @ {target.name} p{prompt_len}")
        if prompt_len == config.prompt_lens[0]:  # projections do not depend on the prompt length
            rows.extend(_projected_rows(config, art, target, shapes[art.path], facts[art.path]))
        row, result = _run_job(config, art, target, prompt_len, shapes[art.path], facts[art.path], host_target,
                               transports)
        rows.append(row)
        samples.extend({"artifact": art.name, "target": target.name, "prompt_len": prompt_len,
                        "label": row["label"], "rep": i, **s} for i, s in enumerate(result.get("samples") or []))
        bar.update(1)
    bar.close()
    report = BenchReport(rows=rows, samples=samples, host=host)
    if config.out:
        report.out_dir = Path(config.out)
        report.files = write_reports(report, Path(config.out), to_dict(config))
    return report


def _check_inputs(config: BenchConfig) -> tuple[list[Artifact], list[TargetProfile], dict]:
    """Artifacts (hashes verified), output dir, targets, runtimes and model shapes, all checked up front."""
    from edgedistill.bench.projection import model_shape

    artifacts = [detect_artifact(a) for a in config.artifacts]
    if config.verify_hashes:
        for art in artifacts:
            verify_manifest_hashes(art)
    if config.out:
        check_writable_dir(config.out)
    targets = [load_target(t, config.targets_dir) for t in config.targets]
    if config.mode == "emulate":  # on a device, the device's packages matter, not this host's
        for art in artifacts:
            check_runtime_available(art, config.impl)
    shapes = {}
    for art in artifacts:
        try:
            shapes[art.path] = model_shape(art)
        except EdgeDistillError:
            raise
        except Exception as exc:
            raise EdgeDistillError(f"artifact {art.path}: cannot read its model shape ({type(exc).__name__}: {exc}); is it corrupt?") from None
    if config.mode == "device":
        for t in targets:
            if t.transport.kind == "none":
                raise EdgeDistillError(f"target {t.name} has no transport (transport.kind: none); it cannot run in device mode",
                                       hint="use --mode emulate for it")
    return artifacts, targets, shapes


def _probe_host(config: BenchConfig, targets: list[TargetProfile]):
    """(host probe or None, targets with ``auto`` figures filled in, the host profile when probed)."""
    host = None
    if config.probe_host and config.mode == "emulate":
        from edgedistill.bench.bandwidth import host_probe

        host = host_probe()
    targets = [_with_host_probe(t, host) for t in targets]
    host_target = None
    if host is not None:
        host_target = _with_host_probe(load_target("host", config.targets_dir), host)
    return host, targets, host_target


def _base_row(config: BenchConfig, art: Artifact, target: TargetProfile, prompt_len: int, shape) -> dict:
    return {"artifact": art.name, "artifact_path": str(art.path), "format": art.format, "runtime": art.runtime,
            "target": target.name, "prompt_len": prompt_len, "gen_len": config.gen_len,
            "artifact_mb": art.size_bytes() / 2**20, "params": shape.params}


def _projected_rows(config: BenchConfig, art: Artifact, target: TargetProfile, shape, facts) -> list[dict]:
    """The ``projected`` row (bandwidth/GFLOP/s ceilings + static fit) and the ``predicted`` rows."""
    from edgedistill.bench.projection import project, static_fit

    base = _base_row(config, art, target, config.prompt_lens[0], shape)
    proj = project(shape, target)
    fit = static_fit(shape, target, art.size_bytes(), art.runtime, facts, config.prompt_lens[0])
    projected = {**base, "prompt_len": None, "label": "projected", "status": "fits" if fit.fits else "does-not-fit",
                 "decode_tps": proj.decode_ceiling_tps, "prefill_tps": proj.prefill_ceiling_tps,
                 "context_length": proj.context_length, "kv_cache_mb": proj.kv_cache_mb,
                 "bytes_per_token": proj.bytes_per_token, "fit": fit.explain()}
    return [projected, *_predicted_row(base, shape, target, art.runtime, config.prompt_lens[0])]


def _memory_facts(art: Artifact):
    """What the runtime's memory terms need (vocabulary, heads, RoPE tables); None without terms."""
    from edgedistill.bench.memory import RUNTIME_MEMORY, facts_from_artifact

    return facts_from_artifact(art) if art.runtime in RUNTIME_MEMORY else None


def _run_job(config: BenchConfig, art: Artifact, target: TargetProfile, prompt_len: int, shape, facts,
             host_target: TargetProfile | None, transports: dict) -> tuple[dict, dict]:
    """Measure one (artifact, target, prompt length) in a runner subprocess: (its row, the runner's result)."""
    from edgedistill.bench.projection import static_fit

    label = "device" if config.mode == "device" else ("measured" if target.name == "host" else "host-emulated")
    row = {**_base_row(config, art, target, prompt_len, shape), "label": label}
    fit = static_fit(shape, target, art.size_bytes(), art.runtime, facts, prompt_len)
    if config.static_check and not fit.fits:
        row.update(status="does-not-fit", reason="static", note=fit.explain())
        return row, {}
    spec, transport = _runner_spec(config, art, target, prompt_len, row, transports)
    row["threads"] = spec["threads"]
    result = transport.run(spec)
    row["status"] = result.get("status", "error")
    if row["status"] == "does-not-fit":
        row["reason"] = "enforced budget"
    if result.get("error"):
        row["error"] = result["error"]
    row.update(summarize(result, config.cv_threshold))
    _add_ceiling(config, row, shape, target, host_target, prompt_len)
    return row, result


def _runner_spec(config: BenchConfig, art: Artifact, target: TargetProfile, prompt_len: int, row: dict,
                 transports: dict):
    """The runner's job description and the transport that runs it (a CPU-pinning note goes into ``row``)."""
    from edgedistill.bench.transports import make_transport

    threads = config.threads or target.threads
    spec = {"artifact": str(art.path), "format": art.format, "main_file": str(art.main_file),
            "prompt_len": prompt_len, "gen_len": config.gen_len, "warmup": config.warmup,
            "min_reps": config.min_reps, "min_duration_s": config.min_duration_s, "max_reps": config.max_reps,
            "impl": config.impl, "threads": threads, "cpus": None, "memory_budget_bytes": None}
    if config.mode == "emulate":
        threads, cpus, note = _cpus_for(threads)
        spec.update(threads=threads, cpus=cpus)
        if note:
            row["note"] = note
        if config.enforce_memory:
            spec["memory_budget_bytes"] = target.memory_budget_bytes
        return spec, make_transport(_local(), config.timeout_s)
    if target.name not in transports:
        transports[target.name] = make_transport(target.transport, config.timeout_s)
    return spec, transports[target.name]


def _add_ceiling(config: BenchConfig, row: dict, shape, target: TargetProfile, host_target: TargetProfile | None,
                 prompt_len: int) -> None:
    """Measured speed against the ceiling of the hardware it ran on (this host when emulating), with the
    KV cache at its mean size during the decode."""
    from edgedistill.bench.projection import project

    ran_on = target if config.mode == "device" else (host_target or target)
    if row.get("decode_tps") and ran_on.memory_bandwidth_gbs:
        ceiling = project(shape, ran_on, context=prompt_len + config.gen_len // 2).decode_ceiling_tps
        row.update(decode_ceiling_tps=ceiling, ceiling_of=ran_on.name,
                   fraction_of_ceiling=row["decode_tps"] / ceiling)


def _local():
    from edgedistill.targets import TransportSettings

    return TransportSettings(kind="local")


def _with_host_probe(t: TargetProfile, host: dict | None) -> TargetProfile:
    """Fill the host profile's ``auto`` bandwidth/GFLOP/s from a fresh probe."""
    if host is None or (t.memory_bandwidth_gbs and t.peak_gflops):
        return t
    import dataclasses

    sources = dict(t.sources)
    if not t.memory_bandwidth_gbs:
        sources["memory_bandwidth_gbs"] = f"measured: {host['method']} at {host.get('measured_at')}, load average {host.get('loadavg_before')}"
    if not t.peak_gflops:
        sources["peak_gflops"] = f"measured: {host['method']}"
    return dataclasses.replace(t, memory_bandwidth_gbs=t.memory_bandwidth_gbs or host["bandwidth_gbs"],
                               peak_gflops=t.peak_gflops or host["gflops"], sources=sources)


class _NoBar:
    def set_description(self, *_):
        pass

    def update(self, *_):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="run", dynamic_ncols=True)
