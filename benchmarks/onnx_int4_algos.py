"""Which of onnxruntime's MatMulNBits weight-rounding algorithms keeps an int4 model closest to float?

For each model (a tiny random llama at width 256, and optionally --student DIR) and each
``ExportOptions.int4_algorithm`` (rtn = the quantizer's default round-to-nearest, symmetric; hqq =
half-quadratic scale/zero-point search; k_quant = llama.cpp-style scale/min search), the onnx:int4
artifact is written with the format's ``write`` and verified against PyTorch exactly as export does
(mean/max KL over positions, teacher-forced greedy agreement, top-1), with its size and export time.
The 1-minute load average is recorded beside every row (the machine may be shared).

    .venv/bin/python benchmarks/onnx_int4_algos.py [--student runs/quickstart/distilled]

Writes benchmarks/results/onnx_int4_algos.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from edgedistill.export import FORMATS, ExportOptions  # noqa: E402
from edgedistill.export.formats import INT4_ALGORITHMS  # noqa: E402
from edgedistill.export.verify import build_reference, verify_artifact  # noqa: E402
from edgedistill.testing.tiny import build_tiny_model, build_tokenizer  # noqa: E402

OUT = Path(__file__).parent / "results" / "onnx_int4_algos.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", help="also measure this HF model directory")
    ap.add_argument("--algos", nargs="+", default=[a for a in INT4_ALGORITHMS if a != "gptq"],
                    help="gptq needs calibration data: benchmarks/quant_quality.py --onnx-int4-algo gptq measures it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    rows = []
    fmt = FORMATS.get("onnx")
    spec = fmt.quants["int4"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {"tiny-llama-w256": build_tiny_model("llama", tmp / "tiny", tokenizer=build_tokenizer(),
                                                      hidden_size=256, num_layers=2)}
        if args.student:
            models[Path(args.student).name] = Path(args.student)
        for mname, mdir in models.items():
            ref = build_reference(mdir, new_tokens=16, threads=args.threads)
            for algo in args.algos:
                d = tmp / f"{mname}-{algo}"
                d.mkdir()
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                try:
                    fmt.write(mdir, d, "int4", ExportOptions(int4_algorithm=algo))
                except Exception as exc:  # noqa: BLE001 - an algorithm this onnxruntime cannot run is a finding
                    rows.append({"model": mname, "algorithm": algo, "error": f"{type(exc).__name__}: {exc}"[:300]})
                    print(rows[-1], flush=True)
                    continue
                export_s = time.perf_counter() - t0
                (d / "manifest.json").write_text(json.dumps({"format": "onnx", "quant": "int4"}))
                v = verify_artifact(d, spec, ref, threads=args.threads)
                f = v.figures
                rows.append({"model": mname, "algorithm": algo, "export_s": round(export_s, 1),
                             "mib": round(sum(p.stat().st_size for p in d.rglob("*.onnx*")) / 2**20, 2),
                             "kl_mean": f["kl_mean"], "kl_max": f["kl_max"], "top1": f["top1_agreement"],
                             "greedy_tf": f["greedy_match"], "passes": v.passed,
                             "loadavg_1m": [round(load, 2), round(os.getloadavg()[0], 2)]})
                print(rows[-1], flush=True)
    report = {"recorded_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "rows": rows}
    atomic_write_json(Path(args.out), report)
    lines = ["| model | int4_algorithm | MiB | KL mean | KL max | top-1 | greedy (tf) | export s | load avg 1m |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['algorithm']} | error: {r['error']} | | | | | | |")
        else:
            lines.append(f"| {r['model']} | {r['algorithm']} | {r['mib']} | {r['kl_mean']:.3e} | {r['kl_max']:.3e} | "
                         f"{r['top1']:.3f} | {r['greedy_tf']:.3f} | {r['export_s']} | {r['loadavg_1m']} |")
    atomic_write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
