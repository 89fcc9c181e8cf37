"""Benchmark output: results.jsonl (raw samples + summary rows), results.csv, results.md, results.png.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written report.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgedistill.atomic import atomic_write_bytes, atomic_write_text, read_jsonl_records
from edgedistill.errors import EdgeDistillError

CSV_COLUMNS = [
    "artifact", "format", "runtime", "target", "label", "status", "prompt_len", "gen_len", "threads",
    "cold_load_s", "warm_load_s", "ttft_ms", "prefill_tps", "decode_tps", "itl_p50_ms", "itl_p90_ms",
    "itl_p99_ms", "peak_rss_mb", "artifact_mb", "reps", "decode_cv", "ttft_cv", "high_cv",
    "decode_ceiling_tps", "ceiling_of", "fraction_of_ceiling", "context_length", "kv_cache_mb", "reason",
    "note", "fit", "error", "high_cv_of", "decode_tps_low", "decode_tps_high",
]
# metric -> True when higher is better (for compare)
METRICS = {
    "decode_tps": True, "prefill_tps": True, "ttft_ms": False, "itl_p50_ms": False, "itl_p90_ms": False,
    "itl_p99_ms": False, "peak_rss_mb": False, "cold_load_s": False, "warm_load_s": False,
}


def _fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.3g}"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    head = ["artifact", "target", "label", "status", "prompt", "load cold/warm s", "TTFT ms", "prefill tok/s",
            "decode tok/s", "ITL p50/p90/p99 ms", "peak RSS MB", "size MB", "CV decode", "of ceiling"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cvd = r.get("decode_cv")
        cv_txt = "–" if cvd is None else f"{cvd * 100:.1f}%"
        if r.get("high_cv"):  # name the figure that tripped the flag: it may be TTFT, not decode
            cv_txt += f" ⚠ high ({r.get('high_cv_of') or 'decode/TTFT'})"
        decode_txt = _fmt(r.get("decode_tps"))
        if r.get("decode_tps_low") is not None:
            decode_txt += f" ({_fmt(r['decode_tps_low'])}–{_fmt(r['decode_tps_high'])})"
        frac = r.get("fraction_of_ceiling")
        status = r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        lines.append("| " + " | ".join([
            r["artifact"], r["target"], r["label"], status, _fmt(r.get("prompt_len")),
            f"{_fmt(r.get('cold_load_s'), 2)} / {_fmt(r.get('warm_load_s'), 2)}" if r.get("cold_load_s") else "–",
            _fmt(r.get("ttft_ms")), _fmt(r.get("prefill_tps")), decode_txt,
            "/".join(_fmt(r.get(k), 2) for k in ("itl_p50_ms", "itl_p90_ms", "itl_p99_ms")) if r.get("itl_p50_ms") else "–",
            _fmt(r.get("peak_rss_mb")), _fmt(r.get("artifact_mb")), cv_txt,
            f"{frac * 100:.0f}% of {r.get('ceiling_of')}" if frac else "–",
        ]) + " |")
    notes = [f"- {r['artifact']} @ {r['target']}: {r.get('fit') or r.get('note') or r.get('error')}"
             for r in rows if r.get("fit") or r.get("note") or r.get("error")]
    return "\n".join(lines) + ("\n\nNotes:\n" + "\n".join(notes) if notes else "") + "\n"


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in CSV_COLUMNS})
    return buf.getvalue()


def _chart_png(rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r["label"] != "projected" and r["status"] == "ok"]
    fig, axes = plt.subplots(1, 3, figsize=(15, max(3, 0.45 * len(measured) + 1.5)))
    names = [f"{r['artifact']} @ {r['target']} p{r['prompt_len']}" for r in measured]
    panels = [("ttft_ms", "time to first token (ms)"), ("itl_p50_ms", "inter-token latency p50 (ms)"),
              ("peak_rss_mb", "peak resident memory (MB)")]
    for ax, (key, title) in zip(axes, panels):
        vals = [r.get(key) or 0 for r in measured]
        ax.barh(range(len(vals)), vals, color="#4c72b0")
        ax.set_yticks(range(len(vals)), names if ax is axes[0] else [""] * len(vals), fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        if key == "itl_p50_ms":  # p90 as a whisker
            p90 = [r.get("itl_p90_ms") or 0 for r in measured]
            ax.errorbar(vals, range(len(vals)), xerr=[[0] * len(vals), [b - a for a, b in zip(vals, p90)]],
                        fmt="none", ecolor="black", capsize=3)
    if not measured:
        axes[0].text(0.5, 0.5, "no successful runs", ha="center", transform=axes[0].transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_reports(report, out_dir: Path, config: dict) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": "meta", "config": config, "host": report.host}, default=str)]
    lines += [json.dumps({"type": "row", **r}, default=str) for r in report.rows]
    lines += [json.dumps({"type": "sample", **s}, default=str) for s in report.samples]
    files = {
        "jsonl": atomic_write_text(out_dir / "results.jsonl", "\n".join(lines) + "\n"),
        "csv": atomic_write_text(out_dir / "results.csv", _csv_text(report.rows)),
        "md": atomic_write_text(out_dir / "results.md", "# edgedistill bench\n\n" + markdown_table(report.rows)),
        "png": atomic_write_bytes(out_dir / "results.png", _chart_png(report.rows)),
    }
    return files


# -- compare ----------------------------------------------------------------------------------------
def load_rows(path: str | Path) -> list[dict]:
    """Summary rows of a results directory or results.jsonl."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.jsonl"
    if not p.exists():
        raise EdgeDistillError(f"{p} does not exist; give a bench --out directory or its results.jsonl")
    rows = [r for r in read_jsonl_records(p) if r.get("type") == "row"]
    if not rows:
        raise EdgeDistillError(f"{p} holds no benchmark rows; is it an edgedistill bench results file?")
    return rows


