"""Metric functions of edgedistill.eval: values checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgedistill.eval import metrics as M


def test_accuracy_counts_missing_predictions_as_wrong():
    assert M.accuracy(["a", None, "c", "d"], ["a", "b", "x", "d"]) == 0.5


def test_rouge_l_identical_and_disjoint():
    assert M.rouge_l(["the cat sat"], ["the cat sat"]) == pytest.approx(100.0)
    assert M.rouge_l(["dog"], ["the cat sat"]) == 0.0
    # LCS "the sat" (2 of 3 words both ways) -> F1 2/3
    assert M.rouge_l(["the dog sat"], ["the cat sat"]) == pytest.approx(200 / 3)


def test_bleu_and_chrf_ranges():
    assert M.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert M.chrf(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert M.chrf(["zzz"], ["the cat sat on the mat"]) < 10


def test_reference_nll_and_perplexity_of_uniform_logits():
    vocab = 8
    logits = np.zeros((3, vocab), dtype=np.float32)
    nll = M.reference_nll(logits, [1, 2, 3])
    assert np.allclose(nll, math.log(vocab))
    acc = M.PerplexityAccumulator()
    acc.add(nll)
    assert acc.value == pytest.approx(vocab)
    # a confident correct prediction lowers perplexity
    sharp = np.full((1, vocab), -10.0)
    sharp[0, 4] = 10.0
    acc.add(M.reference_nll(sharp, [4]))
    assert acc.tokens == 4 and acc.value < vocab


def test_log_softmax_is_stable_for_large_logits():
    out = M.log_softmax(np.array([[1000.0, 0.0]]))
    assert np.isfinite(out).all() and out[0, 0] == pytest.approx(0.0)


def test_top1_agreement_is_position_weighted():
    assert M.top1_agreement([[1, 2, 3], [4]], [[1, 0, 3], [5]]) == pytest.approx(2 / 4)
    assert M.top1_agreement([], []) is None


def test_retention_directions():
    assert M.retention(30.0, 40.0, "rouge_l") == pytest.approx(0.75)
    # perplexity: lower is better, retention = teacher_ppl / model_ppl
    assert M.retention(20.0, 10.0, "perplexity") == pytest.approx(0.5)
    assert M.retention(None, 10.0, "accuracy") is None
    assert M.retention(float("nan"), 10.0, "accuracy") is None
