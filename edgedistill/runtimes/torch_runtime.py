"""PyTorch (transformers) runtime: the reference every exported artifact is compared with."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from edgedistill.artifacts import Artifact
from edgedistill.runtimes.base import Runtime
from edgedistill.stopping import stop_token_index, stopping_criteria


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, artifact: Artifact, threads: int | None = None):
        super().__init__(artifact, threads)
        import torch

        from edgedistill.models import load_causal_lm

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model, self.tokenizer = load_causal_lm(artifact.path, what="model")

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def eos_token_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, (list, tuple)) else {eos}

    def logits(self, ids: list[int]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(torch.tensor([ids]))
        return out.logits[0].float().numpy()

    def stream(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        torch = self._torch
        eos = self.eos_token_ids
        past = None
        inp = torch.tensor([ids])
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                out = self.model(inp, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = int(out.logits[0, -1].argmax())
                yield tok
                if tok in eos:
                    return
                inp = torch.tensor([[tok]])

    def greedy_batch(self, prompts: list[list[int]], max_new_tokens: int,
                     stop: list[str] | None = None) -> list[list[int]]:
        """Greedy continuations of several prompts at once (left-padded batch, ``generate``).

        Each ends after its EOS, after the token that completes a ``stop`` string (see
        edgedistill/stopping.py) or at ``max_new_tokens``. A padded batch runs other kernel shapes than
        one prompt alone, so a near-tie may break the other way than in ``greedy``; callers that need
        the unbatched answer check it (see ``export.verify.build_reference``).
        """
        torch = self._torch
        from transformers import GenerationConfig

        if not prompts:
            return []
        eos = sorted(self.eos_token_ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        # An explicit config: the model's own generation_config may ask for sampling or a penalty.
        config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=0,
                                  eos_token_id=eos, pad_token_id=pad,
                                  bos_token_id=self.model.generation_config.bos_token_id)
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # generate() reports every default it fills in from the model
        try:
            with torch.inference_mode():
                out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                          stopping_criteria=stopping_criteria(self.tokenizer, stop, width))
        finally:
            hf_logging.set_verbosity(level)
        result = []
        for row in out[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in self.eos_token_ids), len(row))
            at = stop_token_index(row[:cut], self.detokenize, stop)
            result.append(row[:cut] if at is None else row[: at + 1])
        return result

