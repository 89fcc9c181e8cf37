"""What each quantization costs on the task: ROUGE-L / perplexity / size / host decode tok/s of a student
and its artifacts, side by side, scored by ``edgedistill.eval`` on the same held-out records.

Variants (issue #13): float, gguf q8_0, q6_k, q5_k_m, q4_k_m, q4_k_m + imatrix (from --calibration),
q4_k_m + QAT + imatrix (needs --qat-student, a student distilled with ``--qat gguf:q4_k_m``), onnx int4
(RTN, the default) and onnx int4 with each --onnx-int4-algo given (hqq, k_quant: onnxruntime's data-free
scale searches; gptq: data-aware, reads --calibration, see docs/export-onnx.md).

    .venv/bin/python benchmarks/quant_quality.py --student runs/quickstart/distilled \\
        --calibration runs/quickstart/generated.jsonl --qat-student runs/qat/distilled \\
        --data examples/data/stdlib_summaries_test.jsonl --task summarization --records 100

The student is an argument so that the lead can rerun this on the final (pruned) student. Every figure
carries the 1-minute load average measured before and after that model was scored: decode tok/s on a
shared machine is only comparable within one run and at similar load. Writes
benchmarks/results/quant_quality.json and .md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from edgedistill.eval import metrics as M  # noqa: E402
from edgedistill.eval.evaluate import (EvalConfig, _messages, find_prompt_format, load_test_set,  # noqa: E402
                                       score_model, summarise, task_metrics)
from edgedistill.export import ExportConfig, ExportOptions, export  # noqa: E402

OUT = Path(__file__).parent / "results" / "quant_quality.json"


def variants(args) -> list[dict]:
    """(label, model, format:quant, calibrate, options) of every row; float first, then the 4-bit rows the
    issue is about (so that a run cut short still has them), then the wider types."""
    v = [{"label": "float", "model": args.student, "artifact": None},
         {"label": "gguf:q4_k_m", "model": args.student, "artifact": "gguf:q4_k_m"}]
    if args.calibration:
        v.append({"label": "gguf:q4_k_m+imatrix", "model": args.student, "artifact": "gguf:q4_k_m", "calibrate": True})
    if args.qat_student:
        v.append({"label": "float (QAT student)", "model": args.qat_student, "artifact": None})
        v.append({"label": "gguf:q4_k_m+QAT+imatrix" if args.calibration else "gguf:q4_k_m+QAT",
                  "model": args.qat_student, "artifact": "gguf:q4_k_m", "calibrate": bool(args.calibration)})
    v.append({"label": "onnx:int4 (rtn)", "model": args.student, "artifact": "onnx:int4"})
    for q in ("q8_0", "q6_k", "q5_k_m"):
        v.append({"label": f"gguf:{q}", "model": args.student, "artifact": f"gguf:{q}"})
    for algo in args.onnx_int4_algo:  # gptq is data-aware: it reads --calibration
        v.append({"label": f"onnx:int4 ({algo})", "model": args.student, "artifact": "onnx:int4",
                  "options": {"int4_algorithm": algo}, "calibrate": algo == "gptq"})
    return [x for x in v if not args.only or x["label"] in args.only]


def artifact_dir(label: str, artifact: str, work: Path) -> Path:
    """Where :func:`build` puts a variant's artifact (export's <name>-<format>-<quant>)."""
    name = "".join(c if c.isalnum() else "_" for c in label)
    return work / f"{name}-{artifact.replace(':', '-')}"


def build(v: dict, work: Path, args) -> tuple[str, float]:
    """The artifact directory of a variant (exported unverified: the figures come from eval), seconds."""
    if v["artifact"] is None:
        return v["model"], 0.0
    name = "".join(c if c.isalnum() else "_" for c in v["label"])
    t0 = time.perf_counter()
    res = export(ExportConfig(model=v["model"], artifacts=[v["artifact"]], out_dir=str(work), name=name,
                              verify=False, overwrite=True, threads=args.threads,
                              calibration_data=args.calibration if v.get("calibrate") else None,
                              options=ExportOptions(**v.get("options", {}))), log=lambda m: None)
    return str(res.artifacts[0].path), time.perf_counter() - t0


def decode_tok_s(rt, prompts: list[list[int]], gen: int) -> float | None:
    """Greedy decode speed: tokens after the first / seconds after the first, summed over ``prompts``
    (the first token's time is the prompt's prefill, not decoding)."""
    tokens, seconds = 0, 0.0
    for ids in prompts:
        t_first, n = None, 0
        for _ in rt.stream(ids, gen):
            n += 1
            if t_first is None:
                t_first = time.perf_counter()
        if n > 1:
            tokens, seconds = tokens + n - 1, seconds + time.perf_counter() - t_first
    return round(tokens / seconds, 1) if seconds else None


def speed_rounds(rows: list[dict], paths: dict[str, str], texts: list[str], args) -> None:
    """Host decode tok/s of every variant in ``args.speed_rounds`` interleaved rounds (A B C .. then
    .. C B A), each figure with the 1-minute load average before it; the median goes into the row."""
    from edgedistill.runtimes import open_runtime

    runtimes = {label: open_runtime(path, threads=args.threads, decode_only=True) for label, path in paths.items()}
    try:
        prompts = {label: [rt.tokenize(t) for t in texts] for label, rt in runtimes.items()}
        for label, rt in runtimes.items():  # warm-up (allocations, first-call costs), not recorded
            decode_tok_s(rt, prompts[label][:1], 4)
        per = {label: [] for label in runtimes}
        for r in range(args.speed_rounds):
            for label in (list(runtimes) if r % 2 == 0 else list(runtimes)[::-1]):
                load = round(os.getloadavg()[0], 2)
                per[label].append({"tok_s": decode_tok_s(runtimes[label], prompts[label], args.speed_tokens),
                                   "loadavg_1m": load, "round": r})
            print(f"speed round {r + 1}/{args.speed_rounds}: "
                  + ", ".join(f"{k} {v[-1]['tok_s']}" for k, v in per.items()), flush=True)
    finally:
        for rt in runtimes.values():
            rt.close()
    for row in rows:
        if row["label"] in per:
            figs = sorted(x["tok_s"] for x in per[row["label"]] if x["tok_s"])
            row["speed_rounds"] = per[row["label"]]
            row["decode_tok_s_median"] = figs[len(figs) // 2] if figs else None


def speed_only(args) -> dict:
    """--speed-from: the speed rounds over an earlier run's variants (its JSON and .md re-written)."""
    rep = json.loads(Path(args.speed_from).read_text())
    paths = {r["label"]: r.get("path") or (r["model"] if r["artifact"] is None else
                                           str(artifact_dir(r["label"], r["artifact"], Path(args.work))))
             for r in rep["rows"]}
    cfg = EvalConfig(models=[rep["student"]], data=rep["data"], task=rep["task"],
                     max_records=args.speed_prompts, threads=args.threads)
    fmt = find_prompt_format([rep["student"]])
    texts = [fmt.text(_messages(r, rep["task"]), cfg.plain_cue) for r in load_test_set(cfg)]
    speed_rounds(rep["rows"], paths, texts, args)
    rep.update(speed_rounds=args.speed_rounds, speed_prompts=args.speed_prompts, speed_tokens=args.speed_tokens,
               speed_recorded_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    atomic_write_json(Path(args.speed_from), rep)
    atomic_write_text(Path(args.speed_from).with_suffix(".md"), render(rep))
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", help="float student (HF directory)")
    ap.add_argument("--data", help="held-out records with references")
    ap.add_argument("--task")
    ap.add_argument("--calibration", help="calibration records (e.g. the distillation JSONL)")
    ap.add_argument("--qat-student", help="the same student distilled with --qat gguf:q4_k_m")
    ap.add_argument("--onnx-int4-algo", nargs="*", default=[], help="extra onnx:int4 algorithms (e.g. hqq)")
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="labels to run (default: all)")
    ap.add_argument("--speed-rounds", type=int, default=0,
                    help="after scoring: interleaved rounds of host decode tok/s over every variant (0: none)")
    ap.add_argument("--speed-prompts", type=int, default=4, help="records whose prompts each speed round decodes")
    ap.add_argument("--speed-tokens", type=int, default=32, help="greedy tokens per prompt in a speed round")
    ap.add_argument("--work", help="directory for the artifacts (default: a temporary one)")
    ap.add_argument("--note", default="", help="conditions, written beside the figures")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--append", action="store_true", help="keep the rows of --out (same student and data) whose "
                                                          "labels this run does not score")
    ap.add_argument("--render", metavar="JSON", help="only re-write the .md (and the bootstrap intervals) of an "
                                                     "earlier run's JSON")
    ap.add_argument("--speed-from", metavar="JSON", help="only run --speed-rounds over the variants of an earlier "
                                                         "run's JSON (artifacts in its --work) and re-write it")
    args = ap.parse_args()
    if args.render:  # re-write the .md (and the bootstrap intervals, which need the records' references)
        rep = json.loads(Path(args.render).read_text())
        cfg = EvalConfig(models=[rep["student"]], data=rep["data"], task=rep["task"], max_records=rep["records"])
        paired_ci(rep["rows"], load_test_set(cfg), rep["metric"], rep["student"])
        atomic_write_json(Path(args.render), rep)
        atomic_write_text(Path(args.render).with_suffix(".md"), render(rep))
        return
    if args.speed_from:
        print(render(speed_only(args)))
        return
    if not (args.student and args.data and args.task):
        ap.error("--student, --data and --task are required")

    cfg = EvalConfig(models=[args.student], data=args.data, task=args.task, max_records=args.records,
                     max_new_tokens=args.max_new_tokens, max_reference_tokens=64, threads=args.threads)
    records = load_test_set(cfg)
    fmt = find_prompt_format([args.student])
    prompts = [fmt.text(_messages(r, args.task), cfg.plain_cue) for r in records]
    metric = task_metrics(args.task)[0]
    rows, paths = [], {}
    if args.append and Path(args.out).exists():
        earlier = json.loads(Path(args.out).read_text())
        if (earlier["student"], earlier["data"], earlier["records"]) != (args.student, args.data, len(records)):
            ap.error(f"--append: {args.out} scored another student, data or record count")
        rows = [r for r in earlier["rows"] if r["label"] not in {v["label"] for v in variants(args)}]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        for v in variants(args):
            path, export_s = build(v, work, args)
            paths[v["label"]] = path
            load_before = os.getloadavg()[0]
            result = score_model(path, v["label"], records, prompts, fmt, cfg)
            load_after = os.getloadavg()[0]
            row = summarise(result, [metric], None)
            rows.append({"label": v["label"], "model": v["model"], "artifact": v["artifact"], "path": path,
                         "size_mb": round(row["size_bytes"] / 2**20, 2), metric: row["scores"][metric],
                         "perplexity": row["scores"]["perplexity"], "decode_tok_s": row["decode_tokens_per_s"],
                         "export_s": round(export_s, 1), "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
                         "outputs": [r["output"] for r in result["records"]]})
            print(f"{v['label']:<28} {rows[-1]['size_mb']:>8.1f} MB  {metric} {rows[-1][metric]}  "
                  f"ppl {rows[-1]['perplexity']}  {rows[-1]['decode_tok_s']} tok/s  load {rows[-1]['loadavg_1m']}",
                  flush=True)
            report = write(args, records, metric, rows)  # after every row: a run cut short keeps its figures
        if args.speed_rounds:
            speed_rounds(rows, paths, prompts[:args.speed_prompts], args)
            report = write(args, records, metric, rows)
    print(render(report))


