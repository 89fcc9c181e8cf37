"""The comparison table of `edgedistill eval` / `edgedistill run`: JSON, Markdown and a chart.

One row per model (teacher, student before distillation, distilled student, each artifact) with
parameters, file size, peak memory, time to first token, decode speed, the task's metrics and
retention (a share of the teacher's score; perplexity: teacher_ppl / model_ppl).

Latency and memory come from bench reports when given (``apply_bench``: one target's figures go into
the main columns, every target's into a second table), else from the light measurements eval makes
while it decodes.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from edgedistill.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from edgedistill.errors import EdgeDistillError

METRIC_LABELS = {
    "accuracy": "accuracy",
    "rouge_l": "ROUGE-L",
    "bleu": "BLEU",
    "chrf": "chrF",
    "perplexity": "ppl",
    "top1_agreement": "top-1 agree",
    "teacher_rouge_l": "ROUGE-L vs teacher",
}


def _fmt(value, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return "n/a"
    if kind == "params":
        return f"{value / 1e6:.1f}M"
    if kind == "bytes":
        return f"{value / 2**20:.1f} MB"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "share":
        return f"{value:.2f}"
    if isinstance(value, float):
        if abs(value) >= 1e6:  # e.g. the perplexity of a freshly pruned student
            return f"{value:.2e}"
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown_table(report) -> str:
    """The comparison as Markdown (what `eval` and `run` print)."""
    primary = report.primary_metric
    extra = [m for m in report.metrics if m != primary]
    head = ["model", "format", "params", "size", "peak mem", "TTFT", "decode tok/s",
            METRIC_LABELS[primary], "retention", "ppl", "ppl retention", "top-1 agree", "ROUGE-L vs teacher"]
    head += [METRIC_LABELS[m] for m in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        s, r = row["scores"], row.get("retention", {})
        cells = [
            row["name"], row["format"], _fmt(row.get("parameters"), "params"), _fmt(row.get("size_bytes"), "bytes"),
            "n/a" if row.get("peak_memory_mb") is None else f"{row['peak_memory_mb']:.0f} MB",
            "n/a" if row.get("ttft_ms") is None else f"{row['ttft_ms']:.0f} ms",
            _fmt(row.get("decode_tokens_per_s")),
            _fmt(s.get(primary), "pct" if primary == "accuracy" else "num"),
            _fmt(r.get(primary), "share"),
            _fmt(s.get("perplexity")), _fmt(r.get("perplexity"), "share"),
            _fmt(s.get("top1_agreement"), "pct"), _fmt(s.get("teacher_rouge_l")),
        ]
        cells += [_fmt(s.get(m)) for m in extra]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    out = [f"## Comparison: task {report.task}, {report.records} records of {report.data}", ""]
    if getattr(report, "headline", None):
        out += [f"**{report.headline}**", ""]
    out += [*lines, ""]
    sources = sorted({row.get("speed_source", "eval (light)") for row in report.rows})
    out.append(f"TTFT / decode tok/s / peak mem from: {', '.join(sources)}.")
    bench_rows = [(row["name"], b) for row in report.rows for b in row.get("bench", [])]
    if bench_rows:
        out += ["", "### Bench, per target", "",
                "| model | target | TTFT | decode tok/s | peak mem | status |", "|---|---|---|---|---|---|"]
        for name, b in bench_rows:
            out.append(f"| {name} | {b['target']} | {_fmt(b.get('ttft_ms'))} ms | {_fmt(b.get('decode_tokens_per_s'))}"
                       f" | {_fmt(b.get('peak_memory_mb'))} MB | {b.get('fits', 'n/a')} |")
    out += ["", *[f"- {n}" for n in report.notes]]
    per_model = [f"- {row['name']}: {n}" for row in report.rows for n in row.get("notes", [])]
    out += per_model
    return "\n".join(out) + "\n"


def chart_png(report) -> bytes:
    """Quality (primary metric, and perplexity when known) against file size, one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = report.primary_metric
    panels = [primary] + (["perplexity"] if any(r["scores"].get("perplexity") for r in report.rows) else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for row in report.rows:
            y, x = row["scores"].get(metric), row.get("size_bytes")
            if y is None or x is None:
                continue
            ax.scatter(x / 2**20, y, s=40)
            ax.annotate(row["name"], (x / 2**20, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("file size (MB)")
        ax.set_ylabel(METRIC_LABELS[metric] + (" (lower is better, log scale)" if metric == "perplexity" else ""))
        if metric == "perplexity":
            ax.set_yscale("log")  # a pruned student's ppl can be 1e6 times the teacher's
        ax.set_title(f"{METRIC_LABELS[metric]} vs size")
        ax.grid(alpha=0.3)
    fig.suptitle(f"edgedistill eval: {report.task}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(report, out: str | Path, stem: str = "eval") -> dict[str, str]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` in ``out``, each written atomically."""
    out = Path(out)
    files = {"json": str(out / f"{stem}.json"), "markdown": str(out / f"{stem}.md"), "chart": str(out / f"{stem}.png")}
    report.files = files
    atomic_write_text(files["markdown"], markdown_table(report))
    atomic_write_bytes(files["chart"], chart_png(report))
    atomic_write_json(files["json"], report.to_dict())
    return files


# --- bench results --------------------------------------------------------------------------------

_TTFT_KEYS = ("ttft_ms", "time_to_first_token_ms", "ttft_ms_median")
_DECODE_KEYS = ("decode_tokens_per_s", "decode_tok_s", "decode_tps", "tokens_per_s")
_MEM_KEYS = ("peak_memory_mb", "peak_rss_mb", "peak_mem_mb")


def _first(d: dict, keys) -> float | None:
    for k in keys:
        if isinstance(d.get(k), (int, float)):
            return float(d[k])
    return None


def bench_entries(path: str | Path) -> list[dict]:
    """Flatten a bench report (results dir / results.jsonl / JSON) into {artifact, target, ttft_ms, decode_tokens_per_s, peak_memory_mb}."""
    p = Path(path)
    if p.is_dir():  # an `edgedistill bench --out` directory
        p = p / "results.jsonl"
    if not p.exists():
        raise EdgeDistillError(f"bench report {p} does not exist", hint="run `edgedistill bench` first")
    if p.suffix == ".jsonl":  # edgedistill bench: summary rows are {"type": "row", ...}; skip projections
        from edgedistill.atomic import read_jsonl_records

        data = [r for r in read_jsonl_records(p) if r.get("type") == "row" and r.get("label") not in ("projected", "predicted")]
    else:
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise EdgeDistillError(f"{p}: not a bench report (invalid JSON: {exc.msg})") from None
    items = data
    if isinstance(data, dict):
        items = next((data[k] for k in ("results", "rows", "runs", "measurements") if isinstance(data.get(k), list)),
                     [data])
    out = []
    for it in items:
        if not isinstance(it, dict):
            continue
        metrics = it.get("metrics") if isinstance(it.get("metrics"), dict) else it
        artifact = it.get("artifact_path") or it.get("artifact") or it.get("path") or it.get("model")
        if isinstance(artifact, dict):
            artifact = artifact.get("path") or artifact.get("name")
        target = it.get("target") or it.get("target_name") or "host"
        if isinstance(target, dict):
            target = target.get("name", "?")
        if artifact is None:
            continue
        out.append({
            "artifact": str(artifact),
            "target": str(target),
            "ttft_ms": _first(metrics, _TTFT_KEYS),
            "decode_tokens_per_s": _first(metrics, _DECODE_KEYS),
            "peak_memory_mb": _first(metrics, _MEM_KEYS),
            "fits": it.get("fits", metrics.get("fits", it.get("status"))),
        })
    return out


def _same_model(row: dict, artifact: str) -> bool:
    a, b = Path(row["path"]).resolve(), Path(artifact)
    if b.exists():
        b = b.resolve()
        return a == b or a == b.parent or a.parent == b
    return b.name in (a.name, a.stem, row["name"])


def apply_bench(report, bench_files: list[str], main_target: str | None = None) -> None:
    """Attach bench figures to the rows; the main columns take ``main_target`` (default: the first seen)."""
    entries = [e for f in bench_files for e in bench_entries(f)]
    if main_target is None and entries:
        hosts = [e["target"] for e in entries if e["target"] == "host"]
        main_target = hosts[0] if hosts else entries[0]["target"]
    for row in report.rows:
        mine = [e for e in entries if _same_model(row, e["artifact"])]
        row["bench"] = mine
        main = next((e for e in mine if e["target"] == main_target), None)
        if main is not None:
            row["ttft_ms"] = main["ttft_ms"]
            row["decode_tokens_per_s"] = main["decode_tokens_per_s"]
            if main["peak_memory_mb"] is not None:
                row["peak_memory_mb"] = main["peak_memory_mb"]
            row["speed_source"] = f"bench (target {main_target})"
            row["speed_target"] = main_target


def headline(report, shipped: str) -> tuple[str | None, str | None]:
    """("student vs teacher: N% smaller, N× faster decode on <target>, N% of the teacher's <metric> kept",
    None), or (None, why not). ``shipped``: the name of the row of the artifact that ships.

    Size: the files' bytes. Speed: only when bench measured both rows on the same target (one method
    for both; eval's light timings are not comparable across runtimes). Quality: the primary metric's
    retention on eval's records."""
    teacher = next((r for r in report.rows if r.get("role") == "teacher"), None)
    student = next((r for r in report.rows if r["name"] == shipped), None)
    if teacher is None or student is None:
        return None, f"no headline: the report has no {'teacher' if teacher is None else shipped!r} row"
    parts = []
    t_size, s_size = teacher.get("size_bytes"), student.get("size_bytes")
    if t_size and s_size:
        share = s_size / t_size
        parts.append(f"{100 * (1 - share):.0f}% smaller" if share <= 1 else f"{100 * (share - 1):.0f}% larger")
    t_tps, s_tps = teacher.get("decode_tokens_per_s"), student.get("decode_tokens_per_s")
    target = student.get("speed_target")
    if target and target == teacher.get("speed_target") and t_tps and s_tps:
        parts.append(f"{s_tps / t_tps:.1f}× faster decode on {target}" if s_tps >= t_tps
                     else f"{s_tps / t_tps:.2f}× the teacher's decode speed on {target}")
    else:
        parts.append("decode speed not compared (bench did not measure both on one target)")
    primary = report.primary_metric
    kept = (student.get("retention") or {}).get(primary)
    label = METRIC_LABELS[primary]
    parts.append(f"{100 * kept:.0f}% of the teacher's {label} kept" if kept is not None
                 else f"{label} retention n/a")
    return f"student vs teacher: {', '.join(parts)}", None
