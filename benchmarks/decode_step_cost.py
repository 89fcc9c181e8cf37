"""Where a decoded token's time goes: bench's llama.cpp step vs what `llama-bench` tg times.

`llama-bench` tg (llama.cpp's tools/llama-bench) times one `llama_decode` of a one-token batch per
token, from an empty context, no sampling, with flash attention `auto`. bench's decode step
(`LlamaCppRuntime._stream_native`) adds llama.cpp's greedy sampler and starts after the prompt.
This script times, in one process, alternating (a shared machine drifts), per GGUF file:

  step      bench's path: sampler + one-token llama_decode (as `edgedistill bench` runs it)
  decode    llama_decode alone (a fixed token), after the same prompt: llama-bench's loop
  sampler   llama_sampler_sample alone on the same logits row (its per-token cost)
  fa:step   bench's path in a context with flash attention on (llama-bench's `auto` picks it on CPU)
  fa_step_watched    fa:step while the runner's memory-budget thread polls VmRSS every 50 ms
  fa_small_ctx_step  the same with the context sized to prompt + gen, as llama-bench sizes it (llama.cpp
            attends over the KV cells padded to 256, or the whole cache when smaller)

and, with --llama-bench, llama-bench tg with -fa 0 and -fa 1 beside them, with -fa 1 -d PROMPT (the
same positions as bench's decode, in a PROMPT + GEN cache). llama.cpp attends over the used KV cells
padded to 256, but its CPU flash-attention kernel skips masked cells, so the padding of bench's
2048-token cache costs little (fa_small_ctx_step). Timed: run it under
`flock /work/cpu.lock` on a shared machine; the 1-minute load average is recorded per round.

    python benchmarks/decode_step_cost.py FILE.gguf [FILE.gguf ...] [--llama-bench PATH] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _open(path: Path, threads: int, flash: bool | None = None, n_ctx: int | None = None):
    """bench's runtime as it opens the file; with ``flash`` / ``n_ctx`` a context opened otherwise."""
    from edgedistill.artifacts import detect_artifact
    from edgedistill.runtimes.llamacpp_runtime import LlamaCppRuntime

    rt = LlamaCppRuntime(detect_artifact(path), threads=threads, decode_only=True)
    if flash is not None or n_ctx:
        import llama_cpp

        rt.llm.close()
        rt.llm = llama_cpp.Llama(model_path=str(rt.artifact.main_file), n_ctx=n_ctx or rt.n_ctx, n_batch=512,
                                 n_threads=threads, flash_attn=bool(flash), verbose=False)
        rt._vocab = llama_cpp.llama_model_get_vocab(rt.llm.model)
        rt.n_ctx = rt.llm.n_ctx()
    return rt


def _prompt(rt, n: int) -> list[int]:
    from edgedistill.bench.runner import synthetic_prompt

    return synthetic_prompt(rt, n)


from edgedistill.bench.runner import MemoryWatch  # noqa: E402


def time_step(rt, ids, gen) -> float:
    """Tokens/s of bench's path: (tokens - 1) / (last - first), as the runner computes decode."""
    stamps = [time.perf_counter() for _ in rt._stream_native(ids, gen)]
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def time_decode(rt, ids, gen) -> float:
    """llama_decode alone, a fixed token per step (llama-bench's tg loop), after the prompt."""
    lib, ctx = rt._lib, rt.llm.ctx
    rt.llm.reset()
    rt.llm.eval(list(ids))
    token = (lib.llama_token * 1)(ids[-1])
    t0 = time.perf_counter()
    for _ in range(gen - 1):
        if lib.llama_decode(ctx, lib.llama_batch_get_one(token, 1)) != 0:
            raise RuntimeError("llama_decode failed")
        lib.llama_synchronize(ctx)
    secs = time.perf_counter() - t0
    rt.llm.n_tokens = len(ids) + gen - 1
    return (gen - 1) / secs


