"""Predicted peak memory (`edgedistill plan`) vs the peak resident memory host-emulated runs measure.

    python benchmarks/memory_predict_check.py build   --work /tmp/memcheck  # export the artifacts (once)
    python benchmarks/memory_predict_check.py measure --work /tmp/memcheck  # bench them (raw peaks, json)
    python benchmarks/memory_predict_check.py report  [--fit]               # predicted vs measured (and a fit)

Artifacts, every format the predictor covers (gguf, onnx, ort-genai):
- "fit": random-weight models built here (edgedistill.testing.tiny): a llama with 512 positions, a llama
  and a Gemma 3 with 32,768 (so the RoPE tables ONNX graphs compute at load are large), exported to
  gguf:q4_k_m, onnx:int4 and ort-genai:int4 (the first also to gguf:f16). ``report --fit`` fits RUNTIME_MEMORY
  (edgedistill/bench/memory.py) on these runs only (least squares per runtime);
- "check": the quickstart's distilled student (a 6-layer Gemma 3, vocabulary 5593), copied from
  /work/main/runs/quickstart (its gguf:q4_k_m and onnx:int4 as the quickstart made them; gguf:f16 and
  ort-genai:int4 exported here), and a larger random llama (8 layers, hidden 512): never used to fit.

Each run is `edgedistill bench` on the host target (2 threads, no memory budget enforced), prompts 64
and 384 tokens, 32 decoded; its `peak_rss_mb` is VmHWM of the runner process (Python, the runtime
library, weights, KV cache, buffers). The prediction is `plan` for the same file at the context the
runtime allocates (llama.cpp: n_ctx 2048 or the model's trained context if shorter; onnxruntime: prompt
+ generated tokens; onnxruntime-genai: its max_length, never below the sliding window). Goal (issue 14):
within 10 %. Results: benchmarks/results/memory_predict_check.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgedistill.atomic import atomic_write_text  # noqa: E402

QUICKSTART = Path("/work/main/runs/quickstart")
# name -> (role, architecture, build_tiny_model arguments, max_position_embeddings written into config.json)
TINY = {"llama-h256-l4-v32000": ("fit", "llama", dict(hidden_size=256, num_layers=4, num_heads=4, vocab_size=32000), None),
        "llama-h256-l4-p32k": ("fit", "llama", dict(hidden_size=256, num_layers=4, num_heads=2, vocab_size=16384), 32768),
        "gemma3-h256-l4-p32k": ("fit", "gemma3", dict(hidden_size=256, num_layers=4, num_heads=2, vocab_size=16384), 32768),
        "llama-h512-l8-v8192": ("check", "llama", dict(hidden_size=512, num_layers=8, num_heads=8, vocab_size=8192), None)}
QUANTS = ["gguf:q4_k_m", "gguf:f16", "onnx:int4", "ort-genai:int4"]
QUANTS_SHORT = ["gguf:q4_k_m", "onnx:int4", "ort-genai:int4"]  # the other models (exports are slow on a busy host)
PROMPTS = [64, 384]  # the tiny models are trained for 512 positions
GEN = 32
OUT = ROOT / "benchmarks" / "results"
MB = 2**20
# the terms of RUNTIME_MEMORY that --fit fits per runtime (the others are physical widths, kept as they are)
FITTED = {"llama.cpp": ["fixed_mb"], "onnxruntime": ["fixed_mb", "logits_bytes", "rotary_copies"],
          "ort-genai": ["fixed_mb", "rotary_copies"]}


def build(work: Path) -> None:
    from edgedistill.config import from_dict
    from edgedistill.export.run import ExportConfig, export
    from edgedistill.testing.tiny import build_tiny_model

    for name, (role, arch, kw, positions) in TINY.items():
        src = work / "models" / name
        if not src.exists():
            build_tiny_model(arch, src, **kw)
            if positions:
                cfg = json.loads((src / "config.json").read_text())
                atomic_write_text(src / "config.json", json.dumps(dict(cfg, max_position_embeddings=positions), indent=1))
        todo = [q for q in (QUANTS if role == "fit" and not positions else QUANTS_SHORT)
                if not (work / role / f"{name}-{q.replace(':', '-')}").exists()]
        if todo:
            export(from_dict(ExportConfig, {"model": str(src), "artifacts": todo, "out_dir": str(work / role),
                                            "name": name, "verify": False, "overwrite": True, "threads": 2}))
    student = work / "models" / "quickstart-student"
    if not student.exists():
        shutil.copytree(QUICKSTART / "students" / "distilled", student)
    check = work / "check"
    check.mkdir(parents=True, exist_ok=True)
    for art in ("distilled-gguf-q4_k_m", "distilled-onnx-int4"):
        if not (check / art).exists():
            shutil.copytree(QUICKSTART / "artifacts" / art, check / art)
    if not (check / "distilled-ort-genai-int4").exists():
        export(from_dict(ExportConfig, {"model": str(student), "artifacts": ["gguf:f16", "ort-genai:int4"],
                                        "out_dir": str(check), "name": "distilled", "verify": False,
                                        "overwrite": True, "threads": 2}))


def allocated_context(art, prompt: int, gen: int) -> int:
    """The KV-cache length the runtime allocates for one bench run of this artifact."""
    if art.format == "gguf":
        from edgedistill.runtimes.llamacpp_runtime import _trained_context

        return min(2048, _trained_context(art.main_file) or 2048)
    if art.format == "ort-genai":
        model = json.loads((art.path / "genai_config.json").read_text())["model"]
        window = (model.get("decoder") or {}).get("sliding_window", {}) or {}
        window = window.get("window_size", 0) if isinstance(window, dict) else int(window or 0)
        ctx = model.get("context_length") or 0
        floor = min(window, ctx) if ctx else window
        return max(prompt + gen, floor)
    return prompt + gen


def measure(work: Path) -> None:
    """Bench every artifact; keep the raw peaks (predictions are made by ``report``)."""
    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench import BenchConfig, bench, memory
    from edgedistill.bench.plan import plan

    runs = []
    for role in ("fit", "check"):
        for path in sorted((work / role).iterdir()):
            if path.name.endswith(".failed"):
                continue
            cfg = BenchConfig(artifacts=[str(path)], targets=["host"], prompt_lens=PROMPTS, gen_len=GEN, warmup=0,
                              min_reps=1, min_duration_s=0.0, max_reps=1, threads=2, enforce_memory=False,
                              static_check=False, probe_host=False, out=str(work / "bench" / path.name), progress=False)
            art = detect_artifact(path)
            facts = memory.facts_from_artifact(art)
            for r in bench(cfg).rows:
                if r.get("label") == "measured" and r.get("status") == "ok":
                    ctx = allocated_context(art, r["prompt_len"], GEN)
                    [p] = plan(path, ["x86-laptop"], context=ctx, prompt_len=r["prompt_len"])
                    runs.append({"role": role, "artifact": path.name, "format": art.format,
                                 "prompt_len": r["prompt_len"], "context": ctx, "file_mb": p.file_mb,
                                 "kv_cache_mb": p.kv_cache_mb, **asdict(facts),
                                 "measured_peak_mb": round(r["peak_rss_mb"], 1), "loadavg": list(os.getloadavg())})
                    print(f"{role} {path.name} p{r['prompt_len']}: {r['peak_rss_mb']:.1f} MB", flush=True)
                elif r.get("label") == "measured":
                    print(f"{role} {path.name}: {r.get('status')} {r.get('error')}", flush=True)
    OUT.mkdir(exist_ok=True)
    atomic_write_text(OUT / "memory_predict_check_runs.json", json.dumps(
        {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "prompts": PROMPTS, "gen_len": GEN,
         "runs": runs}, indent=1))


def predicted(run: dict) -> dict:
    """plan's peak (file + KV cache + runtime memory) for the run, with RUNTIME_MEMORY as it is now."""
    from edgedistill.bench.memory import MemoryFacts, runtime_memory_bytes
    from edgedistill.artifacts import FORMAT_RUNTIME

    facts = MemoryFacts(run["vocab"], run["heads"], run["rotary_bytes"])
    rt = runtime_memory_bytes(FORMAT_RUNTIME[run["format"]], run["file_mb"] * MB, facts, run["prompt_len"],
                              run["context"]) / MB
    return {"runtime_memory_mb": rt, "predicted_peak_mb": run["file_mb"] + run["kv_cache_mb"] + rt}


