"""PyTorch (transformers) runtime: the reference every exported artifact is compared with."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from edgedistill.artifacts import Artifact
from edgedistill.runtimes.base import Runtime


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
