"""The PyTorch reference runtime: batched greedy decoding against one prompt at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgedistill.artifacts import Artifact
from edgedistill.export.verify import VERIFY_PROMPTS, build_reference
from edgedistill.runtimes.torch_runtime import TorchRuntime


def _runtime(path) -> TorchRuntime:
    return TorchRuntime(Artifact(Path(path), "hf", Path(path) / "config.json"), threads=2)


def test_greedy_batch_equals_one_prompt_at_a_time(tiny_any_arch):
    arch, path = tiny_any_arch
    rt = _runtime(path)
    prompts = [rt.tokenize(p) for p in VERIFY_PROMPTS]
    assert len({len(p) for p in prompts}) > 1  # the batch really is padded
    assert rt.greedy_batch(prompts, 12) == [rt.greedy(p, 12) for p in prompts]


def test_greedy_batch_stops_each_row_after_its_eos(tiny_llama):
    rt = _runtime(tiny_llama)
    prompts = [rt.tokenize(p) for p in VERIFY_PROMPTS[:3]]
    first = rt.greedy_batch(prompts, 4)
    eos = first[0][1]  # pretend the second token of the first row is an end-of-sequence token
    rt.model.generation_config.eos_token_id = eos
    rows = rt.greedy_batch(prompts, 4)
    assert rows[0] == first[0][:2]
    for row in rows:
        assert eos not in row[:-1] and (len(row) == 4 or row[-1] == eos)


def test_reference_redoes_a_prompt_whose_batched_tokens_are_not_the_argmax(tiny_llama, monkeypatch):
    """A near-tie broken differently in the padded batch must not end up in the reference."""
    real = TorchRuntime.greedy_batch

    def off_by_one(self, prompts, n):
        rows = real(self, prompts, n)
        rows[1] = [(rows[1][0] + 1) % 100] + rows[1][1:]
        return rows

    monkeypatch.setattr(TorchRuntime, "greedy_batch", off_by_one)
    ref = build_reference(tiny_llama, new_tokens=6, threads=2)
    rt = _runtime(tiny_llama)
    assert ref.greedy == [rt.greedy(p, 6) for p in ref.prompt_ids]
    for ids, toks, logits in zip(ref.prompt_ids, ref.greedy, ref.logits):
        assert logits.shape[0] == len(ids) + len(toks) - 1
        assert logits[len(ids) - 1:].argmax(-1).tolist() == toks
