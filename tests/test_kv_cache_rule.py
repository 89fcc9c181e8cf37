"""The KV-cache rule of each format (ExportFormat.kv_cache_dtype) against what its artifacts really hold,
and every consumer (target-aware export, bench projection, bench plan) using that one rule."""

from __future__ import annotations

import pytest

from edgedistill.export import FORMATS
from edgedistill.runtime_registry import kv_bytes_per_value
from onnx_export_helpers import shared_cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_model_factory):
    return shared_cache(tmp_path_factory, tiny_model_factory)


def _graph_kv_dtypes(artifact_dir) -> set[str]:
    """numpy names of every past_key_values input and present output of the artifact's decoder graph."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(sorted(artifact_dir.glob("*.onnx"))[0]), load_external_data=False).graph
    kv = [v for v in list(graph.input) + list(graph.output) if v.name.startswith(("past_key_values.", "present."))]
    assert kv, f"{artifact_dir}: the graph has no KV-cache inputs/outputs"
    return {tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name for v in kv}


def _check_onnx_graphs(fmt: str, cache, tiny_llama_gguf) -> None:
    for quant in FORMATS.get(fmt).quants:
        path, _ = cache.artifact(fmt, "llama", quant)
        assert _graph_kv_dtypes(path) == {FORMATS.get(fmt).kv_cache_dtype(quant)}, f"{fmt}:{quant}"


def _check_llama_cpp_context(fmt: str, cache, tiny_llama_gguf) -> None:
    pytest.importorskip("llama_cpp")
    from gguf import GGMLQuantizationType

    from edgedistill.runtimes import open_runtime

    want = {"float16": GGMLQuantizationType.F16, "float32": GGMLQuantizationType.F32}
    with open_runtime(tiny_llama_gguf, threads=1) as rt:  # the cache llama.cpp really allocates
        params = rt.llm.context_params
        for quant in FORMATS.get(fmt).quants:
            assert params.type_k == params.type_v == want[FORMATS.get(fmt).kv_cache_dtype(quant)], quant


CHECKS = {"onnx": _check_onnx_graphs, "ort-genai": _check_onnx_graphs, "gguf": _check_llama_cpp_context}


@pytest.mark.parametrize("fmt", FORMATS.names())
def test_format_kv_rule_matches_its_artifacts(fmt, cache, tiny_llama_gguf):
    assert fmt in CHECKS, f"format {fmt!r} has no KV-cache check here: add how to read its real cache type"
    CHECKS[fmt](fmt, cache, tiny_llama_gguf)


def test_hf_baseline_kv_rule_matches_the_torch_runtime(tiny_llama):
    from edgedistill.runtimes import open_runtime

    with open_runtime(tiny_llama, threads=1) as rt:
        out = rt.model(__import__("torch").tensor([[1, 2, 3]]), use_cache=True)
        keys = out.past_key_values.layers[0].keys
    assert kv_bytes_per_value("hf", None) == keys.element_size()


def test_projection_plan_and_select_use_the_format_rule(cache, tiny_llama, tiny_llama_gguf):
    """onnx:fp16 once counted 2 bytes in select/plan and 4 in projection; all now ask the format."""
    import json

    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench.plan import shape_from_config
    from edgedistill.bench.projection import model_shape
    from edgedistill.export.select import candidates_for, model_dims
    from edgedistill.export.source import inspect_source
    from edgedistill.targets import kv_cache_bytes, load_target

    assert model_shape(detect_artifact(tiny_llama_gguf)).kv_bytes_per_value == 2
    fp16, _ = cache.artifact("onnx", "llama", "fp16")
    assert model_shape(detect_artifact(fp16)).kv_bytes_per_value == FORMATS.get("onnx").kv_bytes_per_value("fp16") == 4
    cfg = json.loads((tiny_llama / "config.json").read_text())
    source, profile = inspect_source(tiny_llama), load_target("raspberry-pi-5")
    layers, kv_heads, head_dim, max_pos = model_dims(cfg)
    context = min(profile.context_length, max_pos)
    by_spec = {c.spec: c for c in candidates_for(source, profile)}
    assert {s.split(":")[0] for s in by_spec} == set(FORMATS.names())
    for fmt_name, fmt in FORMATS.items():
        for quant in fmt.quants:
            rule = fmt.kv_bytes_per_value(quant)
            assert shape_from_config(cfg, fmt_name, quant, "config.json")[0].kv_bytes_per_value == rule, quant
            want = kv_cache_bytes(layers, kv_heads, head_dim, context, rule) / 2**20
            assert by_spec[f"{fmt_name}:{quant}"].kv_cache_mb == pytest.approx(want), f"{fmt_name}:{quant}"
