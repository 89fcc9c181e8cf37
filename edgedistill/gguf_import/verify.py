"""Check an imported model against llama.cpp on the same GGUF file.

* :func:`compare_tokenization`: our tokenizer's ids vs ``llama_cpp.Llama.tokenize`` on many strings,
  both with special-token parsing off (``split_special_tokens=True`` on our side) and on.
* :func:`compare_logits`: next-token distributions of the imported HF model vs llama.cpp's logits on
  a few prompts, as KL(llama.cpp || HF) per position and top-1 agreement.

Needs llama-cpp-python (the ``llama`` extra).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from edgedistill.errors import EdgeDistillError

DEFAULT_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Translate to German: The weather is nice today.",
    "Once upon a time, in a small village by the sea, there lived",
    "Question: What is 17 times 3?\nAnswer:",
]


def _llama(path: Path, **kw):
    try:
        import llama_cpp
    except ImportError:
        raise EdgeDistillError(
            "comparing with llama.cpp needs llama-cpp-python", hint="pip install 'edgedistill[llama]'"
        ) from None
    return llama_cpp.Llama(str(path), verbose=False, **kw)


@contextlib.contextmanager
def _opened(path: Path, **kw):
    llm = _llama(path, **kw)
    try:
        yield llm
    finally:
        llm.close()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Hide llama.cpp's C-level warnings (e.g. "Added a BOS token ... 2 BOS tokens" for probe strings
    that start with "<bos>"), which bypass Python's logging."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner): leave it be
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def compare_tokenization(gguf_path: str | os.PathLike, tokenizer, strings: list[str], add_bos: bool = True) -> dict:
    """Token ids of ``tokenizer`` vs llama.cpp for every string, special parsing off and on."""
    result = {"strings": len(strings), "checked": 0, "agree": 0, "mismatches": []}
    with _quiet_native_stderr(), _opened(Path(gguf_path), vocab_only=True) as llm:
        for special in (False, True):
            for s in strings:
                ref = llm.tokenize(s.encode("utf-8"), add_bos=add_bos, special=special)
                got = tokenizer(s, add_special_tokens=add_bos, split_special_tokens=not special)["input_ids"]
                result["checked"] += 1
                if list(ref) == list(got):
                    result["agree"] += 1
                elif len(result["mismatches"]) < 20:
                    result["mismatches"].append({"text": s, "special": special, "llama_cpp": list(ref), "ours": list(got)})
    return result


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare_logits(gguf_path: str | os.PathLike, hf_dir: str | os.PathLike, prompts: list[str] | None = None) -> dict:
    """KL(llama.cpp || HF) of next-token distributions at every position of each prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = prompts or DEFAULT_PROMPTS
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    rows = []
    with _quiet_native_stderr(), _opened(Path(gguf_path), logits_all=True, n_ctx=512, n_threads=os.cpu_count() or 1) as llm:
        for prompt in prompts:
            ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
            llm.reset()
            llm.eval(ids)
            ref = np.array(llm.scores[: len(ids)], dtype=np.float32)
            with torch.no_grad():
                ours = model(torch.tensor([ids])).logits[0].float().numpy()
            lp, lq = _log_softmax(ref), _log_softmax(ours)
            kl = (np.exp(lp) * (lp - lq)).sum(-1)
            rows.append(
                {
                    "prompt": prompt,
                    "tokens": len(ids),
                    "same_ids_from_our_tokenizer": tok(prompt)["input_ids"] == list(ids),
                    "kl_mean": float(kl.mean()),
                    "kl_max": float(kl.max()),
                    "top1_agree": float((ref.argmax(-1) == ours.argmax(-1)).mean()),
                }
            )
    return {
        "prompts": rows,
        "kl_mean": float(np.mean([r["kl_mean"] for r in rows])),
        "kl_max": float(np.max([r["kl_max"] for r in rows])),
        "top1_agree": float(np.mean([r["top1_agree"] for r in rows])),
    }
