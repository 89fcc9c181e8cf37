"""Target-aware export: candidate sizes, the choice and its reasons, nothing-fits errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import edgedistill.export  # noqa: F401  (registers the real formats)
from edgedistill.bench.memory import facts_from_config, runtime_memory_bytes
from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS, ExportFormat, QuantSpec
from edgedistill.export.select import candidates_for, model_dims, select_for_target
from edgedistill.export.source import SourceModel
from edgedistill.targets import TargetProfile, list_targets

MB = 2**20
CONFIG = {"model_type": "llama", "num_hidden_layers": 10, "num_attention_heads": 8, "num_key_value_heads": 2,
          "hidden_size": 512, "max_position_embeddings": 4096}


class _Fmt(ExportFormat):
    supported_architectures = ("llama",)

    def __init__(self, name, quants):
        self.name = name
        self._real = FORMATS.get(name)  # made before the fixture replaces it: the KV rule stays the format's
        self.quants = {q: QuantSpec(q, b, max_kl=0.1, min_greedy_match=0.5) for q, b in quants.items()}

    def write(self, model_dir, out_dir, quant, options):  # pragma: no cover - never called here
        raise AssertionError

    def kv_cache_dtype(self, quant):
        return self._real.kv_cache_dtype(quant)


@pytest.fixture
def fake_formats(monkeypatch):
    monkeypatch.setitem(FORMATS._items, "gguf", _Fmt("gguf", {"q8_0": 8.5, "q4_k_m": 4.85, "f16": 16}))
    monkeypatch.setitem(FORMATS._items, "onnx", _Fmt("onnx", {"fp32": 32, "int4": 4.5}))


def _source(params: int, config: dict = CONFIG) -> SourceModel:
    return SourceModel(Path("/m"), Path("/m"), config, config["model_type"], (), params)


def _profile(budget_mb=1000.0, context=2048, overhead=100.0, formats=("gguf", "onnx"),
             preferred=("gguf:q4_k_m", "onnx:int4")) -> TargetProfile:
    return TargetProfile(
        name="testdev", description="test device", cpu_big_cores=4, cpu_little_cores=0, isa="armv8.2-a",
        ram_mb=max(budget_mb * 2, 2048), memory_budget_mb=budget_mb, memory_bandwidth_gbs=10.0, peak_gflops=50.0,
        runtimes=("llama.cpp", "onnxruntime"), formats=formats, preferred_quants=preferred, context_length=context,
        runtime_overhead_mb=overhead, threads=4,
        sources={k: "test" for k in ("memory_bandwidth_gbs", "peak_gflops", "ram_mb", "memory_budget_mb")},
    )


def test_sizes_follow_the_formula(fake_formats):
    params = 100_000_000
    cands = {c.spec: c for c in candidates_for(_source(params), _profile(context=2048))}
    assert set(cands) == {"gguf:q8_0", "gguf:q4_k_m", "gguf:f16", "onnx:fp32", "onnx:int4"}
    c = cands["gguf:q4_k_m"]
    assert c.weights_mb == pytest.approx(params * 4.85 / 8 / MB, rel=1e-6)
    kv = 2 * 10 * 2 * (512 // 8) * 2048 * 2  # K+V x layers x kv_heads x head_dim x ctx x fp16
    assert c.kv_cache_mb == pytest.approx(kv / MB)
    assert cands["onnx:int4"].kv_cache_mb == pytest.approx(2 * kv / MB)  # fp32 cache
    # the runtime's memory is llama.cpp's terms (as `plan` predicts), not the profile's 100 MB
    runtime = runtime_memory_bytes("llama.cpp", int(params * 4.85 / 8), facts_from_config(CONFIG), 128, 2048) / MB
    assert c.overhead_mb == pytest.approx(runtime, rel=1e-6)
    assert c.need_mb == pytest.approx(c.weights_mb + c.kv_cache_mb + runtime)


def test_fit_follows_the_runtime_memory_terms_not_the_profile_overhead(fake_formats):
    """Both ways round: the profile's static overhead says onnx:int4 fits 300 MB, onnxruntime's terms (its
    process, a prepacked copy of the weights) say not; a 120 MB static overhead says gguf:q4_k_m does not
    fit 150 MB, llama.cpp's terms (~69 MB here) say it does. export --target goes by the terms."""
    source = _source(100_000_000)
    loose = _profile(budget_mb=300, overhead=10, preferred=("onnx:int4", "gguf:q4_k_m"))
    onnx = {c.spec: c for c in candidates_for(source, loose)}["onnx:int4"]
    assert loose.fit_check(int(onnx.weights_mb * MB), int(onnx.kv_cache_mb * MB)).fits
    assert not onnx.fits and onnx.overhead_mb > 300
    assert select_for_target(source, loose).chosen.spec == "gguf:q4_k_m"

    tight = _profile(budget_mb=150, overhead=120, preferred=("gguf:q4_k_m",))
    q4 = {c.spec: c for c in candidates_for(source, tight)}["gguf:q4_k_m"]
    assert not tight.fit_check(int(q4.weights_mb * MB), int(q4.kv_cache_mb * MB)).fits
    assert q4.fits and q4.overhead_mb < 120
    assert select_for_target(source, tight).chosen.spec == "gguf:q4_k_m"


