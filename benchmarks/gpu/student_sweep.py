#!/usr/bin/env python3
"""Which distillation budget the quickstart's pruned student needs: distil it from the quickstart's own
top-k cache (no teacher needed) under several settings and score each float student on the held-out
records, beside the teacher's outputs from the quickstart's eval. Made to run in a few minutes on a lent
GPU; runs on CPU too (tiny with --max-steps). Writes sweep.json to --out after every setting.

    python benchmarks/gpu/student_sweep.py --student S --data D --cache C --test T --teacher-eval E \
        --out OUT --settings "epochs=3,learning_rate=5e-4" "epochs=8,learning_rate=5e-4"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))


def parse(text: str) -> dict:
    out = {}
    for part in text.split(","):
        k, v = part.split("=")
        out[k.strip()] = float(v) if any(c in v for c in ".e") else int(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    for a in ("--student", "--data", "--cache", "--test", "--teacher-eval", "--out"):
        ap.add_argument(a, required=True)
    ap.add_argument("--settings", nargs="+", required=True)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--records", type=int)
    args = ap.parse_args()
    import torch

    from edgedistill.distill import DistillConfig, distill
    from edgedistill.eval import EvalConfig, evaluate
    from edgedistill.eval import metrics as M

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = json.loads(Path(args.teacher_eval).read_text())["records"][: args.records]
    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "teacher_rouge_l": M.rouge_l([r["output"] for r in teacher], [r["reference"] for r in teacher]),
               "runs": []}
    for i, text in enumerate(args.settings):
        s = {"loss": "forward_kl", "alpha": 0.8, "temperature": 1.0, "learning_rate": 5e-4, "warmup_ratio": 0.05,
             "batch_size": 4, "epochs": 3, "max_length": 160, "seed": 0, **parse(text)}
        work = out / f"run{i}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(args.cache, work / "cache")
        t0 = time.time()
        summary = distill(DistillConfig(student=args.student, data=args.data, out=str(work / "student"),
                                        teacher_topk=64, topk_cache_dir=str(work / "cache"), save_every=0,
                                        max_steps=args.max_steps, **s))
        t1 = time.time()
        rep = evaluate(EvalConfig(models=[str(work / "student")], names=["s"], data=args.test, task="summarization",
                                  max_records=args.records, max_new_tokens=32, perplexity=False, batch_size=32,
                                  out=str(work / "eval")))
        outs = json.loads((work / "eval" / "models" / "s.json").read_text())["records"]
        t_by = {r["id"]: r["output"] for r in teacher}
        rouge = rep.rows[0]["scores"]["rouge_l"]
        results["runs"].append({"settings": s, "steps": summary.steps, "final_train_loss": summary.final_train_loss,
                                "distill_s": round(t1 - t0, 1), "eval_s": round(time.time() - t1, 1),
                                "rouge_l": rouge, "retention": rouge / results["teacher_rouge_l"],
                                "rouge_l_vs_teacher": M.rouge_l([o["output"] for o in outs],
                                                                [t_by[o["id"]] for o in outs])})
        print(json.dumps(results["runs"][-1]), flush=True)
        shutil.rmtree(work / "student", ignore_errors=True)
        shutil.rmtree(work / "cache", ignore_errors=True)
        (out / "sweep.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
