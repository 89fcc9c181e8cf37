"""Verification figures of every onnx / ort-genai quantization type, to set QuantSpec thresholds.

For each model (the tiny test models of every architecture, and a ~112M-parameter llama built
with ``build_tiny_model("llama", ..., hidden_size=768, num_layers=12, num_heads=12, vocab_size=32000)``)
and each (format, quant), it writes the artifact with the format's ``write`` (timed), measures its
size, and runs the export verification (``edgedistill.export.verify``: mean/max KL over prompt
positions, max |logit diff|, top-1 agreement, teacher-forced and free-running 16-token greedy agreement, tokenizer
identity, stream consistency) against the PyTorch model. Extra variants show the cost of ``int4_accuracy_level=4``.

    .venv/bin/python benchmarks/onnx_quant_figures.py                 # tiny models + 112M llama
    .venv/bin/python benchmarks/onnx_quant_figures.py --skip-large    # tiny models only (~3 min)

Prints a table and writes benchmarks/results/onnx_quant_figures.json (+ .md table; `--render FILE.json`
re-prints the table of an earlier run with the thresholds registered now).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.export import FORMATS, ExportOptions  # noqa: E402  (registers the formats)
from edgedistill.export.formats import QuantSpec  # noqa: E402
from edgedistill.export.verify import build_reference, judge, verify_artifact  # noqa: E402
from edgedistill.testing.tiny import ARCHITECTURES, build_tiny_model, build_tokenizer  # noqa: E402

OUT = Path(__file__).parent / "results" / "onnx_quant_figures.json"
LARGE = dict(hidden_size=768, num_layers=12, num_heads=12, vocab_size=32000)
# (format, quant, options, label)
CASES = [
    ("onnx", "fp32", ExportOptions(), "onnx:fp32"),
    ("onnx", "fp16", ExportOptions(), "onnx:fp16"),
    ("onnx", "int8", ExportOptions(), "onnx:int8"),
    ("onnx", "int4", ExportOptions(), "onnx:int4"),
    ("onnx", "int4", ExportOptions(int4_accuracy_level=4), "onnx:int4 (accuracy_level=4)"),
    ("ort-genai", "fp32", ExportOptions(), "ort-genai:fp32"),
    ("ort-genai", "int8", ExportOptions(), "ort-genai:int8"),
    ("ort-genai", "int8", ExportOptions(int4_accuracy_level=4), "ort-genai:int8 (accuracy_level=4)"),
    ("ort-genai", "int4", ExportOptions(), "ort-genai:int4"),
    ("ort-genai", "int4", ExportOptions(int4_accuracy_level=4), "ort-genai:int4 (accuracy_level=4)"),
]
PERMISSIVE = QuantSpec("measure", 32.0, max_kl=float("inf"), min_greedy_match=0.0)


def measure(model_name: str, model_dir: Path, work: Path, threads: int | None, only: set | None = None) -> list[dict]:
    ref = build_reference(model_dir, threads=threads)
    rows = []
    for fmt_name, quant, options, label in CASES:
        if only and label not in only:
            continue
        fmt = FORMATS.get(fmt_name)
        out = work / f"{model_name}-{label.replace(' ', '_').replace(':', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            fmt.write(model_dir, out, quant, options)
        except Exception as exc:  # record and go on: the table shows what fails
            rows.append({"model": model_name, "case": label, "error": str(exc).splitlines()[0]})
            print(f"{model_name:14s} {label:36s} ERROR {rows[-1]['error']}", flush=True)
            continue
        export_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.suffix in (".onnx", ".data", ".onnx_data"))
        t0 = time.perf_counter()
        v = verify_artifact(out, PERMISSIVE, ref, threads=threads)
        verify_s = time.perf_counter() - t0
        verdict = judge(v.figures, fmt.quants[quant])
        f = v.figures
        row = {
            "model": model_name, "case": label, "format": fmt_name, "quant": quant,
            "export_s": round(export_s, 2), "verify_s": round(verify_s, 2), "model_bytes": size,
            "kl_mean": f["kl_mean"], "kl_max": f["kl_max"], "max_abs_logit_diff": f["max_abs_logit_diff"],
            "top1_agreement": f["top1_agreement"], "greedy_match": f["greedy_match"],
            "greedy_match_kind": f.get("greedy_match_kind"), "greedy_free_match": f.get("greedy_free_match"),
            "greedy_prefix_match": f["greedy_prefix_match"], "stream_consistency": f.get("stream_consistency"),
            "tokenizer_mismatches": f["tokenizer_mismatches"],
            "tokenizer_mismatch_examples": f.get("tokenizer_mismatch_examples", []),
            "passes_thresholds": verdict.passed, "failures": verdict.failures,
        }
        rows.append(row)
        print(f"{model_name:14s} {label:36s} {export_s:6.1f}s {size / 2**20:8.2f} MiB  KL {f['kl_mean']:.2e} "
              f"(max {f['kl_max']:.2e})  |dlogit| {f['max_abs_logit_diff']:.3g}  top1 {f['top1_agreement']:.3f}  "
              f"greedy {f['greedy_match']:.3f} (free {f.get('greedy_free_match', 0):.3f})  "
              f"stream {f.get('stream_consistency') or 0:.2f}  tok-mismatch {f['tokenizer_mismatches']}  "
              f"{'PASS' if verdict.passed else 'FAIL'}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    return rows


def render_markdown(result: dict) -> str:
    """The table docs/export-onnx.md shows; pass/fail re-judged with the thresholds registered now."""
    head = ("| model | format:quant | export s | MiB | KL mean | KL max | max abs dlogit | top-1 | greedy (tf) | "
            "greedy (free) | stream | tokenizer | passes |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['case']} | error: {r['error']} |" + " |" * 10)
            continue
        fig = {"kl_mean": r["kl_mean"], "greedy_match": r["greedy_match"], "stream_consistency": r.get("stream_consistency"),
               "max_abs_logit_diff": r["max_abs_logit_diff"], "tokenizer_mismatches": r["tokenizer_mismatches"],
               "tokenizer_checked": 30,
               "tokenizer_mismatch_examples": r.get("tokenizer_mismatch_examples") or [{"text": "?", "expected": [], "got": []}]}
        ok = judge(fig, FORMATS.get(r["format"]).quants[r["quant"]]).passed
        lines.append(
            f"| {r['model']} | {r['case']} | {r['export_s']:.1f} | {r['model_bytes'] / 2**20:.2f} | {r['kl_mean']:.2e} | "
            f"{r['kl_max']:.2e} | {r['max_abs_logit_diff']:.3g} | {r['top1_agreement']:.3f} | {r['greedy_match']:.3f} | "
            f"{(r.get('greedy_free_match') or 0):.3f} | {(r.get('stream_consistency') or 0):.2f} | "
            f"{30 - r['tokenizer_mismatches']}/30 | {'yes' if ok else 'NO'} |")
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-large", action="store_true", help="only the tiny models")
    ap.add_argument("--archs", default=",".join(sorted(ARCHITECTURES)), help="tiny architectures to measure")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--model", type=Path, action="append", default=[],
                    help="also measure this Hugging Face model directory (e.g. a real checkpoint); repeatable")
    ap.add_argument("--cases", help="comma-separated case labels to run (default: all), e.g. onnx:int4,ort-genai:int4")
    ap.add_argument("--render", type=Path, help="only print the markdown table of an earlier result JSON")
    args = ap.parse_args()
    if args.render:
        print(render_markdown(json.loads(args.render.read_text())))
        return 0
    tok = build_tokenizer()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="onnx-figures-") as tmp:
        work = Path(tmp)
        only = set(args.cases.split(",")) if args.cases else None
        for arch in [a for a in args.archs.split(",") if a]:
            model_dir = build_tiny_model(arch, work / f"tiny-{arch}", tokenizer=tok)
            rows += measure(f"tiny-{arch}", model_dir, work, args.threads, only)
        if not args.skip_large:
            model_dir = build_tiny_model("llama", work / "llama-112m", tokenizer=tok, **LARGE)
            rows += measure("llama-112m", model_dir, work, args.threads, only)
        for extra in args.model:
            rows += measure(extra.name, extra, work, args.threads, only)
    result = {
        "what": "export verification figures per format:quant (edgedistill.export.verify, 6 prompts, 16 greedy tokens)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "thresholds": {f"{n}:{q}": {"max_kl": s.max_kl, "min_greedy_match": s.min_greedy_match,
                                    "max_abs_logit_diff": s.max_abs_logit_diff}
                       for n in ("onnx", "ort-genai") for q, s in FORMATS.get(n).quants.items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(render_markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
