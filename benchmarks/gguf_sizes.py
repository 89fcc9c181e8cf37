"""GGUF sizes, conversion times and verification figures on a ~100M-parameter llama.

    .venv/bin/python benchmarks/gguf_sizes.py [--quants f16 q8_0 q4_k_m] [--threads 2]

Builds ``build_tiny_model("llama", hidden_size=768, num_layers=12, num_heads=12, vocab_size=32000)``
(random weights), exports it at each quant type with edgedistill's GGUF writer, and records file size
(bytes and % of f16), conversion seconds and the verification figures (``verify_artifact``, what
``edgedistill export`` runs) in benchmarks/results/gguf_sizes.json (``--condition``:
gguf_sizes_conditioned.json). Target: q4_k_m <= 35% of f16.
Note: build_tiny_model now scales its init std by sqrt(64/width) itself; the recorded
gguf_sizes_conditioned.json (old fixed-std init + --condition) has the weight distribution that a plain
run gives now, so --condition would scale twice.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from edgedistill.export.gguf import GGUF_QUANTS, describe_gguf, write_gguf
from edgedistill.export.verify import build_reference, verify_artifact
from edgedistill.testing.tiny import build_tiny_model, build_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q4_k_m"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--condition", action="store_true",
                    help="rescale 2-D weights (not the embedding) by sqrt(64/768) so the random network is not "
                         "chaotic and the verification figures mean something")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model("llama", Path(tmp) / "llama100m", tokenizer=build_tokenizer(),
                                 hidden_size=768, num_layers=12, num_heads=12, vocab_size=32000)
        if args.condition:
            from safetensors.numpy import load_file, save_file

            for f in model.glob("*.safetensors"):
                w = load_file(str(f))
                w = {k: (v * (64 / 768) ** 0.5 if v.ndim == 2 and "embed_tokens" not in k else v) for k, v in w.items()}
                save_file(w, str(f), metadata={"format": "pt"})
        st_bytes = sum(f.stat().st_size for f in model.glob("*.safetensors"))
        t0 = time.perf_counter()
        ref = build_reference(model, threads=args.threads)
        ref_s = time.perf_counter() - t0
        results = []
        for quant in args.quants:
            dst = Path(tmp) / f"{quant}.gguf"
            t0 = time.perf_counter()
            write_gguf(model, dst, quant)
            convert_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            verdict = verify_artifact(dst, GGUF_QUANTS.get(quant).spec, ref, threads=args.threads)
            verify_s = time.perf_counter() - t0
            figures = verdict.figures
            info = describe_gguf(dst)
            row = {
                "quant": quant, "bytes": dst.stat().st_size, "convert_s": round(convert_s, 1),
                "verify_s": round(verify_s, 1), "tensor_type_counts": info["tensor_type_counts"],
                "kl_mean": figures["kl_mean"], "kl_max": figures["kl_max"], "top1_agreement": figures["top1_agreement"],
                "greedy_match": figures["greedy_match"], "greedy_free_match": figures["greedy_free_match"],
                "max_abs_logit_diff": figures["max_abs_logit_diff"],
                "tokenizer_mismatches": figures["tokenizer_mismatches"], "passes_thresholds": verdict.passed,
                "failures": verdict.failures,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            dst.unlink()
    f16 = next((r["bytes"] for r in results if r["quant"] == "f16"), None)
    for r in results:
        r["pct_of_f16"] = round(100.0 * r["bytes"] / f16, 1) if f16 else None
    out = {
        "model": "llama hidden 768, 12 layers, 12 heads, vocab 32000 (random weights, std 0.15"
                 + (", 2-D weights rescaled by sqrt(64/768))" if args.condition else ")"),
        "parameters": info["parameters"],
        "safetensors_f32_bytes": st_bytes,
        "torch_reference_s": round(ref_s, 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "results": results,
        "target": "q4_k_m <= 35% of f16",
        "target_met": next((r["pct_of_f16"] <= 35.0 for r in results if r["quant"] == "q4_k_m"), None),
    }
    out_path = Path(args.out or Path(__file__).parent / "results" /
                    ("gguf_sizes_conditioned.json" if args.condition else "gguf_sizes.json"))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1))
    for r in results:
        print(f"{r['quant']:7} {r['bytes'] / 1e6:8.1f} MB  {r['pct_of_f16']:5.1f}% of f16  convert {r['convert_s']:5.1f}s  "
              f"KL {r['kl_mean']:.3g}  top1 {r['top1_agreement']:.2f}  greedy {r['greedy_match']:.2f}")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
