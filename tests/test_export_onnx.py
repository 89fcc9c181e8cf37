"""The ``onnx`` export format: every quant (float graph from onnxruntime-genai's builder, the default,
then onnxruntime's quantizers), verified against PyTorch; optimum's graph where the `optimum` extra is
installed (transformers 4.x only: the ``optimum``-marked tests).

Default run: llama through every quant (plus the external-data layout and the error cases). The full
architecture x quant matrix is ``slow``.
"""

from __future__ import annotations

import json

import pytest

import edgedistill.export  # noqa: F401  (registers the formats)
from edgedistill.artifacts import detect_artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.export import FORMATS, ExportOptions
from edgedistill.export import onnx_format
from edgedistill.runtimes import open_runtime
from edgedistill.runtimes.onnx_runtime import OnnxRuntime
from edgedistill.testing.tiny import ARCHITECTURES
from onnx_export_helpers import check_onnx_files, shared_cache

QUANTS = ("fp32", "fp16", "int8", "int4")  # written out: a new registered quant without a case fails below
ARCHS = ("llama", "qwen2", "qwen3", "gemma3", "phi3")
CASES = [
    pytest.param(arch, quant, marks=() if arch == "llama" else pytest.mark.slow, id=f"{arch}-{quant}")
    for arch in ARCHS for quant in QUANTS
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_model_factory):
    return shared_cache(tmp_path_factory, tiny_model_factory)


def test_every_registered_quant_and_architecture_has_a_case(tiny_model_factory):
    fmt = FORMATS.get("onnx")
    assert set(fmt.quants) == set(QUANTS)
    assert set(ARCHS) == set(ARCHITECTURES)
    model_types = {json.loads((tiny_model_factory(a) / "config.json").read_text())["model_type"] for a in ARCHS}
    assert model_types == set(fmt.supported_architectures)


@pytest.mark.parametrize("arch,quant", CASES)
def test_export_checks_loads_and_matches_torch(cache, arch, quant):
    path, info = cache.artifact("onnx", arch, quant)
    check_onnx_files(path)
    art = detect_artifact(path)
    assert art.format == "onnx" and art.main_file.name == "model.onnx"
    for needed in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (path / needed).exists(), needed
    assert info["task"] == "text-generation-with-past" and info["opset"] >= 14
    v = cache.verify("onnx", arch, quant)
    assert v.passed, v.failures
    assert v.figures["tokenizer_mismatches"] == 0
    if quant != "int8":  # dynamic int8's per-tensor activation scales differ between prefill and decode
        assert v.figures["stream_consistency"] >= 0.9


def test_quantized_graphs_have_the_expected_operators(cache):
    fmt = FORMATS.get("onnx")
    ops = {q: fmt.describe(cache.artifact("onnx", "llama", q)[0])["op_types"] for q in QUANTS}
    assert "com.microsoft.MatMulNBits" not in ops["fp32"] and ops["fp32"]["MatMul"] > 0
    # 2 layers x (qkv fused by the builder, o, gate, up, down) + lm_head = 11 weight MatMuls
    assert ops["int4"]["com.microsoft.MatMulNBits"] == 11
    assert ops["int8"].get("MatMulInteger", 0) + ops["int8"].get("com.microsoft.DynamicQuantizeMatMul", 0) == 11
    assert ops["fp16"].get("Cast", 0) > ops["fp32"].get("Cast", 0)


def test_sizes_shrink_with_the_quantization(cache):
    sizes = {q: (cache.artifact("onnx", "llama", q)[0] / "model.onnx").stat().st_size for q in QUANTS}
    assert sizes["int4"] < sizes["int8"] < sizes["fp32"]
    assert sizes["fp16"] < 0.7 * sizes["fp32"]


def test_describe_reports_graph_metadata(cache):
    d = FORMATS.get("onnx").describe(cache.artifact("onnx", "llama", "int4")[0])
    names = {i["name"]: i for i in d["inputs"]}
    assert {"input_ids", "attention_mask", "past_key_values.0.key", "past_key_values.1.value"} <= set(names)
    assert names["past_key_values.0.key"]["dtype"] == "float32"
    assert names["past_key_values.0.key"]["shape"][1] == 2  # kv heads
    assert any(o["name"] == "logits" for o in d["outputs"])
    assert d["opsets"]["ai.onnx"] >= 14 and d["ir_version"] >= 7
    # default accuracy_level for int4 is 4 (int8 compute), see ExportOptions.accuracy_level
    assert d["matmulnbits"] == [{"bits": 4, "block_size": 32, "accuracy_level": 4, "count": 11}]
    assert d["files"]["model.onnx"] > 0 and d["total_bytes"] >= d["files"]["model.onnx"]