def _key(r: dict) -> tuple:
    return (r["artifact"], r["target"], r.get("prompt_len"), r["label"])


def compare(old_path, new_path, threshold: float) -> tuple[list[dict], bool]:
    """(differences, any regression). A regression: a metric worse by more than ``threshold`` (0.05 = 5%),
    or a run that was ok before and is not now."""
    old = {_key(r): r for r in load_rows(old_path) if r["label"] not in ("projected", "predicted")}
    new = {_key(r): r for r in load_rows(new_path) if r["label"] not in ("projected", "predicted")}
    diffs, regressed = [], False
    for key in sorted(set(old) & set(new), key=str):
        o, n = old[key], new[key]
        if o["status"] == "ok" and n["status"] != "ok":
            diffs.append({"run": key, "metric": "status", "old": o["status"], "new": n["status"], "change": None, "regression": True})
            regressed = True
            continue
        for metric, higher_better in METRICS.items():
            a, b = o.get(metric), n.get(metric)
            if not a or b is None:
                continue
            change = (b - a) / a
            worse = -change if higher_better else change
            bad = worse > threshold
            regressed |= bad
            diffs.append({"run": key, "metric": metric, "old": a, "new": b, "change": change, "regression": bad})
    for key in sorted(set(old) - set(new), key=str):
        diffs.append({"run": key, "metric": "missing in new", "old": None, "new": None, "change": None, "regression": False})
    return diffs, regressed


def format_compare(diffs: list[dict], threshold: float) -> str:
    lines = [f"{'run':<52} {'metric':<14} {'old':>10} {'new':>10} {'change':>8}"]
    for d in diffs:
        a, t, p, lab = d["run"]
        run = f"{a} @ {t} p{p} ({lab})"
        ch = "" if d["change"] is None else f"{d['change'] * 100:+.1f}%"
        flag = "  REGRESSION" if d["regression"] else ""
        lines.append(f"{run[:52]:<52} {d['metric']:<14} {_fmt(d['old'], 2):>10} {_fmt(d['new'], 2):>10} {ch:>8}{flag}")
    n = sum(d["regression"] for d in diffs)
    lines.append(f"{n} regression(s) beyond {threshold * 100:g}%" if n else f"no regression beyond {threshold * 100:g}%")
    return "\n".join(lines)