def paired_ci(rows: list[dict], records: list[dict], metric: str, student: str, resamples: int = 2000) -> None:
    """Per row, the 95 % paired bootstrap interval of (row's mean per-record score - the float student's)
    over the same records: whether a difference is larger than the choice of records (``ci95_vs_float``)."""
    import numpy as np

    score = getattr(M, metric, None)
    base = next((r for r in rows if r["artifact"] is None and r["model"] == student), None)
    if score is None or base is None:
        return
    refs = [r["reference"] for r in records]
    per = {r["label"]: np.array([score([o], [ref]) for o, ref in zip(r["outputs"], refs)]) for r in rows}
    idx = np.random.default_rng(0).integers(0, len(refs), size=(resamples, len(refs)))
    for r in rows:
        d = per[r["label"]] - per[base["label"]]
        means = d[idx].mean(axis=1)
        r["ci95_vs_float"] = [round(float(np.percentile(means, 2.5)), 2), round(float(np.percentile(means, 97.5)), 2)]


def write(args, records, metric, rows) -> dict:
    floats = {r["model"]: r[metric] for r in rows if r["artifact"] is None}
    for r in rows:
        r["retention"] = M.retention(r[metric], floats.get(args.student), metric)
    paired_ci(rows, records, metric, args.student)
    report = {"records": len(records), "data": args.data, "task": args.task, "metric": metric,
              "student": args.student, "qat_student": args.qat_student, "calibration": args.calibration,
              "speed_rounds": args.speed_rounds, "speed_prompts": args.speed_prompts,
              "speed_tokens": args.speed_tokens,
              "max_new_tokens": args.max_new_tokens, "threads": args.threads, "note": args.note,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "recorded_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    out = Path(args.out)
    atomic_write_json(out, report)
    atomic_write_text(out.with_suffix(".md"), render(report))
    return report


def render(rep: dict) -> str:
    m = rep["metric"]
    lines = [f"# Quantization quality: {rep['records']} records of {rep['data']} (task {rep['task']})", "",
             f"Student `{rep['student']}`; calibration `{rep['calibration']}`; QAT student `{rep['qat_student']}`; "
             f"{rep['max_new_tokens']} greedy tokens, {rep['threads']} threads; {rep['recorded_utc']}, "
             f"{rep['machine']['cpus']} CPUs. {rep['note']}", "",
             f"| variant | size MB | {m} | retention (vs float student) | {m} - float's, 95 % paired bootstrap "
             "interval | perplexity | host decode tok/s "
             "(while scoring) | load avg 1m (before, after) | host decode tok/s (median of the rounds) | "
             "load avg 1m at each round |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        ret = f"{r['retention']:.2f}" if r.get("retention") is not None else "n/a"
        ci = "[{:+.2f}, {:+.2f}]".format(*r["ci95_vs_float"]) if r.get("ci95_vs_float") else "n/a"
        ppl = f"{r['perplexity']:.2f}" if r["perplexity"] is not None else "n/a"
        rounds = ", ".join(str(x["loadavg_1m"]) for x in r.get("speed_rounds", [])) or "n/a"
        lines.append(f"| {r['label']} | {r['size_mb']:.1f} | {r[m]:.2f} | {ret} | {ci} | {ppl} | "
                     f"{r['decode_tok_s']} | {r['loadavg_1m'][0]}, {r['loadavg_1m'][1]} | "
                     f"{r.get('decode_tok_s_median', 'n/a')} | {rounds} |")
    if rep.get("speed_rounds"):
        lines += ["", f"Speed rounds: {rep['speed_rounds']} interleaved rounds (order reversed every other round), "
                      f"each decoding {rep['speed_tokens']} greedy tokens after the prompts of the first "
                      f"{rep['speed_prompts']} records, {rep['threads']} threads; tok/s = tokens after the first "
                      "/ seconds after the first."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
