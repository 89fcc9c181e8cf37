"""Several sequences through one llama.cpp context at once (the GGUF teacher's ``parallel`` setting).

Decoding one sequence on a CPU is bound by reading the weights: each step streams the whole model
for one token. A ``llama_decode`` whose batch holds the next token of N sequences reads the weights
once for all N, so N answers cost little more than one (benchmarks/results/generate_batched.md).

- The context is made with the ``Llama`` object's own settings (kernels, KV types, attention) except
  that it holds ``n_seq`` sequences of ``n_ctx`` tokens each, in separate KV streams (``kv_unified``
  off: a sequence attends over its own cells only, as it would alone).
- Slots are refilled as sequences finish: a short answer frees its slot for the next request at once,
  and the new prompt's prefill rides in the same ``llama_decode`` as the other slots' next tokens. A
  finished sequence's cells are dropped with ``llama_memory_seq_rm``.
- Each request brings its own sampler chain (:func:`sampler_chain`) and a ``step(token) -> done``
  callback that applies its stopping rules; the engine knows nothing of text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgedistill.errors import EdgeDistillError


def top_logprobs(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` most likely ids of one logits row and their log-probabilities, most likely first."""
    s = np.asarray(scores, dtype=np.float32)
    top = s.max()
    log_z = top + np.log(np.exp(s - top).sum())
    idx = np.argpartition(-s, k)[:k]
    idx = idx[np.argsort(-s[idx])]
    return [(int(i), float(s[i] - log_z)) for i in idx]


