"""Export benchmark: wall time, peak memory, artifact size and verification figures per format and
quantization, beside `optimum-cli export onnx` on the same model in the same run.

    .venv/bin/python benchmarks/export_bench.py                  # ~100M-parameter llama (default)
    .venv/bin/python benchmarks/export_bench.py --small          # quick smoke run on a 2-layer model
    .venv/bin/python benchmarks/export_bench.py --cases onnx:fp32,gguf:q4_k_m

Every export runs in its own subprocess (`edgedistill export ... --json`, verification included)
started by a fresh wrapper interpreter, so the wrapper's RUSAGE_CHILDREN ru_maxrss is the peak RSS of
that one export alone. Results go to benchmarks/results/export_bench.{json,md}.

Targets checked (printed, recorded, never asserted):
- our ONNX fp32 export, verification included, within 1.5x of optimum-cli's time;
- GGUF q4_k_m at most 35% of the f16 file size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent
DEFAULT_CASES = ("onnx:fp32", "onnx:fp16", "onnx:int8", "onnx:int4", "ort-genai:int4",
                 "gguf:f16", "gguf:q8_0", "gguf:q6_k", "gguf:q4_k_m", "gguf:q4_0")

# Runs the command given as argv, then prints the peak RSS (KiB) of its process tree as JSON.
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter(); rc = subprocess.call(sys.argv[1:]); wall = time.perf_counter() - t\n"
    "print(json.dumps({'rc': rc, 'wall_s': wall, "
    "'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}), file=sys.stderr)\n"
)


def measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` under the wrapper; stdout to ``log``; returns rc, wall_s, peak_rss_mb."""
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], stdout=out, stderr=subprocess.PIPE, text=True)
    last = proc.stderr.strip().splitlines()[-1]
    stats = json.loads(last)
    (log.with_suffix(".stderr")).write_text(proc.stderr)
    return stats


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_model(work: Path, small: bool) -> Path:
    from edgedistill.testing.tiny import build_tiny_model

    model = work / "student"
    if small:
        build_tiny_model("llama", model, hidden_size=256, num_layers=2, num_heads=4)
    else:
        build_tiny_model("llama", model, hidden_size=768, num_layers=12, num_heads=12, vocab_size=32000)
    return model


