#!/usr/bin/env python3
"""What llama.cpp keeps in memory per vocabulary token (tokenizer tables): the `vocab_bytes` term of
RUNTIME_MEMORY["llama.cpp"] (edgedistill/bench/memory.py).

    python benchmarks/llama_vocab_memory.py FILE.gguf [FILE.gguf ...]

Each file is loaded with ``vocab_only`` (no weights, no context) in a fresh process and the rise of resident
memory recorded; the slope of the rise over the vocabulary size across files of different vocabularies (the
library's one-time costs are the same for each, so they cancel) is the per-token cost of the tokenizer's
tables (token strings, scores and attributes, the text-to-id map, the piece cache). Measured, not fitted:
`memory_predict_check.py report --fit` keeps it as it is. Give at least two files of different vocabularies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import os, sys, llama_cpp
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
quiet = llama_cpp.llama_log_callback(lambda *a: None)  # kept referenced: llama.cpp calls it later
llama_cpp.llama_log_set(quiet, None)
llama_cpp.llama_backend_init()
def load(path):
    p = llama_cpp.llama_model_default_params(); p.vocab_only = True
    return llama_cpp.llama_model_load_from_file(path.encode(), p)
path = sys.argv[1]
r0 = rss()
m = load(path)
r1 = rss()
n = llama_cpp.llama_n_vocab(llama_cpp.llama_model_get_vocab(m))
print(n, r1 - r0)
"""


def main(files: list[str]) -> None:
    rows = []
    for f in files:
        out = subprocess.run([sys.executable, "-c", CHILD, f], capture_output=True, text=True, check=True)
        vocab, rise = map(int, out.stdout.split()[-2:])
        rows.append({"file": os.path.basename(f), "vocab": vocab, "rss_rise_bytes": rise})
        print(f"{rows[-1]['file']}: vocabulary {vocab:,}, vocab-only load adds {rise / 2**20:.1f} MiB")
    lo, hi = min(rows, key=lambda r: r["vocab"]), max(rows, key=lambda r: r["vocab"])
    if hi["vocab"] == lo["vocab"]:
        sys.exit("error: give files of at least two different vocabulary sizes (the slope needs them)")
    slope = (hi["rss_rise_bytes"] - lo["rss_rise_bytes"]) / (hi["vocab"] - lo["vocab"])
    print(f"per vocabulary token: {slope:.0f} bytes (slope between {lo['file']} and {hi['file']})")
    print(json.dumps({"rows": rows, "bytes_per_token": round(slope, 1), "load": open("/proc/loadavg").read().split()[:3]}))


if __name__ == "__main__":
    main(sys.argv[1:])