def sampler_chain(lib, n_vocab: int, *, temperature: float, seed: int, top_p: float = 0.95, top_k: int = 40,
                  min_p: float = 0.05, typical_p: float = 1.0, repeat_penalty: float = 1.0,
                  frequency_penalty: float = 0.0, presence_penalty: float = 0.0, last_n: int = 64):
    """A llama.cpp sampler chain built as ``Llama._init_sampler`` (llama-cpp-python 0.3.36) builds it for
    ``create_completion``'s arguments (same defaults), so a sequence draws exactly the tokens that
    ``create_completion`` would from the same logits: penalties, then greedy at temperature 0, else
    top-k, typical, top-p, min-p, temperature and a dist sampler seeded with ``seed``.
    Free it with ``llama_sampler_free``."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    add = lambda s: lib.llama_sampler_chain_add(chain, s)  # noqa: E731 - the chain owns what it is given
    add(lib.llama_sampler_init_penalties(n_vocab, last_n, repeat_penalty, frequency_penalty, presence_penalty))
    if temperature == 0:
        add(lib.llama_sampler_init_greedy())
        return chain
    add(lib.llama_sampler_init_top_k(top_k))
    add(lib.llama_sampler_init_typical(typical_p, 1))
    add(lib.llama_sampler_init_top_p(top_p, 1))
    add(lib.llama_sampler_init_min_p(min_p, 1))
    add(lib.llama_sampler_init_temp(temperature))
    add(lib.llama_sampler_init_dist(seed))
    return chain


@dataclass
class Request:
    """One sequence to decode. ``step(token)`` is called with every sampled token and returns True
    when the sequence is finished (that token is then not decoded); ``sampling``: the keyword
    arguments of :func:`sampler_chain`."""

    prompt: list[int]
    step: Callable[[int], bool]
    sampling: dict
    #: filled in: the top-k log-probabilities of every sampling step (when ``run(top_k=...)``)
    steps: list[list[tuple[int, float]]] = field(default_factory=list)


@dataclass
class _Slot:
    seq: int  # llama.cpp seq_id (the slot's index)
    req: Request
    sampler: object
    todo: list[int]  # tokens to decode next: the prompt (or what is left of it), then the last sampled token
    pos: int = 0  # position of todo[0]
    row: int = -1  # this slot's logits row in the last batch, -1 when it had none


class ParallelDecoder:
    """A second llama.cpp context over ``llm``'s model for ``n_seq`` sequences of ``n_ctx`` tokens each."""

    def __init__(self, llm, n_seq: int, n_ctx: int, unified: bool = False):
        import llama_cpp

        self.lib = lib = llama_cpp
        self.n_seq, self.n_ctx = n_seq, n_ctx
        self.n_vocab = llm.n_vocab()
        params = llm.context_params  # a ctypes struct: copy it, then size it for n_seq sequences
        params = type(params).from_buffer_copy(params)
        params.n_ctx = n_ctx * n_seq
        params.n_seq_max = n_seq
        params.kv_unified = unified
        # one decode holds a token of every other slot plus a prompt: room for a whole n_ctx prompt
        self.n_batch = params.n_batch = params.n_ubatch = max(int(params.n_batch), n_ctx + n_seq)
        self.ctx = lib.llama_init_from_model(llm.model, params)
        if not self.ctx:
            raise EdgeDistillError(f"llama.cpp could not make a context for {n_seq} sequences of {n_ctx} tokens",
                                   hint="lower the teacher's parallel setting or n_ctx")
        self.n_ctx_seq = int(lib.llama_n_ctx_seq(self.ctx))
        self.mem = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(self.n_batch, 0, 1)

    def run(self, requests: list[Request], top_k: int = 0) -> None:
        """Decode every request to its end (``step`` says when), at most ``n_seq`` at a time."""
        lib = self.lib
        pending = list(reversed(requests))  # pop() takes them in order
        slots: list[_Slot | None] = [None] * self.n_seq
        try:
            while pending or any(slots):
                for i, s in enumerate(slots):
                    if s is None and pending:
                        req = pending.pop()
                        if not req.prompt:
                            raise EdgeDistillError("a request with no prompt tokens cannot be decoded")
                        slots[i] = _Slot(i, req, sampler_chain(lib, self.n_vocab, **req.sampling), list(req.prompt))
                active = [s for s in slots if s is not None]
                self._decode(active)
                for s in active:
                    if s.row < 0:
                        continue  # its prompt is not all in yet
                    if top_k:
                        row = lib.llama_get_logits_ith(self.ctx, s.row)
                        s.req.steps.append(top_logprobs(np.ctypeslib.as_array(row, shape=(self.n_vocab,)), top_k))
                    token = int(lib.llama_sampler_sample(s.sampler, self.ctx, s.row))
                    if s.req.step(token):
                        self._free(s)
                        slots[s.seq] = None
                    else:
                        s.todo = [token]
        finally:
            for s in slots:
                if s is not None:
                    self._free(s)

    def _decode(self, active: list[_Slot]) -> None:
        """One ``llama_decode``: every decoding slot's next token, and prompt tokens up to the batch size.

        Tokens go in slot (seq_id) order: with separate KV streams llama.cpp splits a batch into
        micro-batches of consecutive seq_ids taking equally many tokens each, so in this order one
        micro-batch holds a token of every slot and only the rest of a long prefill needs more."""
        budget = self.n_batch - sum(len(s.todo) == 1 for s in active)  # one-token steps never wait
        take = {}
        for s in active:
            n = 1 if len(s.todo) == 1 else min(len(s.todo), max(budget, 0))
            budget -= n if len(s.todo) > 1 else 0
            take[s.seq] = n
        b = self.batch
        b.n_tokens = 0
        for s in active:
            s.row = -1
            n = take[s.seq]
            if s.pos + n > self.n_ctx_seq:
                raise EdgeDistillError(f"sequence of {s.pos + n} tokens exceeds the context of "
                                       f"{self.n_ctx_seq} per sequence")
            for k in range(n):
                i = b.n_tokens
                b.token[i], b.pos[i], b.n_seq_id[i], b.seq_id[i][0] = s.todo[k], s.pos + k, 1, s.seq
                b.logits[i] = last = k == len(s.todo) - 1  # logits only where a token is sampled next
                if last:
                    s.row = i
                b.n_tokens = i + 1
            s.pos += n
            s.todo = s.todo[n:]
        rc = self.lib.llama_decode(self.ctx, b)
        if rc != 0:
            raise EdgeDistillError(f"llama_decode failed with code {rc} ({b.n_tokens} tokens, "
                                   f"{len(active)} sequences)")

    def _free(self, s: _Slot) -> None:
        self.lib.llama_sampler_free(s.sampler)
        self.lib.llama_memory_seq_rm(self.mem, s.seq, -1, -1)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
