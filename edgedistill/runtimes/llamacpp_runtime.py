"""llama.cpp runtime (llama-cpp-python): loads a GGUF artifact or a bare .gguf file.

* ``tokenize`` uses llama.cpp's own tokenizer from the GGUF metadata, with ``special=True`` so that
  special tokens written in the text (``<|user|>``, ``<end_of_turn>``) become their single ids, as a
  Hugging Face tokenizer does; the BOS token is added when ``add_special_tokens`` and the file's
  ``tokenizer.ggml.add_bos_token`` say so.
* ``n_ctx`` is 2048, or the model's trained context when that is shorter.
* ``logits(ids)`` evaluates the whole sequence in one batch and returns every position's logits.
* ``stream(ids, n)`` prefills once, then runs exactly one single-token decode per further token
  (greedy argmax of the last logits), so a benchmark can time the first token and each later one.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from edgedistill.artifacts import Artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.runtimes.base import Runtime


def _trained_context(path) -> int | None:
    """``{arch}.context_length`` from the GGUF header: a larger n_ctx only makes llama.cpp warn."""
    from gguf import Keys

    from edgedistill.gguf_header import read_gguf_header

    try:
        header = read_gguf_header(path, with_tensors=False, max_array=0)
    except EdgeDistillError:
        return None  # llama.cpp's own loader reports the problem
    value = header.arch_get(Keys.LLM.CONTEXT_LENGTH)
    return int(value) if isinstance(value, int) and value > 0 else None


class LlamaCppRuntime(Runtime):
    name = "llama.cpp"
    full_logits = True
    has_decode_only_mode = True

    def __init__(self, artifact: Artifact, threads: int | None = None, n_ctx: int = 2048,
                 decode_only: bool = False):
        super().__init__(artifact, threads)
        # decode_only (the benchmark): without logits_all the prefill computes the output layer for the
        # last position only, and llama.cpp does not reserve an n_ctx x n_vocab logits buffer (2 GiB for
        # a 262k vocabulary at n_ctx 2048), which would inflate TTFT and trip memory budgets.
        self.full_logits = not decode_only
        try:
            import llama_cpp
        except ImportError:
            raise EdgeDistillError(
                "the llama.cpp runtime needs llama-cpp-python", hint="pip install 'edgedistill[llama]'"
            ) from None
        self._lib = llama_cpp
        path = str(artifact.main_file)
        n_ctx = min(n_ctx, _trained_context(artifact.main_file) or n_ctx)
        try:
            # logits_all: logits() needs every position (perplexity, verification). It only makes the
            # prefill compute the output layer for all positions; single-token decodes are unaffected.
            self.llm = llama_cpp.Llama(
                model_path=path,
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads or max(1, (os.cpu_count() or 1)),
                logits_all=self.full_logits,
                # the benchmark decodes as llama.cpp's own tools do: their default flash attention `auto`
                # turns it on for CPU (llama-cpp-python's default is off: the quickstart student decoded
                # 18% slower without it, benchmarks/results/bench_decode_vs_llama_bench.md)
                flash_attn=decode_only,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise EdgeDistillError(
                f"llama.cpp could not load {path}: {exc}",
                hint="the file may be truncated, or from a newer llama.cpp than the installed llama-cpp-python",
            ) from None
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        self.n_ctx = self.llm.n_ctx()
        from gguf import Keys

        meta = self.llm.metadata  # llama.cpp gives every value as text
        self.add_bos = meta.get(Keys.Tokenizer.ADD_BOS, "false") == "true"
        self.add_eos = meta.get(Keys.Tokenizer.ADD_EOS, "false") == "true"

    # ------------------------------------------------------------------------------------ tokenizer

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # Llama.tokenize(add_bos=...) adds BOS only when the vocab says so (add_bos_token);
        # add_special_tokens=False turns it off, as in HF.
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=True)
        if add_special_tokens and self.add_eos and (not ids or ids[-1] != self.llm.token_eos()):
            ids.append(self.llm.token_eos())
        return list(ids)

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    @property
    def eos_token_ids(self) -> set[int]:
        out = {self.llm.token_eos()}
        eot = self._lib.llama_vocab_eot(self._vocab)
        if eot >= 0:
            out.add(int(eot))
        return {int(t) for t in out if t >= 0}

    # -------------------------------------------------------------------------------------- compute

    def _check_len(self, n: int) -> None:
        if n > self.n_ctx:
            raise EdgeDistillError(f"sequence of {n} tokens exceeds the llama.cpp context of {self.n_ctx}")

    def logits(self, ids: list[int]) -> np.ndarray:
        if not ids:
            raise EdgeDistillError("logits() needs at least one token id")
        self._check_len(len(ids))
        self.llm.reset()
        self.llm.eval(list(ids))
        if not self.full_logits:
            return np.array(self._last_logits(), dtype=np.float32, copy=True)[None, :]
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32, copy=True)

    def _last_logits(self) -> np.ndarray:
        """Logits of the last evaluated position (a view; copy before the next eval)."""
        if self.full_logits:
            return self.llm.scores[self.llm.n_tokens - 1]
        # Without logits_all llama-cpp-python does not fill `scores`; read llama.cpp's output row.
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def stream(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        if not ids:
            raise EdgeDistillError("stream() needs at least one prompt token")
        self._check_len(len(ids) + max_new_tokens)
        if not self.full_logits:  # the benchmark: decode as an app does
            yield from self._stream_native(ids, max_new_tokens)
            return
        eos = self.eos_token_ids
        self.llm.reset()
        self.llm.eval(list(ids))  # prefill: one batched decode
        for step in range(max_new_tokens):
            tok = int(np.argmax(self._last_logits()))
            yield tok
            if tok in eos or step == max_new_tokens - 1:
                return
            self.llm.eval([tok])  # exactly one decode per further token

    def _stream_native(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """Greedy decode through llama.cpp's sampler chain, as an app on a device runs it.

        The token is chosen in C (``llama_sampler_sample`` with a greedy sampler on the last logits row)
        and each step is one ``llama_decode`` of a one-token batch: no logits row crosses into Python
        and none of llama-cpp-python's per-token bookkeeping runs. With a 262k vocabulary that row is
        1 MiB per token, a visible share of a small student's step. Same tokens as ``stream`` (argmax).
        """
        lib, ctx = self._lib, self.llm.ctx
        if getattr(self, "_sampler", None) is None:
            self._sampler = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
            lib.llama_sampler_chain_add(self._sampler, lib.llama_sampler_init_greedy())
        eos = self.eos_token_ids
        self.llm.reset()
        self.llm.eval(list(ids))  # prefill: one batched decode (clears the KV cache first)
        token = (lib.llama_token * 1)()
        n_past = len(ids)
        try:
            for step in range(max_new_tokens):
                tok = int(lib.llama_sampler_sample(self._sampler, ctx, -1))
                yield tok
                if tok in eos or step == max_new_tokens - 1:
                    return
                token[0] = tok
                rc = lib.llama_decode(ctx, lib.llama_batch_get_one(token, 1))  # positions follow the cache
                if rc != 0:
                    raise EdgeDistillError(f"llama_decode failed with code {rc} at token {n_past + 1}")
                n_past += 1
        finally:
            self.llm.n_tokens = n_past  # keep llama-cpp-python's view of the cache consistent

    def close(self) -> None:
        sampler = getattr(self, "_sampler", None)
        if sampler is not None:
            self._lib.llama_sampler_free(sampler)
            self._sampler = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
