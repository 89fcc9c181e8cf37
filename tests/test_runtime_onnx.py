"""OnnxRuntime and OrtGenaiRuntime: tokenization, logits, KV-cache streaming, EOS, threads."""

from __future__ import annotations

import numpy as np
import pytest

import edgedistill.export  # noqa: F401  (registers the formats)
from edgedistill.artifacts import Artifact, detect_artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.runtimes import open_runtime
from edgedistill.runtimes.onnx_runtime import OnnxRuntime
from edgedistill.runtimes.ortgenai_runtime import OrtGenaiRuntime
from edgedistill.runtimes.torch_runtime import TorchRuntime
from onnx_export_helpers import assert_tokenization_identical, kl_mean, shared_cache

PROMPT = "Question: What is 12 plus 30? Answer:"


@pytest.fixture(scope="module")
def torch_rt(tiny_llama):
    rt = TorchRuntime(Artifact(tiny_llama, "hf", tiny_llama / "config.json"))
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, tiny_model_factory):
    return shared_cache(tmp_path_factory, tiny_model_factory).artifact("onnx", "llama", "fp32")[0]


@pytest.fixture(scope="module")
def genai_dir(tmp_path_factory, tiny_model_factory):
    return shared_cache(tmp_path_factory, tiny_model_factory).artifact("ort-genai", "llama", "fp32")[0]


@pytest.fixture(params=["onnx", "ort-genai"])
def runtime(request, onnx_dir, genai_dir):
    path = onnx_dir if request.param == "onnx" else genai_dir
    rt = open_runtime(detect_artifact(path), threads=1)
    yield rt
    rt.close()


def test_open_runtime_picks_the_class(onnx_dir, genai_dir):
    with open_runtime(onnx_dir) as a, open_runtime(genai_dir) as b:
        assert isinstance(a, OnnxRuntime) and a.name == "onnxruntime"
        assert isinstance(b, OrtGenaiRuntime) and b.name == "ort-genai"
        assert a.full_logits and b.full_logits


def test_tokenization_is_identical_to_transformers(runtime, torch_rt):
    assert_tokenization_identical(runtime, torch_rt)
    ids = runtime.tokenize("Hello world")
    assert runtime.detokenize(ids[1:]) == "Hello world"


def test_full_sequence_logits_match_torch(runtime, torch_rt):
    ids = torch_rt.tokenize(PROMPT)
    ours, ref = runtime.logits(ids), torch_rt.logits(ids)
    assert ours.shape == ref.shape == (len(ids), 384) and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-3
    assert kl_mean(ref, ours) < 1e-6


def test_stream_matches_torch_and_its_own_full_forward(runtime, torch_rt):
    ids = torch_rt.tokenize(PROMPT)
    got = runtime.greedy(ids, 12)
    assert got == torch_rt.greedy(ids, 12)
    # the KV-cache path agrees with re-running the whole sequence at every step
    full = runtime.logits(ids + got[:-1])[len(ids) - 1:].argmax(-1).tolist()
    assert full == got


def test_stream_stops_at_eos(runtime, torch_rt):
    ids = torch_rt.tokenize(PROMPT)
    first_three = runtime.greedy(ids, 3)
    runtime._eos = {first_three[1]}  # pretend the 2nd greedy token is EOS
    assert runtime.greedy(ids, 10) == first_three[:2]
    assert runtime.eos_token_ids == {first_three[1]}


def test_eos_ids_come_from_the_artifact(onnx_dir, genai_dir):
    for path in (onnx_dir, genai_dir):
        with open_runtime(path) as rt:
            assert rt.eos_token_ids == {7}  # <|end|> of the tiny tokenizer


def test_onnx_stream_runs_the_decoder_once_per_token(onnx_dir, torch_rt):
    """Prefill gives the first token; every further token costs exactly one session run."""
    rt = open_runtime(onnx_dir)
    runs = []
    real_run = rt.session.run

    class Counting:
        def run(self, names, feed):
            runs.append(feed["input_ids"].shape[1])
            return real_run(names, feed)

    rt.session = Counting()
    ids = torch_rt.tokenize(PROMPT)
    tokens = []
    for tok in rt.stream(ids, 6):
        tokens.append(tok)
        assert len(runs) == len(tokens)  # no look-ahead run before the token is yielded
    assert runs == [len(ids)] + [1] * 5


def test_threads_reach_the_session(onnx_dir):
    with open_runtime(onnx_dir, threads=1) as rt:
        assert rt.session.get_session_options().intra_op_num_threads == 1


def test_genai_threads_and_long_prompts(genai_dir):
    with open_runtime(genai_dir, threads=1) as rt:
        ids = rt.tokenize("a " * 100)
        assert rt.logits(ids).shape == (len(ids), 384)
        with pytest.raises(EdgeDistillError, match="context length"):
            rt.logits([5] * 600)


def test_fp16_artifact_runs_on_the_cpu_provider(tmp_path_factory, tiny_model_factory, torch_rt):
    path = shared_cache(tmp_path_factory, tiny_model_factory).artifact("onnx", "llama", "fp16")[0]
    with open_runtime(path) as rt:
        assert rt.session.get_providers() == ["CPUExecutionProvider"]
        ids = torch_rt.tokenize(PROMPT)
        assert kl_mean(torch_rt.logits(ids), rt.logits(ids)) < 1e-4
        assert len(rt.greedy(ids, 4)) == 4


def test_missing_tokenizer_is_a_clean_error(tmp_path, onnx_dir):
    import shutil

    for f in onnx_dir.iterdir():
        if "token" not in f.name and f.name != "special_tokens_map.json":
            shutil.copy2(f, tmp_path / f.name)
    with pytest.raises(EdgeDistillError, match="tokenizer"):
        open_runtime(tmp_path)
