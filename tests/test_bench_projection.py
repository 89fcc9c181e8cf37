"""Projection math, model shapes, statistics and CV flagging (no subprocesses)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgedistill.artifacts import detect_artifact
from edgedistill.bench.harness import BenchConfig, cv, percentile, summarize
from edgedistill.bench.projection import ModelShape, model_shape, project, static_fit
from edgedistill.errors import ConfigError
from edgedistill.targets import load_target


def _shape(**kw):
    base = dict(params=100_000_000, weight_bytes=60_000_000, bytes_read_per_token=50_000_000, num_layers=12,
                num_kv_heads=4, head_dim=64, kv_bytes_per_value=2, source="test")
    base.update(kw)
    return ModelShape(**base)


def test_decode_ceiling_is_bandwidth_over_bytes_per_token():
    shape = _shape()
    pi5 = load_target("raspberry-pi-5")  # 17.1 GB/s, 153.6 GFLOP/s, context 4096
    p = project(shape, pi5)
    kv = 2 * 12 * 4 * 64 * 4096 * 2
    assert p.bytes_per_token == 50_000_000 + kv
    assert p.decode_ceiling_tps == pytest.approx(17.1e9 / (50_000_000 + kv))
    assert p.prefill_ceiling_tps == pytest.approx(153.6e9 / (2 * 100_000_000))
    assert p.kv_cache_mb == pytest.approx(kv / 2**20)
    assert p.label == "projected"
    # a shorter context reads less KV cache per token: a higher ceiling
    assert project(shape, pi5, context=128).decode_ceiling_tps > p.decode_ceiling_tps


def test_static_fit_uses_size_kv_cache_and_overhead():
    esp = load_target("esp32-s3")  # 7 MB budget, 0.5 MB overhead, context 256
    tiny = _shape(weight_bytes=2 * 2**20, num_layers=2, num_kv_heads=1, head_dim=16)
    assert static_fit(tiny, esp, 2 * 2**20).fits
    big = _shape()
    fit = static_fit(big, esp, 60_000_000)
    assert not fit.fits and fit.need_mb > fit.budget_mb


def test_static_fit_of_a_runtime_uses_its_memory_terms():
    """bench's static check goes by the runtime's memory terms (as `plan`): a 2 MB model fits the
    microcontroller's 7 MB against its 0.5 MB static overhead, but not beside llama.cpp's process."""
    from edgedistill.bench.memory import MemoryFacts, runtime_memory_bytes

    esp = load_target("esp32-s3")
    tiny = _shape(weight_bytes=2 * 2**20, num_layers=2, num_kv_heads=1, head_dim=16)
    assert static_fit(tiny, esp, 2 * 2**20).fits
    fit = static_fit(tiny, esp, 2 * 2**20, "llama.cpp", MemoryFacts(vocab=1000, heads=2), prompt_len=8)
    assert not fit.fits
    expected = runtime_memory_bytes("llama.cpp", 2 * 2**20, MemoryFacts(vocab=1000, heads=2), 8, esp.context_length)
    assert fit.overhead_mb == pytest.approx(expected / 2**20)
    assert "llama.cpp's memory terms" in fit.explain()
    # a runtime without terms (PyTorch) keeps the profile's overhead, and says so
    torch_fit = static_fit(tiny, esp, 2 * 2**20, "torch")
    assert torch_fit.overhead_mb == esp.runtime_overhead_mb and "runtime_overhead_mb" in torch_fit.explain()


def test_bench_static_check_uses_the_runtime_memory_terms(tiny_llama_gguf, tmp_path):
    """Through `bench`: a profile whose static overhead (1 MB) lets the tiny GGUF fit 40 MB is reported
    does-not-fit (static) from llama.cpp's terms (~61 MB process), without running anything."""
    import yaml

    from edgedistill.bench import BenchConfig, bench

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "targets" / "raspberry-pi-5.yaml").read_text())
    data.update(name="small-board", threads=1, cpu_big_cores=1, memory_budget_mb=40,
                runtime_overhead_mb=1, context_length=64)
    (tmp_path / "small-board.yaml").write_text(yaml.safe_dump(data))
    report = bench(BenchConfig(artifacts=[str(tiny_llama_gguf)], targets=["small-board"], targets_dir=str(tmp_path),
                               prompt_lens=[8], gen_len=4, progress=False, out=str(tmp_path / "out")))
    rows = {r["label"]: r for r in report.rows}
    assert rows["host-emulated"]["status"] == "does-not-fit" and rows["host-emulated"]["reason"] == "static"
    assert "llama.cpp's memory terms" in rows["host-emulated"]["note"]
    assert rows["projected"]["status"] == "does-not-fit"


