"""`edgedistill plan`: rows from a config, a HF directory and a GGUF; memory terms; clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgedistill.bench.plan import MB, RUNTIME_MEMORY, plan, runtime_memory_bytes, shape_from_config
from edgedistill.bench.projection import _params_from_config
from edgedistill.cli import main
from edgedistill.errors import ConfigError
from edgedistill.export.formats import FORMATS
from edgedistill.quant_spec import FormatQuant
from edgedistill.targets import load_target

CONFIG = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_attention_heads": 32,
          "num_key_value_heads": 8, "head_dim": 64, "num_hidden_layers": 16, "vocab_size": 128256,
          "tie_word_embeddings": True}


@pytest.fixture()
def config_file(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(CONFIG))
    return p


def test_plan_from_config_alone(config_file):
    rows = plan(config_file, ["raspberry-pi-5", "raspberry-pi-4"], quants=["q4_k_m", "onnx:int4"], context=2048)
    assert [(r.target, r.format, r.quant) for r in rows] == [
        ("raspberry-pi-5", "gguf", "q4_k_m"), ("raspberry-pi-5", "onnx", "int4"),
        ("raspberry-pi-4", "gguf", "q4_k_m"), ("raspberry-pi-4", "onnx", "int4")]
    params, _ = _params_from_config(CONFIG)
    gguf = rows[0]
    assert gguf.file_mb == pytest.approx(params * FORMATS.get("gguf").quants["q4_k_m"].bits_per_weight / 8 / MB, rel=1e-6)
    # peak = weights + KV cache at the context (f16 for llama.cpp) + the runtime's own memory
    kv = 2 * 16 * 8 * 64 * 2048 * 2 / MB
    assert gguf.kv_cache_mb == pytest.approx(kv)
    assert gguf.peak_memory_mb == pytest.approx(gguf.file_mb + kv + gguf.runtime_memory_mb)
    assert gguf.fits == (gguf.peak_memory_mb <= gguf.memory_budget_mb)
    onnx = rows[1]
    assert onnx.kv_cache_mb == pytest.approx(2 * kv)  # fp32 cache
    assert onnx.runtime_memory_mb > gguf.runtime_memory_mb  # prepacked weights + every position's logits
    for r in rows:
        assert r.predicted_decode_tok_s_low <= r.predicted_decode_tok_s <= r.predicted_decode_tok_s_high
        assert r.predicted_decode_tok_s < r.decode_ceiling_tok_s
    # the Pi 4 (Cortex-A72) is predicted slower than the Pi 5 (Cortex-A76) for the same file
    assert rows[2].predicted_decode_tok_s < rows[0].predicted_decode_tok_s


def test_plan_of_a_hf_directory_and_of_a_gguf(tiny_llama, tmp_path):
    from edgedistill.export.gguf import write_gguf

    hf_rows = plan(tiny_llama, ["raspberry-pi-5"], quants=["f16"])
    gguf = tmp_path / "model.gguf"
    write_gguf(tiny_llama, gguf, "f16")
    rows = plan(gguf, ["raspberry-pi-5"])
    assert len(rows) == 1 and rows[0].format == "gguf" and rows[0].quant == "f16"
    assert rows[0].file_mb == pytest.approx(gguf.stat().st_size / MB)
    assert rows[0].file_size_source == "the artifact's files"
    # the estimate from the config is close to the real file (headers and vocab metadata aside)
    assert hf_rows[0].file_mb == pytest.approx(rows[0].file_mb, rel=0.35)
    with pytest.raises(ConfigError, match="already a gguf:f16 file"):
        plan(gguf, ["raspberry-pi-5"], quants=["q4_k_m"])


def test_runtime_memory_terms():
    """Each term of a runtime's memory follows what it models (edgedistill/bench/memory.py)."""
    from edgedistill.bench.memory import LLAMA_CPP_UBATCH, MemoryFacts, facts_from_config

    # Gemma 3 (the quickstart student's shape): two RoPE bases x cos and sin x 32768 positions x 128 floats,
    # the 67,108,864 bytes the ONNX export reports as 'computed at load time (67108864 bytes not stored)'
    gemma = {"model_type": "gemma3_text", "num_attention_heads": 4, "head_dim": 256, "hidden_size": 640,
             "max_position_embeddings": 32768, "vocab_size": 5593,
             "rope_parameters": {"full_attention": {"rope_theta": 1e6}, "sliding_attention": {"rope_theta": 1e4}}}
    assert facts_from_config(gemma) == MemoryFacts(vocab=5593, heads=4, rotary_bytes=67108864)
    assert facts_from_config(CONFIG).rotary_bytes == 0  # no max_position_embeddings in the config: no table
    facts = MemoryFacts(vocab=32000, heads=8, rotary_bytes=10 * MB)
    size = 100 * MB
    # llama.cpp: the attention scores of a prompt batch grow with prompt x heads x context, up to one ubatch
    short, long = (runtime_memory_bytes("llama.cpp", size, facts, p, 2048) for p in (64, 256))
    assert long - short == RUNTIME_MEMORY["llama.cpp"]["attention_bytes"] * (256 - 64) * 8 * 2048
    assert runtime_memory_bytes("llama.cpp", size, facts, 4 * LLAMA_CPP_UBATCH, 2048) == \
        runtime_memory_bytes("llama.cpp", size, facts, LLAMA_CPP_UBATCH, 2048)
    # onnxruntime: logits of every prompt position; ort-genai: neither logits nor weight copies grow it
    assert runtime_memory_bytes("onnxruntime", size, facts, 256, 2048) > runtime_memory_bytes("onnxruntime", size, facts, 64, 2048)
    assert runtime_memory_bytes("ort-genai", size, facts, 256, 2048) == runtime_memory_bytes("ort-genai", size, facts, 64, 2048)
    # the tables an ONNX graph computes at load count for the ONNX runtimes only
    no_rope = MemoryFacts(vocab=32000, heads=8)
    assert runtime_memory_bytes("ort-genai", size, facts, 64, 2048) > runtime_memory_bytes("ort-genai", size, no_rope, 64, 2048)
    assert runtime_memory_bytes("llama.cpp", size, facts, 64, 2048) == runtime_memory_bytes("llama.cpp", size, no_rope, 64, 2048)
    assert set(RUNTIME_MEMORY) == {"llama.cpp", "onnxruntime", "ort-genai"}


