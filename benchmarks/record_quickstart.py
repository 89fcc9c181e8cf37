"""Write benchmarks/quickstart.md from finished quickstart runs (their state.json and comparison table).

    .venv/bin/python benchmarks/record_quickstart.py runs/quickstart-quick runs/quickstart

For each run directory: wall time of every stage (from state.json), the total, the machine, and the
comparison table (report/comparison.md) as the run printed it. Figures are recorded as measured; add the
load the machine was under with --note.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

import psutil


def section(run_dir: Path) -> str:
    state = json.loads((run_dir / "state.json").read_text())
    lines = [f"## `{run_dir}` ({'--quick' if state.get('quick') else 'full run'})", ""]
    lines += ["| stage | status | wall time |", "|---|---|---|"]
    total = 0.0
    for stage, info in state["stages"].items():
        secs = info.get("seconds")
        total += secs or 0.0
        lines.append(f"| {stage} | {info.get('status')} | {'' if secs is None else f'{secs / 60:.1f} min ({secs:.0f} s)'} |")
    lines.append(f"| **all stages** | | **{total / 60:.1f} min ({total:.0f} s)** |")
    lines.append("")
    lines.append("Stage times add up the last successful run of each stage; the one-off GGUF assembly and import "
                 "into the cache (first use of the teacher) are not included.")
    table = run_dir / "report" / "comparison.md"
    if table.exists():
        lines += ["", table.read_text().replace("## Comparison", "### Comparison")]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--note", default="", help="conditions of the measurement (load, other jobs)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("quickstart.md"))
    args = ap.parse_args()
    head = [
        "# Quickstart: recorded runs",
        "",
        f"Recorded {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with `benchmarks/record_quickstart.py` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}.",
    ]
    if args.note:
        head += ["", f"**Conditions:** {args.note}"]
    body = [section(r) for r in args.runs if (r / "state.json").exists()]
    text = "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
