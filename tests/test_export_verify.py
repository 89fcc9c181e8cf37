"""Verification figures and verdicts (edgedistill.export.verify) on synthetic runtime outputs."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from edgedistill.export.formats import QuantSpec
from edgedistill.export.verify import TOKENIZER_CORPUS, ArtifactOutputs, Reference, compare, judge

SPEC = QuantSpec("t", 8, max_kl=0.01, min_greedy_match=0.75, max_abs_logit_diff=0.5)
V = 10


def _peaked(tokens: list[int], vocab: int = V, rows_before: int = 0, seed: int = 0) -> np.ndarray:
    """Logits whose argmax at row rows_before-1+j is tokens[j] (earlier rows random)."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(rows_before + len(tokens) - 1, vocab)).astype(np.float32)
    for j, tok in enumerate(tokens):
        row = rows_before - 1 + j
        out[row] = rng.normal(size=vocab)
        out[row, tok] = 10.0
    return out


def _ref(greedy=((1, 2, 3, 4),), prompt_len=3) -> Reference:
    prompts = [list(range(prompt_len)) for _ in greedy]
    greedy = [list(g) for g in greedy]
    logits = [_peaked(g, rows_before=prompt_len, seed=i) for i, g in enumerate(greedy)]
    corpus = [[1, i] for i in range(len(TOKENIZER_CORPUS))]
    return Reference(prompts, greedy, logits, corpus, new_tokens=4)


def _same(ref: Reference, **changes) -> ArtifactOutputs:
    out = ArtifactOutputs([l.copy() for l in ref.logits], [list(g) for g in ref.greedy],
                          [list(g) for g in ref.greedy], [list(c) for c in ref.corpus_ids])
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def test_sequences_are_prompt_plus_continuation_minus_last():
    ref = _ref()
    assert ref.sequences == [[0, 1, 2, 1, 2, 3]]
    assert ref.logits[0].shape[0] == len(ref.sequences[0])


def test_identical_outputs_pass_with_zero_differences():
    ref = _ref()
    fig = compare(ref, _same(ref))
    assert fig["kl_mean"] == pytest.approx(0, abs=1e-12) and fig["max_abs_logit_diff"] == 0
    for k in ("greedy_match", "greedy_prefix_match", "greedy_free_match", "stream_consistency", "top1_agreement"):
        assert fig[k] == 1.0, k
    v = judge(fig, SPEC)
    assert v.passed and v.failures == []


def test_kl_matches_a_hand_computed_value():
    t = np.log(np.array([[0.5, 0.25, 0.25]], np.float32))
    a = np.log(np.array([[0.25, 0.5, 0.25]], np.float32))
    ref = Reference([[0]], [[0]], [t], [[1, i] for i in range(len(TOKENIZER_CORPUS))], 1)
    fig = compare(ref, _same(ref, logits=[a]))
    expected = 0.5 * np.log(2) + 0.25 * np.log(0.5)
    assert fig["kl_mean"] == pytest.approx(expected, rel=1e-5) and fig["kl_max"] == pytest.approx(expected, rel=1e-5)
    assert fig["top1_agreement"] == 0.0 and fig["greedy_match"] == 0.0


def test_padded_vocabulary_is_compared_over_the_common_range():
    ref = _ref()
    t = ref.logits[0]
    padded = np.concatenate([t, np.full((t.shape[0], 4), -50.0, np.float32)], axis=1)  # 4 extra rows
    fig = compare(ref, _same(ref, logits=[padded]))
    assert fig["vocab_torch"] == V and fig["vocab_artifact"] == V + 4 and fig["vocab_compared"] == V
    assert fig["kl_mean"] == pytest.approx(0, abs=1e-9) and fig["max_abs_logit_diff"] == 0
    assert fig["greedy_match"] == 1.0
    # and the other way round: the torch model is the padded one
    ref2 = _ref()
    ref2.logits = [padded]
    fig2 = compare(ref2, _same(ref2, logits=[t]))
    assert fig2["vocab_compared"] == V and fig2["kl_mean"] == pytest.approx(0, abs=1e-9)


def test_teacher_forced_greedy_does_not_cascade_but_free_running_does():
    ref = _ref(greedy=[(1, 2, 3, 4), (5, 6, 7, 8)])
    # artifact picks a different 2nd token on prompt 0 (one near-tie), then diverges when free-running
    flipped = ref.logits[0].copy()
    flipped[3, 9] = 20.0  # row of the 2nd continuation token
    art = _same(ref, logits=[flipped, ref.logits[1].copy()], greedy=[[1, 9, 0, 0], [5, 6, 7, 8]],
                self_argmax=[[1, 9, 0, 0], [5, 6, 7, 8]])
    fig = compare(ref, art)
    assert fig["greedy_match"] == pytest.approx(7 / 8)  # teacher-forced: only the flipped step differs
    assert fig["greedy_prefix_match"] == pytest.approx((1 / 4 + 1) / 2)
    assert fig["greedy_free_match"] == pytest.approx(5 / 8)
    # stopping early (EOS) counts the missing positions as different
    fig = compare(ref, _same(ref, greedy=[[1, 2], [5, 6, 7, 8]], self_argmax=[[1, 2], [5, 6, 7, 8]]))
    assert fig["greedy_free_match"] == pytest.approx(6 / 8)