def test_committed_memory_check_used_the_current_constants():
    """benchmarks/results/memory_predict_check.json was reported with RUNTIME_MEMORY as it is now."""
    d = json.loads((Path(__file__).resolve().parent.parent / "benchmarks/results/memory_predict_check.json").read_text())
    assert d["runtime_memory"] == RUNTIME_MEMORY, "rerun benchmarks/memory_predict_check.py report"
    assert {r["format"] for r in d["rows"]} == {"gguf", "onnx", "ort-genai"}
    assert {r["role"] for r in d["rows"]} == {"fit", "check"}


def parse_quant(text):  # how `plan --quant` reads its specs (bare quants allowed)
    return FormatQuant.parse(text, field="quant", bare=True)


def test_quant_parsing_errors():
    assert parse_quant("q4_k_m") == FormatQuant("gguf", "q4_k_m")
    assert parse_quant("ort-genai:int4") == FormatQuant("ort-genai", "int4")
    with pytest.raises(ConfigError, match="is a quant of onnx and ort-genai; say which"):
        parse_quant("int4")
    with pytest.raises(ConfigError, match="quantization 'q4_k_m' is not available for format onnx; valid: fp32"):
        parse_quant("onnx:q4_k_m")
    with pytest.raises(ConfigError, match="no format has this quantization"):
        parse_quant("q3_z")


def test_cli_plan_json_and_errors(config_file, tmp_path):
    r = CliRunner().invoke(main, ["plan", str(config_file), "--quant", "q4_k_m", "-t", "raspberry-pi-5", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)[0]
    for key in ("predicted_decode_tok_s", "decode_ceiling_tok_s", "fits", "peak_memory_mb", "predicted_ttft_ms",
                "file_mb", "calibration"):
        assert key in row
    table = CliRunner().invoke(main, ["plan", str(config_file), "--quant", "q4_k_m", "-t", "raspberry-pi-5"])
    assert table.exit_code == 0 and "| raspberry-pi-5 | gguf:q4_k_m |" in table.output

    mamba = tmp_path / "mamba.json"
    mamba.write_text(json.dumps(dict(CONFIG, model_type="mamba")))
    r = CliRunner().invoke(main, ["plan", str(mamba), "--quant", "q4_k_m", "-t", "raspberry-pi-5"])
    assert r.exit_code != 0 and "field 'model_type' is 'mamba'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["plan", str(config_file), "-t", "raspberry-pi-5"])
    assert r.exit_code != 0 and "--quant is required" in r.output
    r = CliRunner().invoke(main, ["plan", str(config_file), "--quant", "onnx:q4_k_m", "-t", "raspberry-pi-5"])
    assert r.exit_code != 0 and "quantization 'q4_k_m' is not available for format onnx" in r.output


def test_target_missing_predictor_fields_names_the_field(config_file):
    pi5 = dataclasses.replace(load_target("raspberry-pi-5"), peak_gflops=None)
    with pytest.raises(ConfigError, match="field 'peak_gflops' is missing"):
        plan(config_file, [pi5], quants=["q4_k_m"])


def test_llama_cpp_memory_counts_the_tokenizer_tables():
    """llama.cpp keeps ~166 bytes a vocabulary token (benchmarks/llama_vocab_memory.py): 42 MB for Gemma's 262k."""
    from edgedistill.bench.memory import MemoryFacts

    size = 20 * MB
    small, large = MemoryFacts(vocab=8407, heads=4), MemoryFacts(vocab=262144, heads=4)
    grow = runtime_memory_bytes("llama.cpp", size, large, 64, 2048) - runtime_memory_bytes("llama.cpp", size, small, 64, 2048)
    assert grow == pytest.approx(RUNTIME_MEMORY["llama.cpp"]["vocab_bytes"] * (262144 - 8407), abs=1)
    assert 35 * MB < grow < 50 * MB
    for runtime in ("onnxruntime", "ort-genai"):  # their fitted terms already hold their tokenizers
        assert runtime_memory_bytes(runtime, size, large, 64, 64) - runtime_memory_bytes(runtime, size, small, 64, 64) \
            == pytest.approx(RUNTIME_MEMORY[runtime]["logits_bytes"] * 64 * (262144 - 8407), abs=1)


def test_gguf_vocabulary_from_the_token_list_when_no_vocab_size_key(tmp_path):
    """llama.cpp's own converter writes no <arch>.vocab_size (the Gemma 3 file): the token list's length counts."""
    import gguf

    from edgedistill.artifacts import detect_artifact
    from edgedistill.bench.memory import facts_from_artifact

    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_head_count(4)
    w.add_token_list([f"t{i}" for i in range(300)])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    facts = facts_from_artifact(detect_artifact(path))
    assert (facts.vocab, facts.heads) == (300, 4)