def test_int4_block_size_and_accuracy_level_are_applied(cache):
    opts = ExportOptions(int4_block_size=16, int4_accuracy_level=0)  # an explicit level overrides the default 4
    path, info = cache.artifact("onnx", "llama", "int4", opts)
    assert info["quantization"]["block_size"] == 16 and info["quantization"]["accuracy_level"] == 0
    assert FORMATS.get("onnx").describe(path)["matmulnbits"] == [
        {"bits": 4, "block_size": 16, "accuracy_level": 0, "count": 11}
    ]
    v = cache.verify("onnx", "llama", "int4", opts)
    assert v.passed, v.failures


def test_default_graph_is_the_builders_fused_one(cache):
    """The default exporter writes fused attention and norms (few nodes per step), a plain onnx artifact."""
    path, info = cache.artifact("onnx", "llama", "fp32")
    d = FORMATS.get("onnx").describe(path)
    assert info["exporter"]["tool"] == "builder" and "onnxruntime-genai" in info["exporter"]
    assert d["op_types"]["com.microsoft.GroupQueryAttention"] == 2  # one per layer
    assert d["op_types"].get("Softmax", 0) == 0  # attention is not spelt out in small nodes
    assert not (path / "genai_config.json").exists()  # else detect_artifact would call it ort-genai
    kv = {i["name"]: i["shape"] for i in d["inputs"]}["past_key_values.0.key"]
    assert kv[1] == 2 and kv[3] == 16  # kv heads and head size fixed (the builder leaves the last symbolic)


@pytest.mark.optimum
def test_optimum_loads_the_artifact_as_it_is(cache, tiny_tokenizer):
    """With the optimum exporter: ORTModelForCausalLM.from_pretrained(dir) with nothing added,
    generating what our runtime streams."""
    pytest.importorskip("optimum.onnxruntime", reason="the `optimum` extra (transformers 4.x) is not installed")
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    for quant in ("fp32", "int4"):
        path, info = cache.artifact("onnx", "llama", quant, ExportOptions(onnx_exporter="optimum"))
        assert info["exporter"]["tool"] == "optimum"
        assert cache.verify("onnx", "llama", quant, ExportOptions(onnx_exporter="optimum")).passed
        model = ORTModelForCausalLM.from_pretrained(path)
        ids = tiny_tokenizer("The teacher answers", return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=8, do_sample=False)
        with open_runtime(path) as rt:
            ours = rt.greedy(ids[0].tolist(), 8)
        assert out[0, ids.shape[1]:].tolist()[: len(ours)] == ours, quant


@pytest.mark.parametrize("quant", ["fp32", pytest.param("int8", marks=pytest.mark.slow)])
def test_large_models_use_external_data(tmp_path, cache, tiny_llama, monkeypatch, quant):
    """Above the threshold (2 GB in real life, 0 here) the weights go to model.onnx_data."""
    monkeypatch.setattr(onnx_format, "EXTERNAL_DATA_THRESHOLD_BYTES", 0)
    with cache.float_graph_exported_once():  # the threshold applies after the float export
        FORMATS.get("onnx").write(tiny_llama, tmp_path, quant, ExportOptions())
    data = tmp_path / "model.onnx_data"
    assert data.exists() and data.stat().st_size > (tmp_path / "model.onnx").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir() if "onnx" in p.name) == ["model.onnx", "model.onnx_data"]
    check_onnx_files(tmp_path)
    assert FORMATS.get("onnx").describe(tmp_path)["external_data"] == ["model.onnx_data"]
    with open_runtime(tmp_path) as rt:
        assert isinstance(rt, OnnxRuntime)
        assert rt.logits(rt.tokenize("hello"))[0].shape == (384,)


def test_unsupported_architecture_is_a_clean_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(EdgeDistillError) as err:
        FORMATS.get("onnx").write(tmp_path, tmp_path / "out", "fp32", ExportOptions())
    msg = str(err.value)
    assert "'gpt2'" in msg and "supported: gemma3_text, llama, phi3, qwen2, qwen3" in msg


@pytest.mark.parametrize("options,needle", [
    (ExportOptions(int4_block_size=48), "int4_block_size"),
    (ExportOptions(int4_accuracy_level=7), "int4_accuracy_level"),
    (ExportOptions(opset=14), "needs opset >= 18"),
    (ExportOptions(opset=18), "applies to the optimum exporter only"),
    (ExportOptions(onnx_exporter="torchscript"), "onnx_exporter"),
])
def test_bad_options_are_clean_errors(tiny_llama, tmp_path, options, needle):
    with pytest.raises(EdgeDistillError, match=needle):
        FORMATS.get("onnx").write(tiny_llama, tmp_path, "int4", options)


