"""Quantization-aware distillation: grids, the straight-through estimator, the trainer hook, and for the
exact grids (q8_0, q4_0, onnx int4) the exported weights equal the fake-quantized ones bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgedistill.distill import DistillConfig, distill
from edgedistill.distill.qat import (GRIDS, QatPhase, disable_fake_quant, enable_fake_quant, fake_quantize,
                                     grid_for, quantized_linears)
from edgedistill.errors import ConfigError


@pytest.fixture(scope="module")
def qwen(tiny_model_factory):
    """qwen2: GGUF keeps its q/k rows in HF order (llama's are permuted for rope), so names map 1:1."""
    return tiny_model_factory("qwen2")


def _hf_linears(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {n: m.weight.detach() for n, m in quantized_linears(model)}


def _gguf_weights(path, qtype_name):
    """{gguf name: dequantized (rows, cols)} of the tensors stored as ``qtype_name``."""
    import gguf
    from gguf.quants import dequantize

    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        if t.tensor_type.name == qtype_name:
            out[t.name] = dequantize(t.data, t.tensor_type).reshape(int(t.shape[1]), int(t.shape[0]))
    return out


@pytest.mark.parametrize("quant, qtype", [("q8_0", "Q8_0"), ("q4_0", "Q4_0")])
def test_gguf_exact_grids_equal_the_exported_weights(qwen, tmp_path, quant, qtype):
    import gguf

    from edgedistill.export.gguf import write_gguf
    from edgedistill.export.gguf.architectures import text_config
    from edgedistill.export.gguf.writer import load_config

    if quant == "q4_0":
        pytest.importorskip("llama_cpp")
    write_gguf(qwen, tmp_path / "m.gguf", quant)
    stored = _gguf_weights(tmp_path / "m.gguf", qtype)
    cfg = text_config(load_config(qwen))
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, int(cfg["num_hidden_layers"]))
    grid = GRIDS["gguf"][quant]
    compared = 0
    for name, w in _hf_linears(qwen).items():
        gname = tmap.get_name(name + ".weight", try_suffixes=(".weight",))
        if gname not in stored:
            continue
        fq = fake_quantize(w, grid).numpy()
        assert np.array_equal(fq, stored[gname]), f"{name}: max diff {np.abs(fq - stored[gname]).max()}"
        compared += 1
    assert compared >= 7 * 2, f"only {compared} {qtype} tensors compared"  # q,k,v,o,gate,up,down x 2 layers


def test_onnx_int4_grid_equals_matmulnbits_weights(qwen, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from edgedistill.export.formats import FORMATS, ExportOptions

    FORMATS.get("onnx").write(qwen, tmp_path, "int4", ExportOptions(int4_embeddings=False))
    model = onnx.load(str(tmp_path / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    grid = GRIDS["onnx"]["int4"]
    fq = {name: fake_quantize(w, grid).numpy() for name, w in _hf_linears(qwen).items()}
    # the onnxruntime-genai builder fuses each layer's q/k/v into one qkv_proj MatMulNBits (rows stacked);
    # int4 blocks run along a row, so the fused weight must equal the stacked fake-quantized ones
    expected = {(name,): w for name, w in fq.items()}
    for name in fq:
        if name.endswith(".q_proj"):
            qkv = tuple(name[: -len("q_proj")] + p for p in ("q_proj", "k_proj", "v_proj"))
            expected[qkv] = np.concatenate([fq[p] for p in qkv])
    covered = set()
    for node in model.graph.node:
        if node.op_type != "MatMulNBits" or "lm_head" in node.name:  # QAT leaves the LM head alone
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n, k, bs = attrs["N"], attrs["K"], attrs["block_size"]
        packed = numpy_helper.to_array(inits[node.input[1]]).reshape(n, -1)
        scales = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(n, -1)
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1)[:, :k].astype(np.float32)
        w = ((q - 8) * np.repeat(scales, bs, axis=1)[:, :k])
        equal = [names for names, e in expected.items() if e.shape == w.shape and np.array_equal(e, w)]
        if equal:
            covered.update(equal[0])
        else:
            close = min((np.abs(e - w).max() for e in expected.values() if e.shape == w.shape), default=None)
            pytest.fail(f"MatMulNBits {node.name}: no fake-quantized weight equals it (nearest max diff {close})")
    assert covered == set(fq)  # every q,k,v,o,gate,up,down of both layers, fused or not


def test_straight_through_gradient_and_forward():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 8)
    x = torch.randn(3, 64)
    grid = GRIDS["gguf"]["q4_0"]
    model = torch.nn.Sequential(lin)
    assert enable_fake_quant(model, grid) == 1
    y = model(x)
    assert torch.allclose(y, torch.nn.functional.linear(x, fake_quantize(lin.weight, grid), lin.bias))
    y.sum().backward()
    # STE: the weight's gradient is that of the identity through the rounding, x^T 1
    assert torch.allclose(lin.weight.grad, torch.ones(3, 8).T @ x)
    assert set(lin.state_dict()) == {"weight", "bias"}  # saving is unchanged
    disable_fake_quant(model)
    assert torch.allclose(model(x), torch.nn.functional.linear(x, lin.weight, lin.bias))


@pytest.mark.parametrize("spec", ["gguf:q4_k_m", "gguf:q6_k", "onnx:int8", "gguf:q2_k"])
def test_every_grid_has_at_most_2_bits_levels_per_block(spec):
    grid = grid_for(spec)
    w = torch.randn(4, 256)
    fq = fake_quantize(w, grid)
    block = grid.block or 256
    for row in fq.reshape(-1, block):
        assert len(torch.unique(row)) <= 2 ** grid.bits
    assert (fq - w).abs().max() < (w.abs().max() * 2 / (2 ** grid.bits - 1)) + 1e-6


def test_qat_config_errors():
    base = dict(student="s", data="d.jsonl", out="o")
    for spec, match in [("gguf:q9_9", "q4_k_m"), ("onnx:fp16", "float types"), ("tflite:int8", "valid: gguf"),
                        ("q4_k_m", "format:quant")]:
        with pytest.raises(ConfigError, match=rf"'qat'.*{match}"):
            DistillConfig(**base, qat=spec)
    with pytest.raises(ConfigError, match="qat_fraction"):
        DistillConfig(**base, qat="gguf:q4_0", qat_fraction=0)
    with pytest.raises(ConfigError, match="lora"):
        DistillConfig(**base, qat="gguf:q4_0", lora_r=4)
    assert QatPhase("onnx:int4", 0.25, 8).start == 7 and QatPhase("onnx:int4", 0.01, 8).start == 8


def test_distill_switches_the_last_steps_to_fake_quant(tiny_llama, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is {i} plus 30?", "response": f"It is {i + 30}."}) + "\n"
                            for i in range(8)))
    seen = []
    orig = QatPhase.at_step

    def spy(self, student, step):
        orig(self, student, step)
        seen.append((step, all("forward" in m.__dict__ for _, m in quantized_linears(student))))

    import edgedistill.distill.qat as qat_mod

    qat_mod.QatPhase.at_step = spy
    try:
        summary = distill(DistillConfig(student=str(tiny_llama), data=str(data), out=str(tmp_path / "o"),
                                        max_steps=4, learning_rate=1e-3, qat="gguf:q4_0", qat_fraction=0.5))
    finally:
        qat_mod.QatPhase.at_step = orig
    assert summary.completed
    assert seen == [(1, False), (2, False), (3, True), (4, True)]
    assert "quantization-aware phase on (gguf:q4_0" in capsys.readouterr().out
    saved = json.loads((tmp_path / "o" / "distill_config.json").read_text())
    assert saved["qat"] == "gguf:q4_0"
    from safetensors.torch import load_file

    assert not any("parametriz" in k for k in load_file(tmp_path / "o" / "model.safetensors"))


def test_kl_to_artifact_is_near_zero_for_an_exact_grid(qwen, tmp_path):
    pytest.importorskip("llama_cpp")
    from edgedistill.distill.qat import kl_to_artifact
    from edgedistill.export import ExportConfig, export

    res = export(ExportConfig(model=str(qwen), artifacts=["gguf:q8_0", "gguf:q4_k_m"], out_dir=str(tmp_path),
                              verify=False), log=lambda m: None)
    exact = kl_to_artifact(qwen, res.artifacts[0].path, "gguf:q8_0", prompts=["The quick brown fox"])
    approx = kl_to_artifact(qwen, res.artifacts[1].path, "gguf:q4_k_m", prompts=["The quick brown fox"])
    assert exact["exact_grid"] and not approx["exact_grid"] and exact["positions"] > 0
    assert exact["kl_mean"] < 1e-3, exact  # llama.cpp's f16 KV cache and kernels: float noise only
    assert approx["kl_mean"] >= 0