def fit(runs: list[dict]) -> dict:
    """RUNTIME_MEMORY's fitted terms from the "fit" runs: least squares of what is left per runtime."""
    import numpy as np

    from edgedistill.artifacts import FORMAT_RUNTIME
    from edgedistill.bench import memory

    out = {}
    for runtime, names in FITTED.items():
        rows = [r for r in runs if r["role"] == "fit" and FORMAT_RUNTIME[r["format"]] == runtime]
        x, y = [], []
        for r in rows:
            feats = {"fixed_mb": MB, "weight_copies": r["file_mb"] * MB, "logits_bytes": r["prompt_len"] * r["vocab"],
                     "rotary_copies": r["rotary_bytes"]}
            other = predicted(r)["runtime_memory_mb"] * MB - sum(memory.RUNTIME_MEMORY[runtime][n] * feats[n] for n in names)
            x.append([feats[n] for n in names])
            y.append((r["measured_peak_mb"] - r["file_mb"] - r["kv_cache_mb"]) * MB - other)
        coef, *_ = np.linalg.lstsq(np.array(x, dtype=float), np.array(y), rcond=None)
        out[runtime] = {n: round(float(c), 2) for n, c in zip(names, coef)}
    return out


def report(do_fit: bool) -> None:
    data = json.loads((OUT / "memory_predict_check_runs.json").read_text())
    runs = data["runs"]
    if do_fit:
        print("fitted on the 'fit' runs (copy into RUNTIME_MEMORY, edgedistill/bench/memory.py):")
        print(json.dumps(fit(runs), indent=1))
    rows = [dict(r, **predicted(r)) for r in runs]
    for r in rows:
        r["error"] = r["predicted_peak_mb"] / r["measured_peak_mb"] - 1
    write(rows, data)


