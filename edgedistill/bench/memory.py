"""A runtime's own memory beyond the weights and the KV cache, for `edgedistill plan` and the fit check.

peak resident memory = file + KV cache at the context + runtime memory, where runtime memory is

    fixed_mb                                    the process: Python, the runtime library, thread pools
  + weight_copies x file                        onnxruntime prepacks MatMulNBits weights at load
  + logits_bytes x prompt x vocabulary          onnxruntime's graphs return every prompt position's logits
  + attention_bytes x min(prompt, 512) x heads x context
                                                llama.cpp's attention scores (f32) of a prompt batch
  + rotary_copies x rotary tables               ONNX graphs compute RoPE cos/sin tables at load
                                                ([max positions, head_dim / 2] float32, cos and sin, per base)
  + vocab_bytes x vocabulary                    llama.cpp's tokenizer tables (token strings, scores, the
                                                text-to-id map, the piece cache): 42 MiB for Gemma's 262k tokens

``fixed_mb`` (all three), ``logits_bytes`` (onnxruntime) and ``rotary_copies`` (the ONNX runtimes) are
fitted by ``benchmarks/memory_predict_check.py report --fit`` on host-emulated runs; ``attention_bytes``
is the f32 width, ``weight_copies`` onnxruntime's one prepacked copy and ``vocab_bytes`` measured by
``benchmarks/llama_vocab_memory.py`` (vocabulary-only loads of files of 8k and 262k tokens: 166 bytes a
token) — not fitted. The only fitted
runs with large RoPE tables are the quickstart student's ONNX runs (67 MB of tables), so
``rotary_copies`` is not independently checked yet: ``benchmarks/results/memory_predict_check.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MB = 2**20
LLAMA_CPP_UBATCH = 512  # llama.cpp's default n_ubatch: a prompt is processed at most this many tokens at a time
DEFAULT_PROMPT_LEN = 128  # plan's default prompt; export --target and bench's check size the prompt terms with it

RUNTIME_MEMORY = {
    "llama.cpp": {"fixed_mb": 60.9, "weight_copies": 0.0, "logits_bytes": 0.0, "attention_bytes": 4.0, "rotary_copies": 0.0,
                  "vocab_bytes": 166.0},
    "onnxruntime": {"fixed_mb": 339.94, "weight_copies": 1.0, "logits_bytes": 2.55, "attention_bytes": 0.0, "rotary_copies": 1.4,
                    "vocab_bytes": 0.0},
    "ort-genai": {"fixed_mb": 69.83, "weight_copies": 0.0, "logits_bytes": 0.0, "attention_bytes": 0.0, "rotary_copies": 2.18,
                  "vocab_bytes": 0.0},
}
RUNTIME_MEMORY_SOURCE = (
    "fitted on peak RSS of host-emulated bench runs of random-weight llama / gemma3 models and checked on the "
    "quickstart student (benchmarks/memory_predict_check.py, benchmarks/results/memory_predict_check.md)"
)


@dataclass(frozen=True)
class MemoryFacts:
    """What a model's runtime memory depends on besides its file and KV cache."""

    vocab: int = 0
    heads: int = 0
    rotary_bytes: int = 0
    """Bytes of the RoPE cos/sin tables an ONNX graph computes at load (0: none, or stored in the file)."""


def runtime_memory_bytes(runtime: str, weight_bytes: int, facts: MemoryFacts, prompt_len: int, context: int) -> int:
    c = RUNTIME_MEMORY[runtime]
    return int(c["fixed_mb"] * MB + c["weight_copies"] * weight_bytes
               + c["logits_bytes"] * prompt_len * facts.vocab
               + c["attention_bytes"] * min(prompt_len, LLAMA_CPP_UBATCH) * facts.heads * context
               + c["rotary_copies"] * facts.rotary_bytes
               + c["vocab_bytes"] * facts.vocab)


