"""The data-aware parts of an export run, kept out of the orchestrator (``export.run``).

:class:`QualityInputs` carries what the user's data adds to an export:

* calibration data -> one importance matrix, computed once from the PyTorch model and passed to every
  GGUF type that llama.cpp's quantizer makes (K-quants, IQ-quants, the legacy 4/5-bit blocks: with an
  imatrix llama.cpp searches each block's scale weighting the columns the data drives);
* eval data -> a :class:`~edgedistill.export.task_check.TaskCheck` applied after each verification.

Everything read from disk is read by :func:`prepare` before any model loads.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.export.calibration import CalibrationData, load_calibration
from edgedistill.export.source import sha256_file
from edgedistill.export.task_check import TaskCheck, prepare_task_check
from edgedistill.quant_spec import FormatQuant


@dataclass
class QualityInputs:
    calibration: CalibrationData | None = None
    task_check: TaskCheck | None = None
    imatrix: Path | None = None
    """The computed importance matrix (in a temporary directory that lives as long as this object)."""
    imatrix_sha256: str | None = None
    qat: FormatQuant | None = None
    """The FORMAT:QUANT the source was distilled against (``distill --qat``; its distill_config.json)."""
    _tmp: object = field(default=None, repr=False)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def prepare(config) -> QualityInputs:
    """Read and check --calibration-data / --eval-data (no model is loaded)."""
    q = QualityInputs(qat=_qat_of(config.model))
    if config.calibration_data:
        q.calibration = load_calibration(config.calibration_data, config.calibration_records)
    if config.eval_data:
        q.task_check = prepare_task_check(config.eval_data, config.task, config.min_retention, config.eval_records,
                                          config.eval_max_new_tokens, config.threads, config.model)
    return q


def uses_imatrix(fmt_name: str, quant: str) -> bool:
    """Types an importance matrix changes (GGUF's made by llama.cpp's quantizer): the format says."""
    from edgedistill.export.formats import FORMATS

    return FORMATS.get(fmt_name).takes_imatrix(quant)


def run_models(q: QualityInputs, config, source, plan, log, timings: dict) -> None:
    """The model-dependent steps: the imatrix (when a planned artifact uses one) and the float score."""
    if q.calibration is not None and config.options.imatrix is None and any(uses_imatrix(f, x) for f, x in plan):
        from edgedistill.export.gguf.imatrix import compute_imatrix

        log(f"computing the importance matrix from {q.calibration.records} calibration records "
            f"({q.calibration.path.name})")
        t0 = time.perf_counter()
        q._tmp = tempfile.TemporaryDirectory(prefix="edgedistill-imatrix-")
        q.imatrix = Path(q._tmp.name) / "imatrix.gguf"
        counts = compute_imatrix(source.path, q.calibration.texts, q.imatrix)
        q.calibration.tokens = max(counts.values()) if counts else 0
        q.imatrix_sha256 = sha256_file(q.imatrix)
        timings["imatrix_s"] = round(time.perf_counter() - t0, 3)
    if q.task_check is not None:
        log(f"scoring the float model on {len(q.task_check.records)} records of {q.task_check.data} "
            f"(task {q.task_check.task})")
        q.task_check.score_float(source.path)
        timings["task_float_s"] = q.task_check.float_seconds
        log(f"    float {q.task_check.metric}: {q.task_check.float_score}")


def uses_gptq(options, fmt_name: str, quant: str) -> bool:
    """Types whose rounding the calibration texts feed (onnx:int4 by GPTQ): the format says."""
    from edgedistill.export.formats import FORMATS

    return FORMATS.get(fmt_name).takes_calibration_texts(quant, options)


def options_for(q: QualityInputs, options, fmt_name: str, quant: str):
    """The export options of one artifact: the computed imatrix, or GPTQ's calibration texts, where they apply."""
    if q.imatrix is not None and uses_imatrix(fmt_name, quant):
        return dataclasses.replace(options, imatrix=q.imatrix)
    if q.calibration is not None and uses_gptq(options, fmt_name, quant):
        return dataclasses.replace(options, calibration_texts=q.calibration.texts)
    return options


def _qat_of(model: str) -> FormatQuant | None:
    import json

    f = Path(model).expanduser() / "distill_config.json"
    try:
        qat = json.loads(f.read_text()).get("qat") if f.is_file() else None
    except (OSError, ValueError):
        return None
    return None if qat is None else FormatQuant.parse(qat, field=f"{f}: qat")  # typed once, where it is read


def manifest_extra(q: QualityInputs, options, fmt_name: str, quant: str, artifact_dir: Path | None = None,
                   model_dir: Path | None = None, threads: int | None = None) -> dict:
    """``calibration`` for the manifest: which data (and which imatrix) the artifact was made with; ``qat``:
    for the type the source was distilled against, KL(fake-quantized student || artifact)."""
    extra = {}
    if q.qat == FormatQuant(fmt_name, quant) and artifact_dir is not None:
        from edgedistill.distill.qat import kl_to_artifact

        extra["qat"] = kl_to_artifact(model_dir, artifact_dir, q.qat, threads=threads)
    if q.calibration is None:
        return extra
    used = q.imatrix is not None and uses_imatrix(fmt_name, quant)
    gptq = uses_gptq(options, fmt_name, quant)
    entry = q.calibration.manifest_entry("imatrix" if used else "gptq" if gptq else
                                         "none (this type is not data-aware)")
    if used:
        entry["imatrix_sha256"] = q.imatrix_sha256
    if gptq:
        from edgedistill.export.onnx_gptq import GPTQ_RECORDS

        entry["gptq_records"] = min(GPTQ_RECORDS, q.calibration.records)
    elif options.imatrix is not None and uses_imatrix(fmt_name, quant):
        entry["used_for"] = f"none: the given imatrix {options.imatrix} was used instead"
    return extra | {"calibration": entry}


def settle_target(selection, profile, results: list, min_retention: float):
    """After trying candidates for a target: (the artifacts to report, the selection with the tried table).

    Rejected candidates were not asked for by the user: their ``.failed`` directories are removed and
    their figures stay in the table. When none kept the score, every try is reported (and fails)."""
    import shutil

    from edgedistill.export.select import quality_choice

    by_spec = {c.spec: c for c in selection.candidates}
    tried, chosen = [], None
    for r in results:
        task = ((r.verification or {}).get("figures") or {}).get("task") or {}
        tried.append((by_spec[f"{r.format}:{r.quant}"], {
            "size_mb": r.size_bytes / 2**20, "retention": task.get("retention"), "passed": r.passed,
            "failures": r.failures}))
        if r.passed:
            chosen = r
    selection = quality_choice(selection, profile, tried, by_spec[f"{chosen.format}:{chosen.quant}"]
                               if chosen else None, min_retention)
    if chosen is None:
        return results, selection
    for r in results:
        if r is not chosen and r.path.name.endswith(".failed"):
            shutil.rmtree(r.path, ignore_errors=True)
    return [chosen], selection
