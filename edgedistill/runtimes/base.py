"""The runtime interface shared by export verification, eval and bench."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

import numpy as np

from edgedistill.artifacts import Artifact


class Runtime(ABC):
    """A loaded model in one inference runtime.

    Token ids are plain lists of ints; logits are float32 numpy arrays. ``stream`` yields greedy tokens
    one at a time so the benchmark can time the first token and every later one.
    """

    name: str = ""
    #: whether ``logits`` returns every position (needed for perplexity) or only the last one
    full_logits: bool = True

    def __init__(self, artifact: Artifact, threads: int | None = None):
        self.artifact = artifact
        self.threads = threads

    @abstractmethod
    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids as this runtime's own tokenizer produces them."""

    @abstractmethod
    def detokenize(self, ids: list[int]) -> str: ...

    @abstractmethod
    def logits(self, ids: list[int]) -> np.ndarray:
        """Next-token logits, shape [len(ids), vocab] (or [1, vocab] when not ``full_logits``)."""

    @abstractmethod
    def stream(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """Greedy decoding, one new token id at a time; stops at ``max_new_tokens`` or EOS."""

    @property
    @abstractmethod
    def eos_token_ids(self) -> set[int]: ...

    def greedy(self, ids: list[int], max_new_tokens: int) -> list[int]:
        return list(self.stream(ids, max_new_tokens))

    def close(self) -> None:
        """Free the model; the default relies on garbage collection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
