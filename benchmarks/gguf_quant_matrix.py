"""Measure every GGUF quant type on every supported architecture (tiny random models).

For each (architecture, width, quant): convert, load in llama.cpp and compare with PyTorch exactly as
export verification does (edgedistill.export.verify: mean/max KL, greedy agreement, max |logit diff|,
tokenizer identity). The thresholds in edgedistill/export/gguf/quantize.py are these figures with margin.

    .venv/bin/python benchmarks/gguf_quant_matrix.py            # widths 64 and 256
    .venv/bin/python benchmarks/gguf_quant_matrix.py --widths 256 --out results/x.json

Width 256 is needed for real K-quants (rows must be multiples of 256; narrower ones fall back to
q5_0/q5_1/q8_0). The tiny builder's weights have std 0.15 whatever the width, so at width 256 every
matmul amplifies activations ~2.4x (0.15*sqrt(256)) and the random model becomes chaotic; with
``--condition`` 2-D weights other than the embedding are rescaled by sqrt(64/width), which keeps the
width-64 models' per-layer gain. build_tiny_model now initialises with that scaling itself, so the
default is off; the recorded results/gguf_quant_matrix_w256.json were made with the old fixed-std init
plus --condition, i.e. the same weights distribution as the default now.

Writes benchmarks/results/gguf_quant_matrix.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgedistill.export.gguf import GGUF_QUANTS, describe_gguf, write_gguf
from edgedistill.export.gguf.architectures import ARCHITECTURES
from edgedistill.export.verify import build_reference, verify_artifact
from edgedistill.testing.tiny import build_tiny_model, build_tokenizer

TINY_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3", "phi3": "phi3"}


def condition_weights(model_dir: Path, factor: float) -> None:
    """Scale every 2-D weight except the token embedding by ``factor`` (in place)."""
    from safetensors.numpy import load_file, save_file

    f = model_dir / "model.safetensors"
    w = load_file(str(f))
    w = {k: (v * factor if v.ndim == 2 and "embed_tokens" not in k else v) for k, v in w.items()}
    save_file(w, str(f), metadata={"format": "pt"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--quants", nargs="+", default=GGUF_QUANTS.names())
    ap.add_argument("--archs", nargs="+", default=ARCHITECTURES.names())
    ap.add_argument("--condition", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gguf_quant_matrix.json"))
    args = ap.parse_args()
    tok = build_tokenizer()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for arch_key in args.archs:
                arch = TINY_ARCH[arch_key]
                model = build_tiny_model(arch, Path(tmp) / f"{arch}-{width}", tokenizer=tok, hidden_size=width, num_heads=4)
                if args.condition and width != 64:
                    condition_weights(model, (64 / width) ** 0.5)
                ref = build_reference(model)
                for quant in args.quants:
                    dst = Path(tmp) / f"{arch}-{width}-{quant}.gguf"
                    t0 = time.perf_counter()
                    write_gguf(model, dst, quant)
                    convert_s = time.perf_counter() - t0
                    verdict = verify_artifact(dst, GGUF_QUANTS.get(quant).spec, ref)
                    fig = verdict.figures
                    row = {
                        "arch": arch, "hidden_size": width, "conditioned": args.condition and width != 64, "quant": quant,
                        "kl_mean": fig["kl_mean"], "kl_max": fig["kl_max"], "greedy_match": fig["greedy_match"],
                        "greedy_free_match": fig["greedy_free_match"], "stream_consistency": fig["stream_consistency"],
                        "max_abs_logit_diff": fig["max_abs_logit_diff"], "top1": fig["top1_agreement"],
                        "tokenizer_mismatches": fig["tokenizer_mismatches"], "passes_thresholds": verdict.passed,
                        "failures": verdict.failures, "bytes": dst.stat().st_size, "convert_s": round(convert_s, 2),
                        "tensor_types": describe_gguf(dst)["tensor_type_counts"],
                    }
                    rows.append(row)
                    print(json.dumps({k: row[k] for k in ("arch", "hidden_size", "quant", "kl_mean", "greedy_match",
                                                          "max_abs_logit_diff", "passes_thresholds")}), flush=True)
                    dst.unlink()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