def test_model_shape_of_hf_directory(tiny_llama):
    art = detect_artifact(tiny_llama)
    shape = model_shape(art)
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(Path(tiny_llama) / "model.safetensors"))
    assert shape.params == sum(t.numel() for t in tensors.values())  # the formula matches the real count
    cfg = json.loads((Path(tiny_llama) / "config.json").read_text())
    assert shape.num_layers == cfg["num_hidden_layers"] and shape.num_kv_heads == cfg["num_key_value_heads"]
    embed = cfg["vocab_size"] * cfg["hidden_size"] * 4  # untied fp32 embedding is not read whole per token
    assert shape.bytes_read_per_token == pytest.approx(shape.weight_bytes - embed, rel=0.01)
    assert torch is not None


def test_model_shape_of_gguf_reads_the_tensor_table(gemma_gguf):
    shape = model_shape(detect_artifact(gemma_gguf))
    assert 250e6 < shape.params < 300e6  # Gemma 3 "270M"
    assert shape.num_layers == 18 and shape.kv_bytes_per_value == 2
    assert shape.weight_bytes < gemma_gguf.stat().st_size


def test_percentile_and_cv():
    vals = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(vals, 50) == 3.0 and percentile(vals, 90) == pytest.approx(4.6)
    assert percentile([], 50) is None
    assert cv([10, 10, 10]) == 0
    assert cv([9, 10, 11]) == pytest.approx(math.sqrt(1.0) / 10)
    assert cv([5]) is None


def _sample(decode, ttft=0.01):
    return {"ttft_s": ttft, "prefill_tps": 8 / ttft, "decode_tps": decode, "gen_tokens": 4, "itl_s": [1 / decode] * 3, "total_s": 0.1}


def test_summary_flags_high_cv():
    steady = summarize({"samples": [_sample(100), _sample(101), _sample(99)], "peak_rss_bytes": 2**20}, 0.10)
    noisy = summarize({"samples": [_sample(100), _sample(60), _sample(140)]}, 0.10)
    assert steady["high_cv"] is False and steady["decode_cv"] < 0.02
    assert noisy["high_cv"] is True and noisy["decode_cv"] > 0.3
    assert steady["decode_tps"] == 100 and steady["peak_rss_mb"] == 1.0
    assert steady["itl_p50_ms"] == pytest.approx(10.0)


def test_bench_config_validation():
    with pytest.raises(ConfigError, match="'gen_len'"):
        BenchConfig(artifacts=["x"], gen_len=1)
    with pytest.raises(ConfigError, match="'mode'"):
        BenchConfig(artifacts=["x"], mode="cloud")
    with pytest.raises(ConfigError, match="'artifacts'"):
        BenchConfig(artifacts=[])
    assert BenchConfig(artifacts="m", prompt_lens="128,512").prompt_lens == [128, 512]
    from edgedistill.config import from_dict

    cfg = from_dict(BenchConfig, {"artifacts": ["a"], "targets": ["raspberry-pi-5"], "prompt_lens": [64]}, where="recipe.yaml [bench]")
    assert cfg.targets == ["raspberry-pi-5"]
    with pytest.raises(ConfigError, match="recipe.yaml \\[bench\\].*unknown key"):
        from_dict(BenchConfig, {"artifacts": ["a"], "target": "x"}, where="recipe.yaml [bench]")