def test_broken_kv_cache_fails_stream_consistency():
    ref = _ref()
    v = judge(compare(ref, _same(ref, greedy=[[1, 5, 5, 5]], self_argmax=[[1, 2, 3, 4]])), SPEC)
    assert v.figures["stream_consistency"] == 0.25 and not v.passed
    assert "KV-cache decoding is broken" in " ".join(v.failures)


def test_each_threshold_can_fail():
    ref = _ref()
    noisy = [-l for l in ref.logits]  # every argmax becomes the least likely token
    v = judge(compare(ref, _same(ref, logits=noisy)), SPEC)
    assert not v.passed
    text = " ".join(v.failures)
    assert "mean KL" in text and "max |logit difference|" in text and "greedy agreement" in text


def test_max_abs_threshold_is_skipped_when_none():
    ref = _ref()
    shifted = [l + 0.7 for l in ref.logits]  # a constant shift leaves the distribution unchanged
    fig = compare(ref, _same(ref, logits=shifted))
    assert fig["kl_mean"] == pytest.approx(0, abs=1e-9) and fig["max_abs_logit_diff"] == pytest.approx(0.7, rel=1e-4)
    assert not judge(fig, SPEC).passed
    assert judge(fig, QuantSpec("q", 4, max_kl=0.01, min_greedy_match=0.75)).passed


def test_tokenizer_mismatch_fails_and_shows_an_example():
    ref = _ref()
    got = [list(ids) for ids in ref.corpus_ids]
    got[3] = [1, 99]
    v = judge(compare(ref, _same(ref, corpus_ids=got)), SPEC)
    assert not v.passed
    assert v.figures["tokenizer_mismatches"] == 1
    assert repr(TOKENIZER_CORPUS[3]) in v.failures[0]


def test_non_finite_or_misshaped_artifact_logits_fail():
    ref = _ref()
    v = judge(compare(ref, _same(ref, logits=[np.full_like(ref.logits[0], np.nan)])), SPEC)
    assert not v.passed and "mean KL inf" in v.failures[0]
    v = judge(compare(ref, _same(ref, logits=[ref.logits[0][-1:]])), SPEC)
    assert not v.passed


def test_tokenizer_corpus_is_varied():
    text = "".join(TOKENIZER_CORPUS)
    scripts = {unicodedata.name(c).split()[0] for c in text if c.isalpha() and ord(c) > 127}
    assert {"CYRILLIC", "GREEK", "ARABIC", "HEBREW", "DEVANAGARI", "CJK", "HIRAGANA", "HANGUL", "THAI"} <= scripts
    assert any(ord(c) >= 0x1F300 for c in text)  # emoji
    assert "    " in text and "\t" in text and "\n\n" in text and "\r\n" in text  # whitespace runs
    assert any(ch.isdigit() for ch in text) and "def " in text and "{" in text  # digits, code


def test_tiny_tokenizer_roundtrips_the_corpus(tiny_tokenizer):
    # The torch reference must be able to tokenize every corpus text (byte-level: nothing unknown).
    for t in TOKENIZER_CORPUS:
        ids = tiny_tokenizer(t).input_ids
        assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == t


def test_older_call_with_prompt_logits_uses_free_running_greedy():
    ref = _ref(greedy=[(1, 2, 3, 4)])
    prompt_rows = [ref.logits[0][: len(ref.prompt_ids[0])].copy()]
    fig = compare(ref, prompt_rows, [[1, 2, 9, 9]], ref.corpus_ids)
    assert fig["greedy_match_kind"] == "free-running" and fig["greedy_match"] == 0.5
    assert fig["positions"] == len(ref.prompt_ids[0]) and fig["kl_mean"] == pytest.approx(0, abs=1e-9)
    assert fig["stream_consistency"] is None
    assert judge(fig, QuantSpec("q", 4, max_kl=0.01, min_greedy_match=0.5)).passed


def test_stream_floor_comes_from_the_spec_when_it_sets_one():
    ref = _ref()
    fig = compare(ref, _same(ref, greedy=[[1, 5, 5, 5]], self_argmax=[[1, 5, 3, 4]]))  # 50% self-agreement
    assert fig["stream_consistency"] == 0.5
    dynamic = QuantSpec("int8", 8, max_kl=10.0, min_greedy_match=0.25, min_stream_consistency=0.3)
    default = QuantSpec("fp32", 32, max_kl=10.0, min_greedy_match=0.25)
    assert judge(fig, dynamic).thresholds["min_stream_consistency"] == 0.3 and judge(fig, dynamic).passed
    assert judge(fig, default).thresholds["min_stream_consistency"] == 0.9
    assert any("KV-cache" in f for f in judge(fig, default).failures)

