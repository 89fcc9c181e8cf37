"""`edgedistill generate` with a GGUF teacher: one prompt at a time vs N decoded together (``parallel``).

Runs the library's ``generate`` (the code path of the CLI and the recipe) on the first ``--limit``
prompts of ``--data`` with the quickstart's generate settings (task summarization, greedy, 32 new
tokens, n_ctx 512 per sequence, 2 threads), once per mode and round, alternating the modes
(A B C D, A B C D, ...) so that load changes on the shared machine hit every mode alike; the load
average is read before and after every run. Answers are compared with the sequential run of the
same round (text, finish reason): how many are identical.

    flock /work/cpu.lock .venv/bin/python benchmarks/generate_batched.py --teacher GEMMA.gguf \\
        --parallel 4 8 16 --rounds 2 --json benchmarks/results/generate_batched.json

Prints a Markdown table; ``--json`` writes every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def run_once(args, parallel: int, out: Path) -> dict:
    from edgedistill.atomic import read_jsonl_records
    from edgedistill.generate import GenerateConfig, generate
    from edgedistill.teachers import SamplingConfig, TeacherConfig

    before = loadavg()
    times_before = os.times()
    summary = generate(GenerateConfig(
        data=args.data, out=str(out), task="summarization", limit=args.limit, overwrite=True, progress=False,
        teacher=TeacherConfig(path=args.teacher, n_ctx=args.n_ctx, n_threads=args.threads, parallel=parallel),
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=args.max_new_tokens, seed=0),
    ))
    t = os.times()
    records = read_jsonl_records(out)
    out.unlink()
    return dict(parallel=parallel, seconds=summary.elapsed_s, load_before=before, load_after=loadavg(),
                cpu_s=(t.user - times_before.user) + (t.system - times_before.system),
                truncated=summary.truncated, errors=summary.errors,
                answers={r["id"]: (r["response"], r["finish_reason"]) for r in records})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True, help="the .gguf teacher")
    ap.add_argument("--data", default="examples/data/stdlib_summaries_train.jsonl")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--parallel", type=int, nargs="+", default=[4, 8, 16], help="batched modes (1 always runs)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()

    modes = [1] + [p for p in args.parallel if p != 1]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            base = None
            for p in modes:
                r = run_once(args, p, Path(tmp) / f"out-{p}.jsonl")
                if p == 1:
                    base = r["answers"]
                r["round"] = rnd
                r["identical"] = sum(base.get(k) == v for k, v in r["answers"].items())
                r["differing"] = sorted(k for k, v in r["answers"].items() if base.get(k) != v)
                runs.append(r)
                print(f"round {rnd} parallel {p:>2}: {r['seconds']:6.1f} s, {r['identical']}/{len(r['answers'])} "
                      f"identical to sequential, load {r['load_before']} -> {r['load_after']}", flush=True)
    seq = [r["seconds"] for r in runs if r["parallel"] == 1]
    print(f"\n| parallel | seconds per round | s / prompt | speed-up vs 1 | identical to sequential | load avg (before -> after) |")
    print("|---|---|---|---|---|---|")
    for p in modes:
        rs = [r for r in runs if r["parallel"] == p]
        secs = [r["seconds"] for r in rs]
        best = min(secs)
        print(f"| {p} | {', '.join(f'{s:.1f}' for s in secs)} | {best / args.limit:.3f} | {min(seq) / best:.2f}x | "
              f"{', '.join(str(r['identical']) for r in rs)} of {args.limit} | "
              f"{'; '.join(r['load_before'] + ' -> ' + r['load_after'] for r in rs)} |")
    if args.json:
        for r in runs:
            r.pop("answers")
        meta = dict(args=vars(args), machine=platform.platform(), cpus=os.cpu_count())
        Path(args.json).write_text(json.dumps(dict(meta=meta, runs=runs), indent=1) + "\n")


if __name__ == "__main__":
    main()