def test_first_preferred_that_fits_wins(fake_formats):
    sel = select_for_target(_source(100_000_000), _profile(budget_mb=1000))
    assert sel.chosen.spec == "gguf:q4_k_m" and "most preferred" in sel.reason
    text = sel.explain()
    assert "target testdev: memory budget 1000 MB" in text and "* gguf:q4_k_m" in text and "onnx:fp32" in text


def test_a_preferred_entry_that_is_too_big_is_skipped_and_named(fake_formats):
    # 1.2B params: f16 needs ~2.3 GB; q4_k_m ~ 694 MB weights + 10 MB KV + 100 MB runtime fits in 900
    prof = _profile(budget_mb=900, preferred=("gguf:f16", "gguf:q4_k_m", "onnx:int4"))
    sel = select_for_target(_source(1_200_000_000), prof)
    assert sel.chosen.spec == "gguf:q4_k_m"
    assert "more preferred but too big: gguf:f16" in sel.reason


def test_without_a_fitting_preferred_entry_the_highest_precision_fit_is_chosen(fake_formats):
    sel = select_for_target(_source(10_000_000), _profile(budget_mb=1000, preferred=()))
    assert sel.chosen.spec == "onnx:fp32" and "highest-precision" in sel.reason


def test_nothing_fits_gives_the_numbers(fake_formats):
    with pytest.raises(EdgeDistillError) as info:
        select_for_target(_source(3_000_000_000), _profile(budget_mb=1000))
    msg = str(info.value)
    # onnx:int4 has the smaller file, but onnxruntime prepacks a second copy of its weights: the
    # smallest need is llama.cpp's q4_k_m
    assert "nothing fits the 1000 MB memory budget" in msg and "the smallest, gguf:q4_k_m, needs" in msg
    assert "onnx:int4" in msg and "KV cache" in msg


def test_context_is_capped_at_the_model_maximum(fake_formats):
    cfg = dict(CONFIG, max_position_embeddings=512)
    sel = select_for_target(_source(1_000_000, cfg), _profile(context=8192))
    assert sel.context_length == 512


def test_unsupported_architecture(fake_formats):
    cfg = dict(CONFIG, model_type="mamba")
    with pytest.raises(EdgeDistillError, match="supports architecture 'mamba'|supports\narchitecture"):
        select_for_target(_source(1_000_000, cfg), _profile())


def test_model_dims_reads_gqa_and_head_dim():
    assert model_dims(CONFIG) == (10, 2, 64, 4096)
    assert model_dims({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64, "head_dim": 32}) == (2, 4, 32, None)
    with pytest.raises(EdgeDistillError, match="num_hidden_layers"):
        model_dims({"num_attention_heads": 4})


@pytest.mark.parametrize("profile", list_targets(), ids=lambda p: p.name)
def test_every_builtin_target_chooses_for_a_small_model_or_explains(profile):
    """With the real formats: a 1M-parameter llama fits every profile but the microcontroller."""
    cfg = dict(CONFIG, num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2)
    try:
        sel = select_for_target(_source(1_000_000, cfg), profile)
    except EdgeDistillError as exc:
        assert "nothing fits" in str(exc) and f"{profile.memory_budget_mb:.0f} MB" in str(exc)
        assert profile.memory_budget_mb < 64
        return
    assert sel.chosen.fits and sel.chosen.format in profile.formats
    if any(c.preferred_rank is not None and c.fits for c in sel.candidates):
        assert sel.chosen.preferred_rank == min(c.preferred_rank for c in sel.candidates
                                                if c.preferred_rank is not None and c.fits)
