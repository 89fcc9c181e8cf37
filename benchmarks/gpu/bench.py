"""Part 3 of the GPU check: distillation throughput, peak memory and MFU beside TRL's GKDTrainer.

For each model pair (benchmarks/gpu/shapes.py) and sequence length, on the same random-initialised
models, the same batches and the same precision (fp32 weights, bf16 autocast on CUDA; fp32 on CPU):

    ours   one process: edgedistill forward_kl with the teacher in memory, then the top-k cache first
           pass (k=64, teacher only), then forward_kl from that cache (student only)
    trl    one process: TRL GKDTrainer, lmbda=0 (off-policy), beta=0 (forward KL), no generation

The two processes alternate (ours, trl; then, while time is left, trl, ours), so a slow period of
the machine does not fall on one side only. Peak memory is torch.cuda.max_memory_allocated per
configuration (reset in between); on a CPU run, the process's peak RSS. The runners themselves are
benchmarks/distill_bench.py's (the CPU comparison), so both benchmarks measure the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import shapes  # noqa: E402  (benchmarks/gpu/shapes.py; stdlib only)
from boxed import run_boxed  # noqa: E402

TOPK = 64


def plan(gpu: bool) -> dict:
    """What to measure: realistic sizes on a GPU, tiny ones on the CPU (the same code paths)."""
    if gpu:
        return {"pairs": shapes.PAIRS, "cells": [("qwen2.5-1.5b->0.5b", 2048, 4), ("gemma3-1b->270m", 2048, 4),
                                                 ("qwen2.5-1.5b->0.5b", 1024, 8), ("gemma3-1b->270m", 1024, 8)],
                "warmup": 2, "measured": 3, "rounds": 2, "cells_per_child": 1}
    return {"pairs": shapes.TINY_PAIRS, "cells": [("tiny-qwen2", 64, 2), ("tiny-gemma3", 64, 2)],
            "warmup": 1, "measured": 2, "rounds": 1, "cells_per_child": 2}  # fewer process starts


# --- children (run in their own processes) --------------------------------------------------------------


def prepare(spec: dict) -> dict:
    return {"results": [prepare_pair(item) for item in spec["items"]]}


def prepare_pair(spec: dict) -> dict:
    """Random-initialised teacher and student from the configs, a word tokenizer of the full vocabulary,
    and data whose examples fill ``seq`` tokens (one token per word)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from distill_bench import bpe_word_tokenizer, letter_words, word_tokenizer, write_word_data

    root = Path(spec["root"])
    teacher_cfg, student_cfg = spec["teacher"], spec["student"]
    vocab = teacher_cfg["vocab_size"]
    qwen2 = teacher_cfg["model_type"] == "qwen2"  # transformers 5 reloads these as Qwen2Tokenizer (BPE)
    if not (root / "student" / "config.json").exists():
        tok = bpe_word_tokenizer(vocab) if qwen2 else word_tokenizer(vocab)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        for name, cfg, seed in (("teacher", teacher_cfg, 1), ("student", student_cfg, 0)):
            kw = dict(cfg)
            config = AutoConfig.for_model(kw.pop("model_type"), **kw, bos_token_id=tok.bos_token_id,
                                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            torch.manual_seed(seed)
            with torch.device(device):  # initialising 1.5B parameters on the CPU alone takes minutes
                model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
            model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                       pad_token_id=tok.pad_token_id)
            model.save_pretrained(root / name, safe_serialization=True)  # bf16 on disk, loaded as fp32
            tok.save_pretrained(root / name)
            del model
    data = {}
    for seq, n in spec["data"]:
        path = root / f"data-{seq}.jsonl"
        # chat template + BOS/EOS add 6 tokens; the rest is prompt (1/8) and response words
        prompt = max(4, seq // 8)
        write_word_data(path, vocab, n, prompt, seq - prompt - 8, words=letter_words(vocab) if qwen2 else None)
        data[str(seq)] = str(path)
    return {"student": str(root / "student"), "teacher": str(root / "teacher"), "data": data}


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_ours(spec: dict) -> dict:
    return {"results": [ours_one(spec, c) for c in spec["items"]]}


def ours_one(spec: dict, c: dict) -> dict:
    """forward_kl with the teacher in memory, the top-k first pass, forward_kl from the cache."""
    import distill_bench as db
    from edgedistill.distill.data import load_examples, tokenize_examples
    from edgedistill.models import load_tokenizer

    tok = load_tokenizer(c["student"])
    ex = tokenize_examples(tok, load_examples(c["data"]).examples, c["max_length"]).examples
    shape = {"seq_tokens": len(ex[0].input_ids), "response_tokens": ex[0].n_response}
    out = {"shape": shape}
    work = Path(c["work"])
    _free_cuda()
    out["forward_kl"] = db.run_edgedistill({**spec, "config": {k: v for k, v in c.items() if k != "work"}
                                            | {"teacher": c["teacher"], "out": str(work / "o-fkl")}})
    _free_cuda()
    cache = work / "topk-cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first pass must really run (a rerun would reuse it)
    out["topk_first_pass"] = db.build_cache({"config": {**c, "teacher_topk": TOPK, "topk_cache_dir": str(cache)}})
    _free_cuda()
    topk_cfg = {k: v for k, v in c.items() if k not in ("work", "teacher")}
    out["forward_kl_topk"] = db.run_edgedistill({**spec, "config": {**topk_cfg, "teacher_topk": TOPK,
                                                                    "topk_cache_dir": str(cache),
                                                                    "out": str(work / "o-topk")}})
    return out


def run_trl(spec: dict) -> dict:
    import distill_bench as db

    results = []
    for c in spec["items"]:
        _free_cuda()
        results.append({"trl_gkd": db.run_trl_gkd({**spec, "config": {k: v for k, v in c.items() if k != "work"}
                                                   | {"out": str(Path(c["work"]) / "o-trl"), "cpu": c["cpu"]}})})
    return {"results": results}


RUNNERS = {"prepare": prepare, "ours": run_ours, "trl": run_trl}


def child(spec_file: str) -> None:
    import torch

    spec = json.loads(Path(spec_file).read_text())
    torch.manual_seed(0)
    print("RESULT " + json.dumps(RUNNERS[spec["runner"]](spec)), flush=True)


def in_child(spec: dict, work: Path, timeout: float) -> dict:
    """Run one child; its result, or {'error': ...} when it fails or outlives ``timeout``."""
    work.mkdir(parents=True, exist_ok=True)
    spec_file = work / f"{spec['runner']}-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(spec))
    t0 = time.perf_counter()
    try:
        proc = run_boxed([sys.executable, __file__, "--child", str(spec_file)], timeout,
                         env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired:
        return {"error": f"time box: stopped after {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
        return {"error": tail, "stderr_tail": proc.stderr[-3000:], "wall_s": time.perf_counter() - t0}
    return {**json.loads(lines[-1][len("RESULT "):]), "wall_s": time.perf_counter() - t0}


# --- the part ---------------------------------------------------------------------------------------------


def _with_mfu(result: dict, flops_per_token: float, peak: float | None) -> dict:
    if "tokens_per_s" in result and peak:
        result["model_tflops"] = result["tokens_per_s"] * flops_per_token / 1e12
        result["mfu"] = result["model_tflops"] * 1e12 / peak
    return result


def add_flops(cell: dict, teacher: dict, student: dict, peak: float | None) -> None:
    """Model FLOPs per token of each configuration, from the tokenized shape the child reported."""
    shape = cell.get("shape")
    if not shape:
        return
    seq, resp = shape["seq_tokens"], shape["response_tokens"]
    per_token = {  # what each configuration computes per token (the top-k run has no teacher pass)
        "forward_kl": shapes.step_model_flops(student, teacher, seq, 1, resp) / seq,
        "trl_gkd": shapes.step_model_flops(student, teacher, seq, 1, resp) / seq,
        "forward_kl_topk": shapes.step_model_flops(student, None, seq, 1, resp) / seq,
        "topk_first_pass": shapes.forward_flops(teacher, seq, 1, resp) / seq,
    }
    cell["flops_per_token"] = per_token
    for sample in cell["samples"]:
        for name, r in sample.items():
            if name in per_token and isinstance(r, dict):
                _with_mfu(r, per_token[name], peak)


def _groups(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _child_results(res: dict, n: int) -> list[dict]:
    """A child's per-item results, or its error once per item."""
    if "error" in res:
        return [{"error": res["error"], "stderr_tail": res.get("stderr_tail", "")[-1500:]}] * n
    return [{**r, "child_wall_s": round(res["wall_s"], 1)} for r in res["results"]]


def run(work: Path, gpu: bool, deadline: float, report: dict, save) -> None:
    """Fill ``report['cells']`` cell by cell (``save()`` after each child), stopping at ``deadline``."""
    p = plan(gpu)
    steps = p["warmup"] + p["measured"]
    peak = shapes.H200_BF16_PEAK if gpu else None
    report.update(warmup_steps=p["warmup"], measured_steps=p["measured"], peak_flops=peak, cells=[], prepare={})
    pairs = list(dict.fromkeys(name for name, _, _ in p["cells"]))
    items = [{"root": str(work / pair), "teacher": p["pairs"][pair][0], "student": p["pairs"][pair][1],
              "data": sorted({(seq, batch * steps) for name, seq, batch in p["cells"] if name == pair})}
             for pair in pairs]
    prepared = {}
    for group in _groups(list(zip(pairs, items)), p["cells_per_child"]):
        res = in_child({"runner": "prepare", "items": [it for _, it in group]}, work, deadline - time.time())
        for (pair, _), r in zip(group, _child_results(res, len(group))):
            prepared[pair] = report["prepare"][pair] = r
        save()
    cells = []
    for pair, seq, batch in p["cells"]:
        cell = {"pair": pair, "seq": seq, "batch": batch, "samples": []}
        report["cells"].append(cell)
        if "error" in prepared[pair]:
            cell["error"] = "models not prepared: " + prepared[pair]["error"]
            continue
        cell["config"] = {"student": prepared[pair]["student"], "teacher": prepared[pair]["teacher"],
                          "data": prepared[pair]["data"][str(seq)], "batch_size": batch, "max_steps": steps,
                          "max_length": seq, "learning_rate": 2e-5, "alpha": 1.0, "loss": "forward_kl", "seed": 0,
                          "mixed_precision": "bf16" if gpu else "no", "cpu": not gpu,
                          "work": str(work / pair / f"run-{seq}")}
        cells.append(cell)
    # round 1: ours then TRL; round 2 (GPU, time permitting): TRL then ours
    for order in (("ours", "trl"), ("trl", "ours"))[:p["rounds"]]:
        for group in _groups(cells, p["cells_per_child"]):
            samples = [{"order": list(order)} for _ in group]
            for runner in order:
                if deadline - time.time() < 20:
                    for sample in samples:
                        sample[runner] = {"error": "not run: the part's time box was spent"}
                    continue
                res = in_child({"runner": runner, "items": [c["config"] for c in group], "warmup": p["warmup"]},
                               work, deadline - time.time())
                for cell, sample, r in zip(group, samples, _child_results(res, len(group))):
                    if "shape" in r:
                        cell["shape"] = r.pop("shape")
                    sample[f"{runner}_child_wall_s"] = r.pop("child_wall_s", None)
                    sample.update(r if "error" not in r else {runner: r})
            for cell, sample in zip(group, samples):
                measured = any(isinstance(v, dict) and "tokens_per_s" in v for v in sample.values())
                if measured or not cell["samples"]:  # an unmeasured round is kept only to show its errors
                    cell["samples"].append(sample)
                add_flops(cell, *p["pairs"][cell["pair"]], peak)
            save()
    summarise(report)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(report: dict) -> None:
    """Per cell: mean tokens/s and max peak memory of each configuration over the samples, and the
    ratios to TRL that the issue's goals name (>= 1.2x tokens/s, <= 0.8x peak memory)."""
    for cell in report.get("cells", []):
        agg = {}
        for name in ("forward_kl", "topk_first_pass", "forward_kl_topk", "trl_gkd"):
            runs = [s[name] for s in cell.get("samples", []) if isinstance(s.get(name), dict)
                    and "tokens_per_s" in s[name]]
            if not runs:
                continue
            mem = [r.get("peak_cuda_mb") or r.get("peak_rss_mb") for r in runs]
            agg[name] = {"tokens_per_s": _mean([r["tokens_per_s"] for r in runs]), "n": len(runs),
                         "peak_mb": max(m for m in mem if m is not None),
                         "peak_kind": "cuda max_memory_allocated" if runs[0].get("peak_cuda_mb") else "process VmHWM",
                         "mfu": _mean([r["mfu"] for r in runs if "mfu" in r])}
        cell["summary"] = agg
        trl = agg.get("trl_gkd")
        for name in ("forward_kl", "forward_kl_topk"):
            if trl and name in agg:
                agg[name]["speed_vs_trl"] = agg[name]["tokens_per_s"] / trl["tokens_per_s"]
                agg[name]["memory_vs_trl"] = agg[name]["peak_mb"] / trl["peak_mb"]


def markdown(report: dict) -> list[str]:
    lines = ["| pair | seq x batch | configuration | tokens/s | peak memory (MiB) | MFU | vs TRL: speed / memory | runs |",
             "|---|---|---|---:|---:|---:|---|---:|"]
    for cell in report.get("cells", []):
        head = f"| {cell['pair']} | {cell['seq']} x {cell['batch']} "
        if cell.get("error") or not cell.get("summary"):
            errors = {k: v.get("error") for s in cell.get("samples", []) for k, v in s.items() if isinstance(v, dict)}
            lines.append(head + f"| (no result: {cell.get('error') or errors or 'not run'}) | | | | | |")
            continue
        for name, a in cell["summary"].items():
            mfu = "" if a.get("mfu") is None else f"{100 * a['mfu']:.1f}%"
            vs = (f"{a['speed_vs_trl']:.2f}x / {a['memory_vs_trl']:.2f}x" if "speed_vs_trl" in a else "")
            lines.append(head + f"| {name} | {a['tokens_per_s']:.0f} | {a['peak_mb']:.0f} | {mfu} | {vs} | {a['n']} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.exit("run benchmarks/gpu/run_check.py; this module is its part 3")
