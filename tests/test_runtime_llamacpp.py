"""LlamaCppRuntime: tokenization flags, logits shape, one decode per streamed token, EOS, close."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.artifacts import detect_artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.runtimes import open_runtime
from edgedistill.runtimes.llamacpp_runtime import LlamaCppRuntime


@pytest.fixture(scope="module")
def llama_gguf(tiny_llama_gguf):
    return tiny_llama_gguf


def test_open_runtime_picks_llamacpp(llama_gguf):
    with open_runtime(llama_gguf, threads=1) as rt:
        assert isinstance(rt, LlamaCppRuntime) and rt.name == "llama.cpp"


def test_tokenize_bos_and_special_tokens(llama_gguf, tiny_tokenizer):
    with open_runtime(llama_gguf) as rt:
        text = "<|user|>\nhi there<|end|>\n<|assistant|>\n"
        assert rt.tokenize(text) == tiny_tokenizer(text).input_ids
        assert rt.tokenize(text, add_special_tokens=False) == tiny_tokenizer(text, add_special_tokens=False).input_ids
        assert rt.tokenize("abc")[0] == tiny_tokenizer.bos_token_id
        assert rt.tokenize("abc", add_special_tokens=False)[0] != tiny_tokenizer.bos_token_id
        ids = rt.tokenize("café 東京 🙂", add_special_tokens=False)
        assert rt.detokenize(ids) == "café 東京 🙂"
        assert rt.eos_token_ids == {tiny_tokenizer.eos_token_id}


def test_logits_shape_and_consistency_with_stream(llama_gguf):
    with open_runtime(llama_gguf) as rt:
        ids = rt.tokenize("The quick brown fox")
        full = rt.logits(ids)
        assert full.shape == (len(ids), rt.n_vocab) and full.dtype == np.float32
        # streamed greedy tokens equal the argmax of a fresh full evaluation of the growing sequence
        out = list(rt.stream(ids, 5))
        seq = list(ids)
        for tok in out:
            assert tok == int(rt.logits(seq)[-1].argmax())
            seq.append(tok)


def test_decode_only_mode_streams_the_same_tokens(llama_gguf):
    """The benchmark opens llama.cpp without logits_all; greedy tokens must not change."""
    ids = list(range(5, 30))
    with open_runtime(llama_gguf, threads=1) as full:
        want = full.greedy(ids, 12)
        want_last = full.logits(ids)[-1]
    with open_runtime(llama_gguf, threads=1, decode_only=True) as rt:
        assert not rt.full_logits
        assert rt.greedy(ids, 12) == want
        last = rt.logits(ids)
        assert last.shape == (1, want_last.shape[0])
        # decode_only also turns flash attention on (llama.cpp's tools' default): its f16 accumulation
        # moves logits by ~5e-3 on this random model (1e-3 without it); the greedy tokens above are equal
        np.testing.assert_allclose(last[0], want_last, atol=1e-2)


def test_stream_decodes_exactly_once_per_token(llama_gguf, monkeypatch):
    with open_runtime(llama_gguf) as rt:
        eos = rt.eos_token_ids
        calls = []
        real_eval = rt.llm.eval
        monkeypatch.setattr(rt.llm, "eval", lambda toks: (calls.append(len(toks)), real_eval(toks))[1])
        monkeypatch.setattr(LlamaCppRuntime, "eos_token_ids", property(lambda self: set()))
        ids = rt.tokenize("Numbers 0 1 2 3")
        gen = rt.stream(ids, 6)
        first = next(gen)
        assert calls == [len(ids)], "the first token comes from the prefill alone"
        rest = list(gen)
        assert len(rest) == 5
        assert calls == [len(ids)] + [1] * 5
        assert isinstance(first, int) and eos is not None


def test_stream_stops_at_eos(llama_gguf, monkeypatch):
    with open_runtime(llama_gguf) as rt:
        ids = rt.tokenize("Hello")
        first = next(rt.stream(ids, 1))
        monkeypatch.setattr(LlamaCppRuntime, "eos_token_ids", property(lambda self: {first}))
        assert list(rt.stream(ids, 10)) == [first]


def test_context_overflow_is_a_clear_error(llama_gguf):
    with open_runtime(llama_gguf) as rt:
        with pytest.raises(EdgeDistillError, match="context"):
            rt.logits([1] * (rt.n_ctx + 1))
        with pytest.raises(EdgeDistillError):
            rt.logits([])


def test_close_frees_and_is_idempotent(llama_gguf):
    rt = open_runtime(llama_gguf)
    rt.close()
    assert rt.llm is None
    rt.close()


def test_corrupt_file_is_a_clear_error(tmp_path, llama_gguf):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(llama_gguf.read_bytes()[:5000])  # truncated, magic intact
    with pytest.raises(EdgeDistillError, match="could not load"):
        LlamaCppRuntime(detect_artifact(bad))


def test_benchmark_decode_runs_the_c_sampler_once_per_token(llama_gguf, monkeypatch):
    """decode_only (the benchmark) decodes as an app: C greedy sampler, one llama_decode per token,
    no logits row read into Python; the tokens equal the Python argmax loop's."""
    import llama_cpp

    ids = list(range(5, 20))
    with open_runtime(llama_gguf, threads=1) as full:
        monkeypatch.setattr(LlamaCppRuntime, "eos_token_ids", property(lambda self: set()))
        want = list(full.stream(ids, 8))
    with open_runtime(llama_gguf, threads=1, decode_only=True) as rt:
        decodes, samples = [], []
        real_decode, real_sample = llama_cpp.llama_decode, llama_cpp.llama_sampler_sample
        monkeypatch.setattr(llama_cpp, "llama_decode", lambda *a: (decodes.append(1), real_decode(*a))[1])
        monkeypatch.setattr(llama_cpp, "llama_sampler_sample", lambda *a: (samples.append(1), real_sample(*a))[1])
        monkeypatch.setattr(rt, "_last_logits", lambda: pytest.fail("a logits row was read in Python"))
        got = list(rt.stream(ids, 8))
        assert got == want
        assert len(samples) == 8 and len(decodes) == 7  # the first token comes from the prefill
        assert rt.llm.n_tokens == len(ids) + 7
        assert list(rt.stream(ids, 8)) == want  # a second run starts from a clean cache