def run(cases: list[str], small: bool, work: Path, threads: int | None, save=lambda res: None) -> dict:
    from edgedistill.export.source import inspect_source

    model = build_model(work, small)
    params = inspect_source(model).param_count
    print(f"model: llama, {params / 1e6:.1f}M parameters, at {model}", flush=True)
    rows = []
    res = {
        "model": {"arch": "llama", "params": params, "small": small,
                  "shape": "hidden 256, 2 layers" if small else "hidden 768, 12 layers, 12 heads, vocab 32000"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "complete": False,
        "rows": rows,
        "checks": {},
    }

    # baseline: optimum-cli (fp32 ONNX with KV cache; it also runs its own validation)
    out = work / "optimum"
    cmd = [str(VENV_BIN / "optimum-cli"), "export", "onnx", "--model", str(model), "--task",
           "text-generation-with-past", str(out)]
    print("optimum-cli export onnx ...", flush=True)
    stats = measured(cmd, work / "optimum.log")
    rows.append({"case": "optimum-cli onnx (fp32)", "tool": "optimum-cli", **stats,
                 "size_mb": dir_bytes(out) / 2**20 if out.exists() else None})
    print(f"  {stats}", flush=True)
    _finish(res)
    save(res)

    for case in cases:
        out = work / "artifacts"
        cmd = [str(VENV_BIN / "edgedistill"), "export", str(model), "--artifact", case, "--out", str(out),
               "--name", "bench", "--overwrite", "--json"]
        if threads:
            cmd += ["--threads", str(threads)]
        print(f"edgedistill export --artifact {case} ...", flush=True)
        log = work / f"{case.replace(':', '-')}.log"
        stats = measured(cmd, log)
        row = {"case": f"edgedistill {case}", "tool": "edgedistill", **stats}
        text = log.read_text()
        try:
            result = json.loads(text[text.index("{"):])
            art = result["artifacts"][0]
            row.update(
                size_mb=art["size_bytes"] / 2**20,
                export_s=art["export_seconds"],
                verify_s=art["verify_seconds"],
                reference_s=(result.get("timings") or {}).get("reference_s"),
                in_process_s=(result.get("timings") or {}).get("total_s"),
                passed=art["passed"],
                failures=art["verification"]["failures"] if art["verification"] else None,
                figures={k: art["verification"]["figures"].get(k) for k in (
                    "kl_mean", "kl_max", "max_abs_logit_diff", "top1_agreement", "greedy_match",
                    "greedy_prefix_match", "stream_consistency", "tokenizer_mismatches")},
            )
        except (ValueError, KeyError, TypeError):
            row["error"] = (log.with_suffix(".stderr").read_text()[-2000:])
        rows.append(row)
        print(f"  wall {row['wall_s']:.1f} s, peak {row['peak_rss_mb']:.0f} MB, "
              f"size {row.get('size_mb', float('nan')):.1f} MB, passed={row.get('passed')}", flush=True)
        _finish(res)
        save(res)
    res["complete"] = True
    return res


def _finish(res: dict) -> None:
    """(Re)compute the target checks and the load figure from the rows so far."""
    rows = res["rows"]

    by = {r["case"]: r for r in rows}
    checks = {}
    opt, ours = by.get("optimum-cli onnx (fp32)"), by.get("edgedistill onnx:fp32")
    if opt and ours and opt["rc"] == 0 and ours["rc"] in (0, 3):
        ratio = ours["wall_s"] / opt["wall_s"]
        checks["onnx_fp32_time_vs_optimum"] = {"ratio": ratio, "target": "<= 1.5", "met": ratio <= 1.5}
    f16, q4 = by.get("edgedistill gguf:f16"), by.get("edgedistill gguf:q4_k_m")
    if f16 and q4 and f16.get("size_mb") and q4.get("size_mb"):
        ratio = q4["size_mb"] / f16["size_mb"]
        checks["gguf_q4_k_m_size_vs_f16"] = {"ratio": ratio, "target": "<= 0.35", "met": ratio <= 0.35}
    res["checks"] = checks
    res["machine"]["load_avg_at_end"] = os.getloadavg()


def to_markdown(res: dict) -> str:
    m = res["model"]
    lines = [
        "# Export benchmark",
        "",
        f"Model: tiny random llama, {m['params'] / 1e6:.1f}M parameters ({m['shape']}). "
        f"Machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in res['machine']['load_avg_at_end'])} (other jobs shared the CPU). "
        f"Run {res['created_utc']}." + ("" if res.get("complete", True) else " **Incomplete run** (interrupted): "
                                         "only the cases below were measured."),
        "",
        "Wall time and peak RSS are of the whole export subprocess; for edgedistill that includes loading the "
        "PyTorch reference and verifying the artifact in its runtime (export / verify columns split it).",
        "",
        "| case | wall s | export s | verify s | torch ref s | peak RSS MB | size MB | KL mean | max abs dlogit | "
        "greedy (tf) | stream | passed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        f = r.get("figures") or {}

        def num(v, fmt):
            return "-" if v is None else format(v, fmt)

        lines.append(
            f"| {r['case']} | {r['wall_s']:.1f} | {num(r.get('export_s'), '.1f')} | {num(r.get('verify_s'), '.1f')} | "
            f"{num(r.get('reference_s'), '.1f')} | "
            f"{r['peak_rss_mb']:.0f} | {num(r.get('size_mb'), '.1f')} | {num(f.get('kl_mean'), '.2e')} | "
            f"{num(f.get('max_abs_logit_diff'), '.3g')} | {num(f.get('greedy_match'), '.0%')} | "
            f"{num(f.get('stream_consistency'), '.0%')} | "
            f"{'-' if r['tool'] != 'edgedistill' else ('yes' if r.get('passed') else 'NO')} |"
        )
    lines += ["", "## Targets", ""]
    for name, c in res["checks"].items():
        lines.append(f"- {name}: {c['ratio']:.2f} (target {c['target']}): {'met' if c['met'] else 'NOT met'}")
    failed = [r for r in res["rows"] if r["tool"] == "edgedistill" and not r.get("passed")]
    if failed:
        lines += ["", "## Failed verifications", ""]
        for r in failed:
            lines.append(f"- {r['case']}: {'; '.join(r.get('failures') or [r.get('error', '?')[-300:]])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated format:quant list")
    ap.add_argument("--small", action="store_true", help="2-layer width-256 model (smoke test)")
    ap.add_argument("--threads", type=int, help="threads for verification")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--out", default=str(RESULTS / "export_bench"), help="results path without suffix")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the existing .json")
    args = ap.parse_args()
    if args.markdown_only:
        out = Path(args.out)
        out.with_suffix(".md").write_text(to_markdown(json.loads(out.with_suffix(".json").read_text())))
        return
    work = Path(tempfile.mkdtemp(prefix="export-bench-"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(res: dict) -> None:  # after every case, so an interrupted run keeps what it measured
        out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        out.with_suffix(".md").write_text(to_markdown(res))

    try:
        res = run([c.strip() for c in args.cases.split(",") if c.strip()], args.small, work, args.threads, save)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    save(res)
    print(to_markdown(res))


if __name__ == "__main__":
    main()