def write(rows: list[dict], data: dict) -> None:
    from edgedistill.bench.memory import RUNTIME_MEMORY

    lines = ["| role | artifact | prompt | context | file MB | KV MB | runtime MB | predicted peak MB | measured peak MB | error | load avg |",
             "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['role']} | {r['artifact']} | {r['prompt_len']} | {r['context']} | {r['file_mb']:.1f} | "
                     f"{r['kv_cache_mb']:.1f} | {r['runtime_memory_mb']:.1f} | {r['predicted_peak_mb']:.1f} | "
                     f"{r['measured_peak_mb']} | {r['error'] * 100:+.1f}% | {r['loadavg'][0]:.1f} |")
    summary = {}
    for role in ("fit", "check"):
        errs = [abs(r["error"]) for r in rows if r["role"] == role]
        if errs:
            summary[role] = {"runs": len(errs), "median_abs_error": statistics.median(errs), "max_abs_error": max(errs),
                             "within_10pct": sum(e <= 0.10 for e in errs)}
            lines.append(f"\n{role}: {len(errs)} runs, median |error| {summary[role]['median_abs_error'] * 100:.1f}%, "
                         f"max {summary[role]['max_abs_error'] * 100:.1f}%, within 10%: "
                         f"{summary[role]['within_10pct']}/{len(errs)}")
    if data.get("note"):
        lines.append(f"\n{data['note']}")
    lines.append(f"\nMeasured {data['measured_at']}; constants: edgedistill/bench/memory.py RUNTIME_MEMORY = {RUNTIME_MEMORY}.")
    lines.append("Host: 2 CPUs shared with other jobs (load average beside each run; peak memory does not depend on load).")
    atomic_write_text(OUT / "memory_predict_check.json", json.dumps(
        {"measured_at": data["measured_at"], "prompts": data["prompts"], "gen_len": data["gen_len"],
         "runtime_memory": RUNTIME_MEMORY, "summary": summary, "rows": rows}, indent=1))
    atomic_write_text(OUT / "memory_predict_check.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("build", "measure", "report"))
    ap.add_argument("--work", default="/tmp/memcheck", help="where artifacts are built and benched")
    ap.add_argument("--fit", action="store_true", help="report: also fit RUNTIME_MEMORY on the 'fit' runs")
    args = ap.parse_args(argv)
    work = Path(args.work)
    if args.step == "build":
        build(work)
    elif args.step == "measure":
        measure(work)
    else:
        report(args.fit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
