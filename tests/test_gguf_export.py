"""GGUF export: every registered architecture x every registered quant type is converted, loaded in
llama.cpp, and compared with PyTorch through the same figures export verification uses.

Default run: all architectures at f32 and f16, llama at q8_0 and q4_k_m. The rest of the matrix is
``slow`` (``pytest -m slow tests/test_gguf_export.py``).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS, ExportOptions
from edgedistill.export.gguf import GGUF_FILE, GGUF_QUANTS, describe_gguf, write_gguf
from edgedistill.export.gguf.architectures import ARCHITECTURES, supported_model_types
from edgedistill.export.verify import build_reference, verify_artifact
from edgedistill.runtimes import open_runtime
from edgedistill.testing import tiny

# registry key -> the tiny-model builder's name for the same architecture
TINY_NAME = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3", "phi3": "phi3"}
DEFAULT_CASES = {(a, q) for a in TINY_NAME for q in ("f32", "f16")} | {("llama", "q8_0"), ("llama", "q4_k_m")}
MATRIX = [
    pytest.param(a, q, id=f"{a}-{q}", marks=() if (a, q) in DEFAULT_CASES else pytest.mark.slow)
    for a, q in itertools.product(sorted(TINY_NAME), GGUF_QUANTS.names())
]


def test_matrix_covers_every_registered_architecture_and_quant():
    cases = {(p.values[0], p.values[1]) for p in MATRIX}
    assert cases == set(itertools.product(ARCHITECTURES.names(), GGUF_QUANTS.names()))
    assert set(TINY_NAME.values()) == set(tiny.ARCHITECTURES)
    fmt = FORMATS.get("gguf")
    assert set(fmt.quants) == set(GGUF_QUANTS.names())
    assert {"llama", "qwen2", "qwen3", "gemma3", "gemma3_text", "phi3"} <= set(fmt.supported_architectures)


@pytest.fixture(scope="module")
def model_for(tiny_model_factory):
    """(arch, quant) -> model dir. llama.cpp-quantized types get width 256 (K-quants need rows that are
    multiples of 256, or llama.cpp falls back to other types); build_tiny_model scales the init std by
    sqrt(64/width), so the random model keeps the width-64 per-layer gain."""

    def get(arch: str, quant: str):
        if GGUF_QUANTS.get(quant).route != "llama.cpp":
            return tiny_model_factory(TINY_NAME[arch])
        return tiny_model_factory(TINY_NAME[arch], hidden_size=256)

    return get


_REFS: dict = {}


def _reference(model_dir):
    if model_dir not in _REFS:
        _REFS[model_dir] = build_reference(model_dir, new_tokens=8)
    return _REFS[model_dir]


# the ggml types a quant must produce for 2-D weights (at width 256, so no K-quant fallback)
EXPECTED_TYPES = {
    "f32": {"F32"}, "f16": {"F16"}, "bf16": {"BF16"}, "q8_0": {"Q8_0"}, "q4_0": {"Q4_0"}, "q4_1": {"Q4_1"},
    "q5_0": {"Q5_0"}, "q5_1": {"Q5_1"}, "q2_k": {"Q2_K"}, "q3_k_m": {"Q3_K"}, "q4_k_s": {"Q4_K"},
    "q4_k_m": {"Q4_K", "Q6_K"}, "q5_k_s": {"Q5_K"}, "q5_k_m": {"Q5_K", "Q6_K"}, "q6_k": {"Q6_K"},
}


@pytest.mark.parametrize("arch,quant", MATRIX)
def test_export_loads_generates_and_verifies(arch, quant, model_for, tmp_path):
    model = model_for(arch, quant)
    fmt = FORMATS.get("gguf")
    extra = fmt.write(model, tmp_path, quant, ExportOptions())
    gguf_file = tmp_path / GGUF_FILE
    assert gguf_file.exists() and extra["file_bytes"] == gguf_file.stat().st_size
    assert not list(tmp_path.glob("*.f32-source.gguf")), "the intermediate file must be removed"

    info = fmt.describe(tmp_path)
    types = set(info["tensor_type_counts"])
    assert EXPECTED_TYPES[quant] <= types, f"{quant}: got tensor types {types}"
    norms = {k: v for k, v in info["tensor_types"].items() if k.endswith("norm.weight")}
    assert norms and set(norms.values()) == {"F32"}, "norms stay f32"

    # the verification edgedistill export runs: KL, teacher-forced greedy, stream consistency, tokenizer
    verdict = verify_artifact(tmp_path, GGUF_QUANTS.get(quant).spec, _reference(model))
    assert verdict.passed, (verdict.failures, {k: verdict.figures.get(k) for k in ("kl_mean", "greedy_match", "max_abs_logit_diff")})
    with open_runtime(tmp_path) as rt:  # and it generates text
        ids = rt.tokenize("The quick brown fox")
        out = rt.greedy(ids, 6)
        assert 1 <= len(out) <= 6 and isinstance(rt.detokenize(out), str)
        assert rt.logits(ids).shape == (len(ids), rt.n_vocab)


@pytest.mark.parametrize("arch", sorted(TINY_NAME))
def test_f32_logits_match_torch(arch, tiny_model_factory, tmp_path):
    """The converter itself is exact: f32 GGUF logits equal PyTorch's up to llama.cpp's f16 KV cache."""
    from transformers import AutoTokenizer

    model = tiny_model_factory(TINY_NAME[arch])
    write_gguf(model, tmp_path / "m.gguf", "f32")
    tok = AutoTokenizer.from_pretrained(model)
    for text in ("The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b"):
        ids = tok(text).input_ids
        diff, want = _max_logit_diff(model, tmp_path / "m.gguf", ids)
        assert diff < 0.03
        with open_runtime(tmp_path / "m.gguf") as rt:
            assert (rt.logits(ids).argmax(-1) == want.argmax(-1)).all()


def _edit_config(model_dir, tmp_path, **changes):
    """A copy of a tiny model directory with config.json changed (same weights)."""
    import shutil

    out = tmp_path / "edited"
    shutil.copytree(model_dir, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(changes)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def _max_logit_diff(model_dir, gguf_path, ids):
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        want = hf(torch.tensor([ids])).logits[0].numpy()
    with open_runtime(gguf_path) as rt:
        got = rt.logits(ids)
    return float(np.abs(got - want).max()), want


def test_llama3_rope_scaling_is_reproduced(tiny_model_factory, tmp_path):
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32}
    model = _edit_config(tiny_model_factory("llama"), tmp_path, rope_scaling=rope)
    write_gguf(model, tmp_path / "m.gguf", "f32")
    assert "rope_freqs.weight" in describe_gguf(tmp_path / "m.gguf")["tensor_types"]
    ids = list(range(10, 110))  # positions well past the original context, where scaling matters
    diff, _ = _max_logit_diff(model, tmp_path / "m.gguf", ids)
    assert diff < 0.05
    # and the scaling is really applied: without it the logits differ
    plain = tiny_model_factory("llama")
    diff_unscaled, _ = _max_logit_diff(model, _write(plain, tmp_path / "plain.gguf"), ids)
    assert diff_unscaled > 10 * diff


def _write(model, path, quant="f32"):
    write_gguf(model, path, quant)
    return path


def test_linear_rope_scaling_qwen2(tiny_model_factory, tmp_path):
    model = _edit_config(tiny_model_factory("qwen2"), tmp_path, rope_scaling={"rope_type": "linear", "factor": 4.0})
    meta = describe_gguf(_write(model, tmp_path / "m.gguf"))["metadata"]
    assert meta["qwen2.rope.scaling.factor"] == 4.0
    diff, _ = _max_logit_diff(model, tmp_path / "m.gguf", list(range(10, 90)))
    assert diff < 0.05


def test_gemma3_sliding_window_and_global_layers(tiny_model_factory, tmp_path):
    """6 layers = 5 sliding + 1 global; a 150-token input crosses the 64-token window."""
    model = tiny_model_factory("gemma3", num_layers=6)
    meta = describe_gguf(_write(model, tmp_path / "m.gguf"))["metadata"]
    assert meta["gemma3.attention.sliding_window"] == 64
    assert meta["gemma3.attention.sliding_window_pattern"] == [True] * 5 + [False]
    ids = [1] + list(range(20, 169))
    diff, _ = _max_logit_diff(model, tmp_path / "m.gguf", ids)
    assert diff < 0.05


def test_gemma3_norms_are_stored_plus_one(tiny_model_factory, tmp_path):
    import gguf
    from safetensors.numpy import load_file

    model = tiny_model_factory("gemma3")
    hf = load_file(str(model / "model.safetensors"))
    reader = gguf.GGUFReader(_write(model, tmp_path / "m.gguf"))
    stored = {t.name: np.asarray(t.data) for t in reader.tensors}
    np.testing.assert_allclose(stored["output_norm.weight"], hf["model.norm.weight"] + 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        stored["blk.0.attn_q_norm.weight"], hf["model.layers.0.self_attn.q_norm.weight"] + 1.0, atol=1e-6
    )
    assert "output.weight" not in stored  # tied embeddings: llama.cpp reuses token_embd


def test_unsupported_architecture_lists_supported_ones(tiny_model_factory, tmp_path):
    model = _edit_config(tiny_model_factory("llama"), tmp_path, model_type="gpt_neox")
    with pytest.raises(EdgeDistillError) as exc:
        write_gguf(model, tmp_path / "m.gguf", "f16")
    msg = str(exc.value)
    assert "gpt_neox" in msg and all(t in msg for t in supported_model_types())
    assert not (tmp_path / "m.gguf").exists()


def test_unsupported_features_are_refused(tiny_model_factory, tmp_path):
    model = _edit_config(tiny_model_factory("gemma3"), tmp_path, final_logit_softcapping=30.0)
    with pytest.raises(EdgeDistillError, match="final_logit_softcapping"):
        write_gguf(model, tmp_path / "m.gguf", "f16")


def test_unknown_quant_lists_valid_names(tiny_model_factory, tmp_path):
    with pytest.raises(EdgeDistillError, match="q4_k_m"):
        write_gguf(tiny_model_factory("llama"), tmp_path / "m.gguf", "q7_z")


def test_gemma3_multimodal_config_is_unnested(tiny_model_factory, tmp_path):
    """model_type 'gemma3' with a nested text_config and language_model.* weight names."""
    import shutil

    from safetensors.numpy import load_file, save_file

    src = tiny_model_factory("gemma3")
    out = tmp_path / "mm"
    shutil.copytree(src, out)
    text_cfg = json.loads((src / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({"model_type": "gemma3", "text_config": text_cfg,
                                                 "architectures": ["Gemma3ForConditionalGeneration"]}))
    weights = load_file(str(src / "model.safetensors"))
    renamed = {k.replace("model.", "model.language_model.", 1): v for k, v in weights.items()}
    renamed["model.vision_tower.dummy.weight"] = np.zeros((2, 2), dtype=np.float32)
    save_file(renamed, str(out / "model.safetensors"))
    a = describe_gguf(_write(out, tmp_path / "mm.gguf"))
    b = describe_gguf(_write(src, tmp_path / "text.gguf"))
    assert a["tensor_types"] == b["tensor_types"]
    assert a["metadata"]["general.architecture"] == "gemma3"


def test_describe_shows_array_lengths_not_contents(tiny_model_factory, tmp_path):
    info = describe_gguf(_write(tiny_model_factory("llama"), tmp_path / "m.gguf", "f16"))
    meta = info["metadata"]
    assert meta["tokenizer.ggml.tokens"].startswith("<array of ")
    assert meta["general.architecture"] == "llama"
    assert meta["llama.block_count"] == 2 and meta["llama.embedding_length"] == 64
    assert meta["tokenizer.ggml.pre"] == "gpt-2" and meta["tokenizer.ggml.add_bos_token"] is True
    assert "<|assistant|>" in meta["tokenizer.chat_template"]
    assert info["tensor_type_counts"]["F16"] >= 7


@pytest.mark.slow
def test_kl_grows_as_bits_shrink(model_for, tmp_path):
    """The quantizer is really applied per type: fewer bits, larger divergence from PyTorch."""
    model = model_for("llama", "q4_k_m")
    ref = _reference(model)
    kls = []
    for quant in ("q8_0", "q6_k", "q4_k_m", "q2_k"):
        path = _write(model, tmp_path / f"{quant}.gguf", quant)
        kls.append(verify_artifact(path, GGUF_QUANTS.get(quant).spec, ref).figures["kl_mean"])
    assert kls == sorted(kls) and kls[-1] > 10 * kls[0], kls


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_verification_catches_a_missing_weight_transform(arch, tiny_model_factory, tmp_path, monkeypatch):
    """Without llama's q/k RoPE re-ordering or Gemma's norm +1 the file still loads and generates, but
    verification fails it by a wide margin: the transforms are necessary and the thresholds can fail."""
    import dataclasses

    from edgedistill.export.gguf import architectures

    model = tiny_model_factory(TINY_NAME[arch])
    broken = dataclasses.replace(ARCHITECTURES.get(arch), transform=lambda name, t, cfg: t)
    monkeypatch.setitem(architectures.ARCHITECTURES._items, arch, broken)
    path = _write(model, tmp_path / "broken.gguf", "f32")
    verdict = verify_artifact(path, GGUF_QUANTS.get("f32").spec, _reference(model))
    assert not verdict.passed
    assert verdict.figures["kl_mean"] > 100 * GGUF_QUANTS.get("f32").spec.max_kl, verdict.figures["kl_mean"]
