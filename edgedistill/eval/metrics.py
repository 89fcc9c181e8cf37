"""Quality metrics of `edgedistill eval`, each a plain function over lists so tests can check them alone.

- ``accuracy``: share of records whose extracted answer equals the normalised reference (exact match).
- ``bleu`` / ``chrf``: corpus BLEU and chrF from sacrebleu (0-100).
- ``rouge_l``: mean ROUGE-L F1 from rouge-score (0-100 here, like BLEU, so tables read alike).
- ``perplexity``: exp(mean negative log-likelihood of the reference tokens given the prompt), summed
  over all reference tokens of all records (token-weighted, the usual corpus perplexity).
- ``top1_agreement``: share of reference positions where the model's most likely next token equals the
  teacher's (both given the same prompt + reference prefix).
- ``teacher_rouge_l``: ROUGE-L F1 of the model's greedy output against the teacher's greedy output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: metric -> True when larger is better (retention = score / teacher's), False for perplexity
HIGHER_IS_BETTER = {
    "accuracy": True,
    "bleu": True,
    "chrf": True,
    "rouge_l": True,
    "perplexity": False,
    "top1_agreement": True,
    "teacher_rouge_l": True,
}


def accuracy(predictions: list[str | None], references: list[str | None]) -> float:
    """Exact match of already-normalised answers; a missing prediction counts as wrong."""
    if not references:
        return float("nan")
    hits = sum(1 for p, r in zip(predictions, references) if p is not None and r is not None and p == r)
    return hits / len(references)


def bleu(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def chrf(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hypotheses, [references]).score)


_ROUGE = None


def rouge_l(hypotheses: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 x 100 (stemmed)."""
    global _ROUGE
    if not references:
        return float("nan")
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [_ROUGE.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]
    import numpy as np

    return 100.0 * float(np.mean(scores))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    import numpy as np  # here, not at the top: `edgedistill --help` imports this module (eval settings)

    x = logits.astype(np.float64, copy=False)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def reference_nll(position_logits: np.ndarray, target_ids: list[int]) -> np.ndarray:
    """Negative log-likelihood of each target token; ``position_logits[i]`` predicts ``target_ids[i]``."""
    import numpy as np

    logp = log_softmax(position_logits)
    return -logp[np.arange(len(target_ids)), np.asarray(target_ids)]


@dataclass
class PerplexityAccumulator:
    """Sums NLL over reference tokens of many records; ``value`` is the corpus perplexity."""

    nll_sum: float = 0.0
    tokens: int = 0

    def add(self, nll: np.ndarray) -> None:
        import numpy as np

        self.nll_sum += float(np.sum(nll))
        self.tokens += int(len(nll))

    @property
    def value(self) -> float | None:
        if self.tokens == 0:
            return None
        return math.exp(self.nll_sum / self.tokens)


def top1_agreement(model_top1: list[list[int]], teacher_top1: list[list[int]]) -> float | None:
    """Share of positions (over all records) where both argmax tokens are equal."""
    same = total = 0
    for m, t in zip(model_top1, teacher_top1):
        n = min(len(m), len(t))
        same += sum(1 for a, b in zip(m[:n], t[:n]) if a == b)
        total += n
    return same / total if total else None


def retention(score: float | None, teacher_score: float | None, metric: str) -> float | None:
    """Score as a share of the teacher's. For perplexity (lower is better): teacher_ppl / model_ppl."""
    if score is None or teacher_score is None or _bad(score) or _bad(teacher_score):
        return None
    if HIGHER_IS_BETTER.get(metric, True):
        return score / teacher_score if teacher_score else None
    return teacher_score / score if score else None


def _bad(x: float) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))