def time_sampler(rt, ids, gen) -> float:
    """Microseconds per llama_sampler_sample call on the last logits row."""
    lib, ctx = rt._lib, rt.llm.ctx
    if getattr(rt, "_sampler", None) is None:
        rt._sampler = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(rt._sampler, lib.llama_sampler_init_greedy())
    rt.llm.reset()
    rt.llm.eval(list(ids))
    t0 = time.perf_counter()
    for _ in range(gen):
        lib.llama_sampler_sample(rt._sampler, ctx, -1)
    return (time.perf_counter() - t0) / gen * 1e6


def llama_bench(exe: str, path: Path, threads: int, gen: int, reps: int, fa: int, depth: int = 0) -> dict:
    out = subprocess.run([exe, "-m", str(path), "-t", str(threads), "-p", "0", "-n", str(gen), "-r", str(reps),
                          "-fa", str(fa), "-d", str(depth), "-o", "json"], capture_output=True, text=True, check=True,
                         timeout=900)
    tg = json.loads(out.stdout)[0]
    return {"tg_tps": tg["avg_ts"], "sd": tg.get("stddev_ts"), "build": tg.get("build_commit")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--llama-bench", default=os.environ.get("LLAMA_BENCH"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, help="JSON results file")
    args = ap.parse_args(argv)
    results = []
    for path in args.files:
        rt, fa = _open(path, args.threads), _open(path, args.threads, flash=True)
        small = _open(path, args.threads, flash=True, n_ctx=args.prompt_len + args.gen_len)
        ids = _prompt(rt, args.prompt_len)
        for m in (rt, fa, small):
            time_step(m, ids, args.gen_len)  # warm-up
        rec = {"file": str(path), "mb": path.stat().st_size / 2**20, "step": [], "decode": [], "sampler_us": [],
               "fa_step": [], "fa_decode": [], "fa_small_ctx_step": [], "fa_step_watched": [], "lb_fa0": [], "lb_fa1": [], "lb_fa1_d": [],
               "load": []}
        for _ in range(args.rounds):
            rec["load"].append(os.getloadavg()[0])
            rec["step"].append(time_step(rt, ids, args.gen_len))
            rec["decode"].append(time_decode(rt, ids, args.gen_len))
            rec["sampler_us"].append(time_sampler(rt, ids, args.gen_len))
            rec["fa_step"].append(time_step(fa, ids, args.gen_len))
            rec["fa_decode"].append(time_decode(fa, ids, args.gen_len))
            rec["fa_small_ctx_step"].append(time_step(small, ids, args.gen_len))
            watch = MemoryWatch(64 << 30, 2 << 30)  # the runner's budget watch (a 50 ms VmRSS poll), never tripped
            rec["fa_step_watched"].append(time_step(fa, ids, args.gen_len))
            watch.stop()
            if args.llama_bench:
                for f in (0, 1):
                    rec[f"lb_fa{f}"].append(llama_bench(args.llama_bench, path, args.threads, args.gen_len, 3, f)["tg_tps"])
                # tg at the same positions as bench's decode (after the prompt): context prompt + gen
                rec["lb_fa1_d"].append(llama_bench(args.llama_bench, path, args.threads, args.gen_len, 3, 1,
                                                   depth=args.prompt_len)["tg_tps"])
        rec["load"].append(os.getloadavg()[0])
        rt.close(), fa.close(), small.close()
        med = {k: statistics.median(v) for k, v in rec.items() if isinstance(v, list) and v and k != "load"}
        rec["median"] = med
        print(f"{path.name} ({rec['mb']:.1f} MB), load {min(rec['load']):.2f}-{max(rec['load']):.2f}: "
              + ", ".join(f"{k} {v:.1f}" for k, v in med.items()), flush=True)
        results.append(rec)
    if args.out:
        from edgedistill.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps({"threads": args.threads, "prompt_len": args.prompt_len,
                                                "gen_len": args.gen_len, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