def test_unknown_quant_lists_the_valid_ones(tiny_llama, tmp_path):
    with pytest.raises(EdgeDistillError, match="valid: fp32, fp16, int8, int4"):
        FORMATS.get("onnx").write(tiny_llama, tmp_path, "q4_k_m", ExportOptions())


def test_accuracy_level_defaults_per_quant_type():
    # int4: level 4 (int8 compute) by default; weight-only int8: level 0; an explicit level wins
    int4, int8 = FORMATS.get("onnx").quants["int4"], FORMATS.get("ort-genai").quants["int8"]
    assert ExportOptions().accuracy_level(int4) == 4
    assert ExportOptions().accuracy_level(FORMATS.get("ort-genai").quants["int4"]) == 4
    assert ExportOptions().accuracy_level(int8) == 0
    assert ExportOptions(int4_accuracy_level=0).accuracy_level(int4) == 0
    assert ExportOptions(int4_accuracy_level=4).accuracy_level(int8) == 4
    # the weight-only block types are the ones that state their MatMulNBits bits
    assert {(f, q) for f, fmt in FORMATS.items() for q, spec in fmt.quants.items() if spec.matmul_nbits} == {
        ("onnx", "int4"), ("ort-genai", "int4"), ("ort-genai", "int8")}


def test_int4_quantizes_the_embedding_table_unless_asked_not_to(cache, tiny_model_factory):
    """Default: the input embedding becomes GatherBlockQuantized (int4 blocks along the hidden axis), and
    the projection excludes that table (one row read per step) from the bytes a decode step reads."""
    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench.projection import model_shape

    cfg = json.loads((tiny_model_factory("llama") / "config.json").read_text())
    vocab, hidden = cfg["vocab_size"], cfg["hidden_size"]
    path, info = cache.artifact("onnx", "llama", "int4")
    ops = FORMATS.get("onnx").describe(path)["op_types"]
    assert ops.get("com.microsoft.GatherBlockQuantized") == 1
    assert info["quantization"]["embeddings"].startswith("int4")
    int4_table = vocab * hidden // 2 + vocab * (hidden // 32) * 4  # packed int4 + one fp32 scale per 32
    shape = model_shape(detect_artifact(path))
    assert shape.bytes_read_per_token == shape.weight_bytes - int4_table

    opts = ExportOptions(int4_embeddings=False)
    fpath, finfo = cache.artifact("onnx", "llama", "int4", opts)
    assert "com.microsoft.GatherBlockQuantized" not in FORMATS.get("onnx").describe(fpath)["op_types"]
    assert finfo["quantization"]["embeddings"] == "float32"
    fshape = model_shape(detect_artifact(fpath))
    assert fshape.bytes_read_per_token == fshape.weight_bytes - vocab * hidden * 4  # float32 table
    assert shape.weight_bytes < fshape.weight_bytes - vocab * hidden * 3
    v = cache.verify("onnx", "llama", "int4", opts)
    assert v.passed, v.failures


@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: tied embeddings, two RoPE bases
def test_int4_artifact_carries_only_what_its_weights_need(cache, tiny_model_factory, arch):
    """Issue #11 follow-up: no float graph data file, rotary table or float copy of a quantized
    matrix in onnx:int4 (the quickstart student's was 253 MiB for 25M parameters)."""
    from onnx_export_helpers import assert_int4_artifact_holds_only_what_the_weights_need

    path, info = cache.artifact("onnx", arch, "int4")
    assert not (path / "model.onnx.data").exists()  # the float graph's weights, copied in before the fix
    assert info["rotary_tables"].startswith("computed at load time")
    assert_int4_artifact_holds_only_what_the_weights_need(path, tiny_model_factory(arch))
    assert FORMATS.get("onnx").describe(path)["op_types"].get("com.microsoft.GatherBlockQuantized") == 1
    v = cache.verify("onnx", arch, "int4")
    assert v.passed, v.failures


def test_rotary_tables_computed_in_graph_match_the_stored_ones(cache):
    """fp32 is exact to rounding with the tables computed at load time (verification's fp32 bounds)."""
    path, info = cache.artifact("onnx", "gemma3", "fp32")
    assert info["rotary_tables"].startswith("computed at load time")
    v = cache.verify("onnx", "gemma3", "fp32")
    assert v.passed and v.figures["max_abs_logit_diff"] < 1e-4, v.figures
    # fp16: the parameters come from the fp32 graph (an fp16 table is too coarse to read them from)
    path, info = cache.artifact("onnx", "gemma3", "fp16")
    assert info["rotary_tables"].startswith("computed at load time")
    assert cache.verify("onnx", "gemma3", "fp16").passed
