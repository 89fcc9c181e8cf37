"""Eval's greedy decoding: one record at a time (timed), or PyTorch models in left-padded batches.

A decode step of a small model on a CPU is bound by reading its weights, so decoding eight records
together costs little more than one (the quickstart's float students: one sequence at 17 tok/s). The
batch must not change the outputs: a padded batch runs other kernel shapes, so a near-tie may break
the other way. Every batched row is therefore checked as export verification checks its reference
(``export.verify.build_reference``): each of its tokens must be the argmax of one unpadded forward pass
over prompt + row, and a row where one is not is decoded again on its own.

Both paths end an output at EOS (not kept), at the token completing a stop string (see
edgedistill/stopping.py) or at ``max_new_tokens``, so they return the same token ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edgedistill.stopping import has_stop


@dataclass
class Decoded:
    """Generated ids per record (EOS dropped) and what was timed."""

    outputs: list[list[int]]
    batched: bool = False
    #: batched rows that failed the argmax check and were decoded again alone
    redone: int = 0
    ttfts: list[float] = field(default_factory=list)
    decode_tokens: int = 0
    decode_seconds: float = 0.0


def generate_outputs(runtime, prompts: list[list[int]], cfg, desc: str = "eval") -> Decoded:
    """Greedy outputs of ``runtime`` for every prompt under ``cfg`` (max_new_tokens, stop, batch_size)."""
    if cfg.batch_size > 1 and hasattr(runtime, "greedy_batch") and runtime.full_logits:
        return _batched(runtime, prompts, cfg, desc)
    return _one_at_a_time(runtime, prompts, cfg, desc)


def _one_at_a_time(runtime, prompts: list[list[int]], cfg, desc: str) -> Decoded:
    eos = runtime.eos_token_ids
    result = Decoded(outputs=[])
    from tqdm import tqdm  # imported when used: `edgedistill --help` reads the eval settings

    for prompt_ids in tqdm(prompts, desc=desc, unit="rec", leave=False):
        t_start = time.perf_counter()
        out_ids, t_first = stream_until_stop(runtime, prompt_ids, cfg.max_new_tokens, cfg.stop, eos)
        t_end = time.perf_counter()
        if t_first is not None:
            result.ttfts.append(t_first - t_start)
            if len(out_ids) > 1:
                result.decode_tokens += len(out_ids) - 1
                result.decode_seconds += t_end - t_first
        result.outputs.append(out_ids)
    return result


def stream_until_stop(runtime, prompt_ids: list[int], max_new_tokens: int, stop, eos) -> tuple[list[int], float | None]:
    """Greedy ids of one prompt (EOS dropped) and when the first token came (None: no token)."""
    out_ids, t_first = [], None
    for tok in runtime.stream(prompt_ids, max_new_tokens):
        if t_first is None:
            t_first = time.perf_counter()
        if tok in eos:
            break
        out_ids.append(int(tok))
        # Decoding the few tokens so far each step is cheap; decoding on past the stop is not.
        if stop and has_stop(runtime.detokenize(out_ids), stop):
            break
    return out_ids, t_first


def _batched(runtime, prompts: list[list[int]], cfg, desc: str) -> Decoded:
    eos = runtime.eos_token_ids
    result = Decoded(outputs=[], batched=True)
    # Similar lengths together: less padding, and the order does not change any output.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    rows: dict[int, list[int]] = {}
    from tqdm import tqdm

    bar = tqdm(total=len(prompts), desc=desc, unit="rec", leave=False)
    for start in range(0, len(order), cfg.batch_size):
        chunk = order[start: start + cfg.batch_size]
        batch = runtime.greedy_batch([prompts[i] for i in chunk], cfg.max_new_tokens, stop=cfg.stop)
        for i, toks in zip(chunk, batch):
            if not _is_argmax(runtime, prompts[i], toks):
                toks, _ = stream_until_stop(runtime, prompts[i], cfg.max_new_tokens, cfg.stop, eos)
                result.redone += 1
            rows[i] = toks[:-1] if toks and toks[-1] in eos else list(toks)  # as streaming: no EOS
        bar.update(len(chunk))
    bar.close()
    result.outputs = [rows[i] for i in range(len(prompts))]
    return result


def _is_argmax(runtime, prompt_ids: list[int], toks: list[int]) -> bool:
    """Every generated token is the argmax of the unpadded logits before it (one forward pass)."""
    if not toks:
        return True
    logits = runtime.logits(prompt_ids + toks[:-1])
    return logits[len(prompt_ids) - 1:].argmax(-1).tolist() == list(toks)
