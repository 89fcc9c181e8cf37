"""The export orchestrator: one model in, one verified artifact directory per (format, quant) out.

    from edgedistill.export import ExportConfig, export
    result = export(ExportConfig(model="student/", artifacts=["gguf:q4_k_m", "onnx:int4"], out_dir="artifacts"))

Order of work, so that bad input fails in the first second and nothing half-written is ever left:

1. Check everything first: the model directory (config, tokenizer, intact safetensors), every
   requested format/quant (valid names, supported architecture), existing outputs, free disk space.
2. Remove ``.partial`` leftovers of a killed earlier run in the output directory.
3. Run the PyTorch reference once (verification prompts, greedy continuations, tokenizer corpus).
4. Per artifact: the format writes into a temporary ``.NAME.*.partial`` directory
   (:func:`edgedistill.atomic.atomic_dir`); it is loaded in its runtime and verified; the manifest
   is written last; only then is the directory renamed to ``<name>-<format>-<quant>``.
   An artifact that fails verification is moved to ``<name>-<format>-<quant>.failed`` (with its
   manifest saying why) or discarded (``keep_failed=False``); it never takes the good name.
5. If any artifact failed, :class:`~edgedistill.errors.VerificationError` (exit code 3) is raised
   after all artifacts were tried; it carries the :class:`ExportResult` as ``.result``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgedistill.atomic import apply_umask, atomic_dir, check_output_dir, clean_partials
from edgedistill.config import registered, require, to_dict
from edgedistill.errors import EdgeDistillError, VerificationError
from edgedistill.export.formats import FORMATS, ExportOptions
from edgedistill.export.manifest import build_manifest, write_manifest
from edgedistill.vocab_map import copy_vocab_map
from edgedistill.export.source import SourceModel, inspect_source
from edgedistill.quant_spec import FormatQuant
from edgedistill.export.verify import VERIFY_PROMPTS, build_reference, thresholds_of, unloadable, verify_artifact

MB = 2**20
ARTIFACT_MARKERS = ("manifest.json",)  # an artifact directory (replaceable with --overwrite) has one


@dataclass
class ExportConfig:
    """Settings of one export run (`edgedistill export`, the `export:` section of a recipe)."""

    model: str = field(default="", metadata={"help": "Model to export: a Hugging Face causal-LM directory "
                                                      "(config.json, safetensors, tokenizer) or a .gguf file."})
    artifacts: list[str] = field(
        default_factory=list,
        metadata={"help": "Artifacts to write, each 'format:quant' (e.g. gguf:q4_k_m, onnx:int4); a "
                          "comma-separated string is accepted too. Leave empty when `target` is set."},
    )
    target: str | None = field(default=None, metadata={"help": "Device profile name (targets/NAME.yaml): pick the "
                                                                "best format:quant that fits its memory budget."})
    targets_dir: str | None = field(default=None, metadata={"help": "Extra directory searched first for target "
                                                                     "profiles."})
    out_dir: str = field(default="artifacts", metadata={"help": "Directory receiving one sub-directory per "
                                                                 "artifact, named <name>-<format>-<quant>."})
    name: str | None = field(default=None, metadata={"help": "Model name used in artifact directory names "
                                                              "(default: the model directory's name)."})
    verify: bool = field(default=True, metadata={"help": "Load every artifact in its runtime and compare it with "
                                                          "the PyTorch model; a failure fails the export."})
    keep_failed: bool = field(default=True, metadata={"help": "Keep an artifact that fails verification as "
                                                               "<dir>.failed for inspection (false: delete it)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace existing artifact directories of the same "
                                                              "name (the old one stays until the new one is verified)."})
    new_tokens: int = field(default=16, metadata={"help": "Greedy tokens generated per verification prompt."})
    prompts: list[str] | None = field(default=None, metadata={"help": "Verification prompts (default: a built-in "
                                                                       "varied set)."})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for the PyTorch reference and the "
                                                                 "runtimes during verification (default: all)."})
    options: ExportOptions = field(default_factory=ExportOptions, metadata={"help": "Format options: "
                                                                                    "int4_block_size, "
                                                                                    "int4_accuracy_level, "
                                                                                    "int4_embeddings, "
                                                                                    "imatrix, opset."})
    calibration_data: str | None = field(default=None, metadata={
        "help": "Records the model will serve (JSONL/JSON/CSV/Parquet, e.g. the distillation data): an "
                "importance matrix is computed from them and feeds every llama.cpp-quantized GGUF type "
                "(K-/IQ-quants); the manifest records their sha256, records and tokens. An explicit "
                "options.imatrix wins."})
    calibration_records: int = field(default=128, metadata={"help": "Calibration records used (the first N)."})
    eval_data: str | None = field(default=None, metadata={
        "help": "Held-out records with references: the float model and every artifact are scored on them "
                "(task check); an artifact below min_retention fails verification."})
    task: str | None = field(default=None, metadata={"help": "Task of eval_data (qa, nli, math, summarization, "
                                                              "conversation): decides the metric."})
    min_retention: float = field(default=0.95, metadata={"help": "Smallest artifact score / float score on "
                                                                  "eval_data, in (0, 1]."})
    eval_records: int | None = field(default=100, metadata={"help": "Eval records scored (the first N; empty: "
                                                                     "all)."})
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Greedy tokens per eval record."})

    def __post_init__(self):
        if isinstance(self.artifacts, str):
            self.artifacts = [a for a in self.artifacts.split(",")]
        require(isinstance(self.artifacts, (list, tuple)), "artifacts", "must be a list of 'format:quant'")
        self.artifacts = [str(a).strip() for a in self.artifacts]
        require(bool(self.model), "model", "give the model directory or .gguf file to export")
        self._planned = FormatQuant.parse_list(self.artifacts, field="artifacts")  # typed once, used inward
        require(bool(self.artifacts) or bool(self.target), "artifacts",
                "name at least one 'format:quant' (or set `target` to let the device profile choose)")
        require(not (self.artifacts and self.target), "target",
                "give either `artifacts` or `target`, not both")
        require(isinstance(self.new_tokens, int) and self.new_tokens >= 1, "new_tokens", "must be an integer >= 1")
        require(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1), "threads",
                "must be an integer >= 1 (or empty for all cores)")
        require(self.prompts is None or (isinstance(self.prompts, list) and self.prompts
                                         and all(isinstance(p, str) and p for p in self.prompts)),
                "prompts", "must be a non-empty list of non-empty strings")
        require(self.name is None or (bool(self.name) and "/" not in self.name and not self.name.startswith(".")),
                "name", f"{self.name!r} is not a usable directory name")
        require(isinstance(self.options, ExportOptions), "options", "must be a mapping of export options")
        if self.options.imatrix is not None and not isinstance(self.options.imatrix, Path):
            self.options.imatrix = Path(self.options.imatrix).expanduser()
        require(self.options.int4_block_size in (16, 32, 64, 128, 256), "options.int4_block_size",
                "must be one of 16, 32, 64, 128, 256")
        self._check_data_options()

    def _check_data_options(self) -> None:
        """calibration / task-check settings (files are read in export(), still before any model loads)."""
        from edgedistill.export.formats import INT4_ALGORITHMS
        from edgedistill.tasks import TASKS

        require(self.options.int4_algorithm in INT4_ALGORITHMS, "options.int4_algorithm",
                f"{self.options.int4_algorithm!r} is not one of {', '.join(INT4_ALGORITHMS)}")
        require(self.options.int4_algorithm != "gptq" or bool(self.calibration_data), "options.int4_algorithm",
                "gptq is data-aware: give --calibration-data FILE (records the model will serve)")
        require(isinstance(self.calibration_records, int) and self.calibration_records >= 1,
                "calibration_records", "must be an integer >= 1")
        require(isinstance(self.min_retention, (int, float)) and 0 < self.min_retention <= 1, "min_retention",
                f"must be within (0, 1], got {self.min_retention!r} (0.95 = keep 95% of the float score)")
        require(self.eval_records is None or (isinstance(self.eval_records, int) and self.eval_records >= 1),
                "eval_records", "must be an integer >= 1 (or empty for all)")
        require(isinstance(self.eval_max_new_tokens, int) and self.eval_max_new_tokens >= 1,
                "eval_max_new_tokens", "must be an integer >= 1")
        if self.eval_data or self.task:
            require(bool(self.eval_data), "eval_data", "--task needs --eval-data FILE (held-out records)")
            require(bool(self.task), "task", f"--eval-data needs --task; valid: {', '.join(TASKS.names())}")
            registered(self.task, "task", TASKS)
            require(self.verify, "eval_data", "the task check is part of verification; drop --no-verify")

    def planned(self) -> list[FormatQuant]:
        """The (format, quant) specs named in ``artifacts``, duplicates dropped, order kept."""
        return list(self._planned)


@dataclass
class ArtifactResult:
    """One written (or failed) artifact."""

    path: Path
    format: str
    quant: str
    passed: bool
    """True when verified and within thresholds, or when verification was skipped (see ``verified``)."""
    verified: bool
    verification: dict | None
    size_bytes: int
    export_seconds: float
    verify_seconds: float

    @property
    def failures(self) -> list[str]:
        return (self.verification or {}).get("failures", [])


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: list[ArtifactResult]
    selection: object | None = None
    """The :class:`~edgedistill.export.select.Selection` when a target chose the artifact."""
    timings: dict = field(default_factory=dict)
    """Seconds spent on the up-front checks (incl. hashing the source), the PyTorch reference, in total."""

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    def summary(self) -> str:
        task = any(_task_figures(a) for a in self.artifacts)  # the retention column only with eval data
        lines = [f"{'artifact':<44} {'size MB':>8} {'KL mean':>9} {'max|dlogit|':>11} {'greedy':>7} {'tok':>6}"
                 + (f" {'retention':>9}" if task else "") + "  result"]
        for a in self.artifacts:
            f = (a.verification or {}).get("figures")
            if f:
                figs = (f"{f['kl_mean']:>9.2e} {f['max_abs_logit_diff']:>11.3g} {f['greedy_match']:>7.0%} "
                        f"{f['tokenizer_checked'] - f['tokenizer_mismatches']:>3}/{f['tokenizer_checked']:<2}")
            else:
                figs = f"{'-':>9} {'-':>11} {'-':>7} {'-':>6}"
            if task:
                ret = (_task_figures(a) or {}).get("retention")
                figs += f" {ret:>9.1%}" if ret is not None else f" {'-':>9}"
            verdict = "ok" if a.passed and a.verified else ("unverified" if a.passed else "FAILED")
            lines.append(f"{a.path.name:<44} {a.size_bytes / MB:>8.2f} {figs}  {verdict}")
            for why in a.failures:
                lines.append(f"    {why}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {"out_dir": str(self.out_dir), "passed": self.passed, "timings": self.timings,
             "artifacts": [asdict(a) | {"path": str(a.path)} for a in self.artifacts]}
        if self.selection is not None:
            d["selection"] = self.selection.to_dict()
        return d


def _task_figures(a: ArtifactResult) -> dict | None:
    return ((a.verification or {}).get("figures") or {}).get("task")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export(config: ExportConfig, log: Callable[[str], None] = _stderr) -> ExportResult:
    """Write, verify and manifest every requested artifact (see the module docstring)."""
    t_start = time.perf_counter()
    source = inspect_source(config.model)
    selection = None
    if config.target:
        from edgedistill.export.select import select_for_target
        from edgedistill.targets import load_target

        profile = load_target(config.target, config.targets_dir)
        selection = select_for_target(source, profile)
        if config.eval_data:  # quality-aware: the fitting candidates are tried smallest first
            from edgedistill.export.select import quality_order

            plan = [(c.format, c.quant) for c in quality_order(selection)]
            log(f"target {profile.name}: {len(plan)} candidate(s) fit; trying them smallest first until one keeps "
                f"{config.min_retention:.0%} of the float model's task score")
        else:
            log(selection.explain())
            plan = [(selection.chosen.format, selection.chosen.quant)]
    else:
        plan = config.planned()
    for fmt_name, quant in plan:
        check_request(source, fmt_name, quant)
    if config.options.imatrix is not None and not config.options.imatrix.is_file():
        raise EdgeDistillError(f"--imatrix {config.options.imatrix}: no such file")
    from edgedistill.export import quality

    data = quality.prepare(config)  # calibration / eval records: read and checked before any model loads

    out = Path(config.out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise EdgeDistillError(f"--out {out} exists and is not a directory")
    name = config.name or source.name
    finals = {(f, q): out / f"{name}-{f}-{q}" for f, q in plan}
    for p in finals.values():  # a directory that is not an artifact is never replaced, even with --overwrite
        check_output_dir(p, ARTIFACT_MARKERS, overwrite=True, option="artifact directory")
        check_output_dir(p.with_name(p.name + ".failed"), ARTIFACT_MARKERS, overwrite=True,
                         option="artifact directory")
    existing = [str(p) for p in finals.values() if p.exists()]
    if existing and not config.overwrite:
        raise EdgeDistillError(
            f"artifact director{'y' if len(existing) == 1 else 'ies'} already exist: {', '.join(existing)}",
            hint="pass --overwrite (overwrite: true) to replace them, or choose another --out",
        )
    check_disk_space(out, source, plan)
    for p in clean_partials(out) if out.is_dir() else []:
        log(f"removed {p.name}, left over from an interrupted export")

    log(f"exporting {source.given} ({source.model_type}, {source.param_count / 1e6:.1f}M parameters): "
        + ", ".join(f"{f}:{q}" for f, q in plan))
    source_sha = source.weights_sha256()
    timings = {"checks_s": round(time.perf_counter() - t_start, 3)}
    reference = None
    if config.verify:
        log("running the PyTorch reference for verification")
        t0 = time.perf_counter()
        reference = build_reference(source.path, tuple(config.prompts or VERIFY_PROMPTS), config.new_tokens,
                                    config.threads)
        timings["reference_s"] = round(time.perf_counter() - t0, 3)

    results = []
    try:
        quality.run_models(data, config, source, plan, log, timings)
        for fmt_name, quant in plan:
            log(f"[{len(results) + 1}/{len(plan)}] {fmt_name}:{quant} -> {finals[(fmt_name, quant)]}")
            res = _export_one(config, source, source_sha, fmt_name, quant, finals[(fmt_name, quant)], reference,
                              data)
            log("    " + (_describe(res)))
            results.append(res)
            if selection is not None and config.eval_data and res.passed:
                break
    finally:
        data.close()
    if selection is not None and config.eval_data:
        results, selection = quality.settle_target(selection, profile, results, config.min_retention)
        log(selection.explain())

    timings["total_s"] = round(time.perf_counter() - t_start, 3)
    result = ExportResult(out, results, selection, timings)
    if not result.passed:
        bad = [a for a in results if not a.passed]
        err = VerificationError(
            f"{len(bad)} of {len(results)} artifact(s) failed verification: "
            + "; ".join(f"{a.format}:{a.quant} ({', '.join(a.failures)})" for a in bad),
            hint=("failed artifacts were kept as *.failed for inspection" if config.keep_failed
                  else "failed artifacts were deleted") + "; --no-verify skips verification",
        )
        err.result = result
        raise err
    return result


def check_request(source: SourceModel, fmt_name: str, quant: str) -> None:
    """The format supports the model's architecture, else a clear error (format and quant were checked
    when the request was parsed: edgedistill.quant_spec)."""
    fmt = FORMATS.get(fmt_name)
    if source.model_type not in fmt.supported_architectures:
        raise EdgeDistillError(
            f"format {fmt_name} cannot export architecture {source.model_type!r} ({source.path / 'config.json'}); "
            f"supported: {', '.join(fmt.supported_architectures) or '(none)'}"
        )


def check_disk_space(out: Path, source: SourceModel, plan: list[tuple[str, str]]) -> None:
    """Refuse to start when the estimated artifact sizes clearly exceed the free space."""
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    # formats keep an fp32 intermediate while quantizing: budget one fp32 copy plus every artifact
    need = int(source.param_count * 4 + sum(source.param_count * FORMATS.get(f).quants[q].bits_per_weight / 8
                                            for f, q in plan))
    if need > free:
        raise EdgeDistillError(
            f"not enough disk space in {probe}: the export needs about {need / MB:.0f} MB, {free / MB:.0f} MB are free",
            hint="free some space or choose another --out",
        )


def _export_one(config, source, source_sha, fmt_name, quant, final: Path, reference, data=None) -> ArtifactResult:
    from edgedistill.export import quality

    data = data or quality.QualityInputs()
    fmt = FORMATS.get(fmt_name)
    spec = fmt.quants[quant]
    failed_dir = final.with_name(final.name + ".failed")
    t_export = t_verify = 0.0
    verification = None
    kept = None
    try:
        with atomic_dir(final, overwrite=True, made_by=ARTIFACT_MARKERS) as tmp:
            t0 = time.perf_counter()
            format_info = fmt.write(source.path, tmp, quant, quality.options_for(data, config.options, fmt_name,
                                                                                 quant)) or {}
            copy_vocab_map(source.path, tmp)  # a vocabulary-pruned student's ids -> teacher ids, for eval
            t_export = time.perf_counter() - t0
            # runtimes find the format through manifest.json; the full manifest replaces this one below
            write_manifest(tmp, {"format": fmt_name, "quant": quant, "status": "incomplete"})
            if reference is not None:
                t0 = time.perf_counter()
                try:
                    verification = verify_artifact(tmp, spec, reference, config.threads)
                except Exception as exc:  # noqa: BLE001 - an artifact its runtime cannot run fails verification
                    verification = unloadable(exc, spec)
                if data.task_check is not None and verification.figures:
                    data.task_check.judge(tmp, verification)
                t_verify = time.perf_counter() - t0
            manifest = build_manifest(
                artifact_dir=tmp, name=final.name, fmt=fmt_name, quant=quant, source=source,
                source_sha256=source_sha,
                quant_spec={"bits_per_weight": spec.bits_per_weight, "description": spec.description,
                            **thresholds_of(spec)},
                verification=verification.to_dict() if verification else None,
                export_options=to_dict(config.options),
                format_info=format_info | {"export_seconds": round(t_export, 3), "verify_seconds": round(t_verify, 3)},
                extra=quality.manifest_extra(data, config.options, fmt_name, quant, tmp, source.path, config.threads),
            )
            write_manifest(tmp, manifest)
            if verification is not None and not verification.passed:
                if config.keep_failed:
                    # take the files out of the temp dir before atomic_dir would publish it
                    shutil.rmtree(failed_dir, ignore_errors=True)
                    apply_umask(tmp)
                    os.replace(tmp, failed_dir)
                    tmp.mkdir()
                    kept = failed_dir
                raise _VerificationFailed
    except _VerificationFailed:
        path = kept or final
        size = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file()) if kept else 0
        return ArtifactResult(path, fmt_name, quant, False, True, verification.to_dict(), size,
                              round(t_export, 3), round(t_verify, 3))
    shutil.rmtree(failed_dir, ignore_errors=True)  # an older failure of this artifact is now superseded
    return ArtifactResult(final, fmt_name, quant, True, verification is not None,
                          verification.to_dict() if verification else None, manifest["size_bytes"],
                          round(t_export, 3), round(t_verify, 3))


class _VerificationFailed(Exception):
    """Internal: leave the atomic_dir block without publishing the artifact."""


def _describe(res: ArtifactResult) -> str:
    size = f"{res.size_bytes / MB:.2f} MB"
    if not res.verified:
        return f"written, {size}, not verified (--no-verify), {res.export_seconds:.1f} s"
    f = res.verification["figures"]
    if not f:
        return f"FAILED verification: {'; '.join(res.failures)}"
    verdict = "verified" if res.passed else "FAILED verification: " + "; ".join(res.failures)
    task = f.get("task")
    task = (f"; {task['metric']} {task['score']:.4g} = {task['retention']:.1%} of float"
            if task and task.get("retention") is not None else "")
    return (f"{verdict}; {size}; KL mean {f['kl_mean']:.2e}, max|dlogit| {f['max_abs_logit_diff']:.3g}, "
            f"greedy {f['greedy_match']:.0%}{task}; export {res.export_seconds:.1f} s + verify {res.verify_seconds:.1f} s")
