"""GGUF quant figures on a real pretrained model: Gemma 3 270M.

The only real checkpoint available offline is Gemma 3 270M as a Q4_K_M GGUF
(/work/gemma/gemma-3-270m-q4_k_m.gguf). It is imported to a Hugging Face directory
(edgedistill.gguf_import, dequantized to f32), then exported again by edgedistill's GGUF writer at each
quant type and compared with the PyTorch model exactly as export verification does.

Caveat: the source weights already lie on Q4_K/Q5_0/Q6_K/Q8_0 grids, so re-quantizing to the same
types loses less than quantizing an original bf16 checkpoint would; the figures for q4_k_m and
above are optimistic. They show what a real model's greedy agreement looks like, which tiny random
models cannot (their next-token distributions are flat, so argmax flips at tiny logit noise).

The HF tokenizer written by the importer has no tokenizer.model, so the GGUF's own vocabulary
(tokens, scores, types) is reused for the exported file's metadata.

    .venv/bin/python benchmarks/gguf_real_gemma.py [--quants f16 q8_0 q4_k_m]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SOURCE = Path("/work/gemma/gemma-3-270m-q4_k_m.gguf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k"])
    ap.add_argument("--hf-dir", default="/tmp/gemma3-270m-hf")
    ap.add_argument("--work", default="/tmp/gemma3-270m-gguf")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gguf_real_gemma.json"))
    args = ap.parse_args()

    from edgedistill.export.gguf import GGUF_QUANTS, describe_gguf, write_gguf
    from edgedistill.export.gguf import writer as writer_mod
    from edgedistill.export.gguf.tokenizer import TokenizerMetadata
    from edgedistill.export.verify import build_reference, compare, judge
    from edgedistill.gguf_import import import_gguf
    from edgedistill.gguf_import.reader import read_gguf
    from edgedistill.runtimes import open_runtime

    hf_dir = Path(args.hf_dir)
    if not (hf_dir / "config.json").exists():
        import_gguf(SOURCE, hf_dir)
    meta = read_gguf(SOURCE, with_tensors=False).metadata
    tok = TokenizerMetadata(
        "llama", "default", list(meta["tokenizer.ggml.tokens"]), [int(t) for t in meta["tokenizer.ggml.token_type"]],
        scores=[float(s) for s in meta["tokenizer.ggml.scores"]],
        special_ids={"bos": meta["tokenizer.ggml.bos_token_id"], "eos": meta["tokenizer.ggml.eos_token_id"],
                     "unk": meta["tokenizer.ggml.unknown_token_id"], "pad": meta["tokenizer.ggml.padding_token_id"]},
        add_bos=True, add_eos=False, add_space_prefix=False,
    )
    writer_mod.tokenizer_metadata = lambda model_dir, vocab_size: tok

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ref = build_reference(hf_dir)
    print(f"reference {time.perf_counter() - t0:.1f}s", flush=True)
    rows = []
    for quant in args.quants:
        dst = work / f"{quant}.gguf"
        t0 = time.perf_counter()
        write_gguf(hf_dir, dst, quant)
        convert_s = time.perf_counter() - t0
        with open_runtime(dst) as rt:
            logits = [rt.logits(ids) for ids in ref.prompt_ids]
            greedy = [rt.greedy(ids, ref.new_tokens) for ids in ref.prompt_ids]
            corpus = [rt.tokenize(t) for t in __import__("edgedistill.export.verify", fromlist=["x"]).TOKENIZER_CORPUS]
        fig = compare(ref, logits, greedy, corpus)
        verdict = judge(fig, GGUF_QUANTS.get(quant).spec)
        row = {"quant": quant, "bytes": dst.stat().st_size, "convert_s": round(convert_s, 1),
               "kl_mean": fig["kl_mean"], "kl_max": fig["kl_max"], "top1_agreement": fig["top1_agreement"],
               "greedy_match": fig["greedy_match"], "greedy_prefix_match": fig["greedy_prefix_match"],
               "max_abs_logit_diff": fig["max_abs_logit_diff"], "tokenizer_mismatches": fig["tokenizer_mismatches"],
               "passes_thresholds_except_tokenizer": [f for f in verdict.failures if "tokenizer" not in f] == [],
               "tensor_type_counts": describe_gguf(dst)["tensor_type_counts"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
        dst.unlink()
    Path(args.out).write_text(json.dumps({"model": "Gemma 3 270M (from Q4_K_M GGUF, dequantized)", "results": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
