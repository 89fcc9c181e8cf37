"""GGUF teacher: cost of recording top-k log-probabilities, ours vs llama-cpp-python's own.

Three ways to generate the same greedy answers from a .gguf teacher, interleaved in one process:

- ``none``: no log-probabilities (the floor);
- ``edgedistill``: GGUFTeacher with --logprobs K (a logits processor doing a numpy top-k per step);
- ``llama_cpp_logprobs`` (baseline): llama-cpp-python's ``logprobs=K`` (needs ``logits_all=True``).

Wall time and process CPU time are both recorded; on a shared machine compare the CPU times.
Prints and writes benchmarks/results/generate_gguf_logprobs.json.

    .venv/bin/python benchmarks/generate_gguf_logprobs.py [--model PATH] [--tokens 16] [--prompts 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

PROMPTS = ["What is the capital of France?", "Name three colours.", "Why is the sky blue?", "Count to five."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/work/gemma/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import llama_cpp

    from edgedistill.teachers import SamplingConfig, TeacherConfig, load_teacher
    from edgedistill.teachers.hf import render_plain

    prompts = PROMPTS[: args.prompts]
    convs = [[{"role": "user", "content": p}] for p in prompts]
    teacher = load_teacher(TeacherConfig(path=args.model, n_threads=args.threads, n_ctx=512))
    baseline = llama_cpp.Llama(model_path=args.model, n_ctx=512, n_threads=args.threads, logits_all=True,
                               verbose=False)
    greedy = dict(temperature=0.0, max_new_tokens=args.tokens)

    def run_none():
        return teacher.generate(convs, SamplingConfig(**greedy))

    def run_ours():
        return teacher.generate(convs, SamplingConfig(**greedy, top_logprobs=args.k))

    def run_baseline():
        return [baseline.create_completion(prompt=render_plain(c), max_tokens=args.tokens, temperature=0.0,
                                           logprobs=args.k) for c in convs]

    modes = {"none": run_none, "edgedistill": run_ours, "llama_cpp_logprobs": run_baseline}
    seconds = {m: [] for m in modes}
    cpu_seconds = {m: [] for m in modes}
    for _ in range(2):  # interleaved rounds so machine load affects every mode alike
        for name, fn in modes.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            seconds[name].append(time.perf_counter() - t)
            # CPU time of all this process's threads: robust when other jobs share the cores
            cpu_seconds[name].append(time.process_time() - c)
    n_tokens = args.tokens * len(prompts)
    results = {
        name: {
            "best_wall_s": round(min(s), 3),
            "best_cpu_s": round(min(cpu_seconds[name]), 3),
            "tokens_per_cpu_s": round(n_tokens / min(cpu_seconds[name]), 2),
        }
        for name, s in seconds.items()
    }
    record = {
        "benchmark": "generate_gguf_logprobs",
        "model": Path(args.model).name,
        "prompts": len(prompts),
        "max_new_tokens": args.tokens,
        "top_k": args.k,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.1f}",
        "results": results,
    }
    print(json.dumps(record, indent=2))
    out = Path(__file__).parent / "results" / "generate_gguf_logprobs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
