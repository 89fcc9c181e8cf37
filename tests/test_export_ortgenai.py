"""The ``ort-genai`` export format: onnxruntime-genai's model builder, loaded by onnxruntime_genai.Model.

Default run: llama through every quant and the error cases; the other architectures are ``slow``.
"""

from __future__ import annotations

import json

import pytest

import edgedistill.export  # noqa: F401  (registers the formats)
from edgedistill.artifacts import detect_artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.export import FORMATS, ExportOptions
from edgedistill.testing.tiny import ARCHITECTURES
from onnx_export_helpers import check_onnx_files, shared_cache

QUANTS = ("fp32", "int8", "int4")  # written out: a new registered quant without a case fails below
ARCHS = ("llama", "qwen2", "qwen3", "gemma3", "phi3")
CASES = [
    pytest.param(arch, quant, marks=() if arch == "llama" else pytest.mark.slow, id=f"{arch}-{quant}")
    for arch in ARCHS for quant in QUANTS
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_model_factory):
    return shared_cache(tmp_path_factory, tiny_model_factory)


def test_every_registered_quant_and_architecture_has_a_case(tiny_model_factory):
    fmt = FORMATS.get("ort-genai")
    assert set(fmt.quants) == set(QUANTS)
    assert set(ARCHS) == set(ARCHITECTURES)
    model_types = {json.loads((tiny_model_factory(a) / "config.json").read_text())["model_type"] for a in ARCHS}
    assert model_types == set(fmt.supported_architectures)


@pytest.mark.parametrize("arch,quant", CASES)
def test_build_loads_in_genai_and_matches_torch(cache, arch, quant):
    import onnxruntime_genai as og

    path, info = cache.artifact("ort-genai", arch, quant)
    check_onnx_files(path)
    assert detect_artifact(path).format == "ort-genai"
    for needed in ("genai_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (path / needed).exists(), needed
    assert not list(path.glob("*cache*")), "the builder's scratch directory must not end up in the artifact"
    og.Model(str(path))  # as an app loads it
    assert info["builder"]["precision"] == quant
    v = cache.verify("ort-genai", arch, quant)
    assert v.passed, v.failures
    assert v.figures["tokenizer_mismatches"] == 0


def test_weight_only_quants_use_matmulnbits_with_the_options(cache):
    fmt = FORMATS.get("ort-genai")
    d4 = fmt.describe(cache.artifact("ort-genai", "llama", "int4")[0])
    d8 = fmt.describe(cache.artifact("ort-genai", "llama", "int8")[0])
    d32 = fmt.describe(cache.artifact("ort-genai", "llama", "fp32")[0])
    # 2 layers x (qkv, o, gate, up, down) + lm_head = 11 MatMulNBits (the builder fuses q/k/v)
    # default accuracy levels: 4 (int8 compute) for int4, 0 (fp32 compute) for int8
    assert d4["matmulnbits"] == [{"bits": 4, "block_size": 32, "accuracy_level": 4, "count": 11}]
    assert d8["matmulnbits"] == [{"bits": 8, "block_size": 32, "accuracy_level": 0, "count": 11}]
    assert d32["matmulnbits"] == [] and "com.microsoft.GroupQueryAttention" in d32["op_types"]
    assert d4["genai_config"]["num_hidden_layers"] == 2 and d4["genai_config"]["eos_token_id"] == 7
    assert d4["total_bytes"] < d8["total_bytes"] < d32["total_bytes"]


@pytest.mark.slow
def test_explicit_accuracy_level_is_passed_to_the_builder(cache):
    opts = ExportOptions(int4_block_size=64, int4_accuracy_level=0)
    path, info = cache.artifact("ort-genai", "llama", "int4", opts)
    assert "accuracy_level=0" in info["builder"]["extra_options"]
    assert FORMATS.get("ort-genai").describe(path)["matmulnbits"][0]["accuracy_level"] == 0
    assert FORMATS.get("ort-genai").describe(path)["matmulnbits"][0]["block_size"] == 64


def test_unsupported_architecture_is_a_clean_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(EdgeDistillError, match=r"'gpt_neox'.*supported: gemma3_text, llama, phi3, qwen2, qwen3"):
        FORMATS.get("ort-genai").write(tmp_path, tmp_path / "out", "int4", ExportOptions())


def test_builder_failure_is_a_clean_error(tmp_path, tiny_llama):
    """A model directory the builder cannot read: EdgeDistillError with the builder's last words."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EdgeDistillError) as err:
        FORMATS.get("ort-genai").write(broken, out, "fp32", ExportOptions())
    assert "model builder failed" in str(err.value) and "exit code" in str(err.value)
    assert not (out / ".builder-cache").exists(), "the builder's scratch directory is removed"


def test_projection_reads_the_gathered_embedding_from_the_graph(cache, tiny_model_factory):
    """An untied llama: the builder keeps the input embedding as a float table read one row a step."""
    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench.projection import model_shape

    path, _ = cache.artifact("ort-genai", "llama", "int4")
    cfg = json.loads((tiny_model_factory("llama") / "config.json").read_text())
    shape = model_shape(detect_artifact(path))
    embed = cfg["vocab_size"] * cfg["hidden_size"] * 4  # float32 table behind the Gather
    assert shape.bytes_read_per_token == shape.weight_bytes - embed


@pytest.mark.slow
def test_projection_counts_a_shared_quantized_embedding_as_read(cache):
    """Gemma 3 (tied): one int4 table serves GatherBlockQuantized and the LM head, read in full each step."""
    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench.projection import model_shape

    path, _ = cache.artifact("ort-genai", "gemma3", "int4")
    shape = model_shape(detect_artifact(path))
    assert shape.bytes_read_per_token == shape.weight_bytes


@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: tied embeddings, two RoPE bases
def test_int4_artifact_carries_only_what_its_weights_need(cache, tiny_model_factory, arch):
    """Issue #11 follow-up: the builder's rotary cos/sin tables (67 MB of the quickstart student's
    79 MiB ort-genai:int4) are computed at load time; nothing else float beyond scales and vectors."""
    from onnx_export_helpers import assert_int4_artifact_holds_only_what_the_weights_need

    # verification below runs tiny Gemma 3 (sliding window 64) through OrtGenaiRuntime with requests of
    # ~50 tokens: the runtime must size its KV buffer to the window (onnxruntime-genai 0.18 refuses less)
    path, info = cache.artifact("ort-genai", arch, "int4")
    assert info["rotary_tables"].startswith("computed at load time")
    # the builder quantizes a tied table (shared with the LM head); an untied one stays float32 (docs)
    assert_int4_artifact_holds_only_what_the_weights_need(path, tiny_model_factory(arch), float_embedding=True)
    v = cache.verify("ort-genai", arch, "int4")
    assert v.passed, v.failures