def fit_check(target, file_bytes: int, kv_bytes: int, runtime: str | None = None, facts: MemoryFacts | None = None,
              prompt_len: int = DEFAULT_PROMPT_LEN, context: int | None = None):
    """Does file + KV cache + the runtime's own memory fit ``target``'s budget? (a targets.FitCheck)

    The one check behind `plan`, bench's static check and `export --target`: the runtime's memory is
    ``runtime_memory_bytes`` (its physical terms, fitted and checked on measured runs) for a runtime that
    has terms; the profile's static ``runtime_overhead_mb`` only for one without (PyTorch) or when no
    runtime is named.
    """
    from edgedistill.targets import FitCheck

    if runtime in RUNTIME_MEMORY:
        rt = runtime_memory_bytes(runtime, file_bytes, facts or MemoryFacts(), prompt_len,
                                  context or target.context_length)
        source = f"{runtime}'s memory terms at a {prompt_len}-token prompt"
    else:
        rt = int(target.runtime_overhead_mb * MB)
        source = f"the profile's runtime_overhead_mb{f': no memory terms for {runtime}' if runtime else ''}"
    need = file_bytes + kv_bytes + rt
    return FitCheck(fits=need <= target.memory_budget_bytes, need_mb=need / MB, budget_mb=target.memory_budget_mb,
                    weights_mb=file_bytes / MB, kv_cache_mb=kv_bytes / MB, overhead_mb=rt / MB, overhead_source=source)


def rotary_bases(cfg: dict) -> int:
    """RoPE bases of a config: Gemma 3 has a local and a global one; most models one."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict) and params and all(isinstance(v, dict) for v in params.values()):
        return len(params)
    return 2 if "rope_local_base_freq" in cfg else 1


def facts_from_config(cfg: dict) -> MemoryFacts:
    text = cfg.get("text_config", cfg)
    heads = int(text.get("num_attention_heads") or 0)
    head_dim = int(text.get("head_dim") or (text.get("hidden_size", 0) // heads if heads else 0))
    positions = int(text.get("max_position_embeddings") or 0)
    rotary = rotary_bases(text) * 2 * positions * (head_dim // 2) * 4
    return MemoryFacts(vocab=int(text.get("vocab_size") or 0), heads=heads, rotary_bytes=rotary)


def facts_from_artifact(art) -> MemoryFacts:
    """From an exported artifact: its config / genai_config / GGUF header, and its manifest's rotary note."""
    if art.format == "gguf":
        from gguf import Keys

        from edgedistill.gguf_header import read_gguf_header

        meta = read_gguf_header(art.main_file, with_tensors=False, max_array=0)
        arch = meta.get(Keys.General.ARCHITECTURE)
        # llama.cpp's own converter often writes no <arch>.vocab_size: the token list's length is the vocabulary
        vocab = meta.get(Keys.LLM.VOCAB_SIZE.format(arch=arch)) or len(meta.get(Keys.Tokenizer.LIST, ()))
        return MemoryFacts(vocab=int(vocab), heads=int(meta.get(Keys.Attention.HEAD_COUNT.format(arch=arch)) or 0))
    folder = art.path if art.path.is_dir() else art.path.parent
    if (folder / "config.json").exists():
        facts = facts_from_config(json.loads((folder / "config.json").read_text()))
    else:
        model = json.loads((folder / "genai_config.json").read_text()).get("model", {})
        dec = model.get("decoder", {})
        facts = MemoryFacts(vocab=int(model.get("vocab_size") or 0), heads=int(dec.get("num_attention_heads") or 0))
    return MemoryFacts(facts.vocab, facts.heads, _rotary_from_manifest(folder, facts.rotary_bytes))


def _rotary_from_manifest(folder: Path, from_config: int) -> int:
    """The export says whether the tables are computed at load (and their size) or stored in the file."""
    try:
        note = json.loads((folder / "manifest.json").read_text()).get("format_info", {}).get("rotary_tables")
    except (OSError, json.JSONDecodeError):
        note = None
    if not note:
        return from_config
    if note.startswith("computed at load time (") and " bytes" in note:
        return int(note.split("(", 1)[1].split(" ", 1)[0])
    return 0  # stored in the file: already counted in its size
