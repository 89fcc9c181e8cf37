"""A small student trained in a few CPU minutes, for first quantization-quality figures (issue #13).

Not the quickstart student (a 6-block Gemma 3 prune, ~200M parameters, whose run needs the teacher and
~30 idle-machine minutes): a 2-layer, width-256 llama with a 2048-token BPE vocabulary trained here on
the training records, trained with `edgedistill distill --loss sft` on the reference summaries of
examples/data/stdlib_summaries_train.jsonl (teacher-free sequence-level training). Width 256 so that
llama.cpp's K-quants apply (rows must be multiples of 256). Also trains the same student with
``--qat gguf:q4_k_m`` (last quarter of the steps fake-quantized), same seed and data.

    .venv/bin/python benchmarks/tiny_task_student.py --out /tmp/tiny-student [--epochs 2]

Writes OUT/base (initial model), OUT/train.jsonl, OUT/float and OUT/qat (distilled students).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.distill import DistillConfig, distill  # noqa: E402
from edgedistill.testing.tiny import build_tiny_model, build_tokenizer  # noqa: E402

DATA = Path(__file__).parent.parent / "examples" / "data" / "stdlib_summaries_train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--qat", default="gguf:q4_k_m")
    ap.add_argument("--only", choices=["float", "qat"], help="train one of the two (e.g. in parallel processes)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    train = out / "train.jsonl"
    train.write_text("".join(json.dumps({"id": r["id"], "messages": r["messages"], "response": r["reference"]}) + "\n"
                             for r in rows))
    texts = [r["messages"][-1]["content"] + "\n" + r["reference"] for r in rows]
    tok = build_tokenizer(vocab_size=2048, extra_corpus=texts)
    base = build_tiny_model("llama", out / "base", tokenizer=tok, hidden_size=256, num_layers=2, num_heads=4)
    common = dict(student=str(base), data=str(train), loss="sft", learning_rate=1e-3, batch_size=4,
                  epochs=args.epochs, max_length=320, warmup_ratio=0.05, seed=0, cpu=True)
    for name, extra in (("float", {}), ("qat", {"qat": args.qat})):
        if args.only and name != args.only:
            continue
        t0 = time.perf_counter()
        s = distill(DistillConfig(out=str(out / name), **common, **extra))
        print(f"{name}: {s.steps} steps, final loss {s.final_train_loss:.3f}, {time.perf_counter() - t0:.0f} s, "
              f"load avg {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
