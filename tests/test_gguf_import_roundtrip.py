"""HF -> GGUF (the project's exporter, f32/f16) -> import_gguf -> HF: same logits, same tokens.

Covers every architecture of the tiny-model fixtures, the byte-level BPE ("gpt2") GGUF tokenizer
with each pre-tokenizer family, special tokens, the chat template and generation settings, and the
`import-gguf` command; token ids are checked against llama.cpp on the same file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgedistill.cli import main
from edgedistill.gguf_import import build_tokenizer_from_gguf, import_gguf
from edgedistill.gguf_import.probe_strings import probe_strings
from edgedistill.gguf_import.verify import compare_logits, compare_tokenization
from edgedistill.testing.tiny import ARCHITECTURES

sys.path.insert(0, str(Path(__file__).parent))
from gguf_import_helpers import write_gguf_from_hf  # noqa: E402

llama_cpp = pytest.importorskip("llama_cpp")
STRINGS = probe_strings(300, seed=1)


def _export(hf_dir: Path, out: Path, quant: str) -> Path:
    """The project's GGUF exporter (edgedistill.export.gguf)."""
    from edgedistill.export.gguf.writer import write_gguf

    write_gguf(hf_dir, out, quant)
    return out


def _logits(model_dir: Path, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_roundtrip_f32_every_architecture(arch, tiny_model_factory, tiny_tokenizer, tmp_path):
    hf = tiny_model_factory(arch)
    gguf_file = _export(hf, tmp_path / f"{arch}.gguf", "f32")
    out = import_gguf(gguf_file, tmp_path / "imported")

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    # the model's tokenizer as transformers loads it (for qwen2, transformers 5 applies Qwen2's pre-tokenizer)
    original = AutoTokenizer.from_pretrained(hf)
    ids = original("The quick brown fox jumps over the lazy dog. def add(a, b): return a + b")["input_ids"]
    assert tok("The quick brown fox jumps over the lazy dog. def add(a, b): return a + b")["input_ids"] == ids
    # f32 weights survive exactly
    assert torch.allclose(_logits(hf, ids), _logits(out, ids), atol=1e-4)
    # ... and the import behaves like llama.cpp on the same file
    report = compare_logits(gguf_file, out, prompts=["The quick brown fox", "def add(a, b):\n    return"])
    assert report["kl_max"] < 1e-3 and report["top1_agree"] == 1.0
    tokens = compare_tokenization(gguf_file, tok, STRINGS)
    assert tokens["agree"] == tokens["checked"], tokens["mismatches"][:3]
    # the original tokenizer and the rebuilt one agree too
    assert [tok(s)["input_ids"] for s in STRINGS] == [original(s)["input_ids"] for s in STRINGS]


def test_roundtrip_f16_close(tiny_model_factory, tiny_tokenizer, tmp_path):
    hf = tiny_model_factory("llama")
    out = import_gguf(_export(hf, tmp_path / "f16.gguf", "f16"), tmp_path / "imported")
    ids = tiny_tokenizer("Numbers 0 1 2 3 and unicode café 東京")["input_ids"]
    a, b = _logits(hf, ids), _logits(out, ids)
    assert (a - b).abs().max() < 0.05
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_import_keeps_special_tokens_template_and_generation_config(tiny_model_factory, tiny_tokenizer, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    gguf_file = _export(tiny_model_factory("qwen2"), tmp_path / "m.gguf", "f32")
    out = import_gguf(gguf_file, tmp_path / "imported")
    tok = AutoTokenizer.from_pretrained(out)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "<|end|>", "<pad>")
    assert tok.chat_template == tiny_tokenizer.chat_template
    messages = [{"role": "user", "content": "Hi there"}]
    assert tok.apply_chat_template(messages, add_generation_prompt=True) == tiny_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True
    )
    # special tokens: parsed by default (as llama.cpp special=True), plain text with split_special_tokens
    assert tok("<|user|>hi")["input_ids"][1] == tok.convert_tokens_to_ids("<|user|>")
    assert tok.convert_tokens_to_ids("<|user|>") not in tok("<|user|>hi", split_special_tokens=True)["input_ids"]
    assert tok.decode(tok("café 東京 🙂")["input_ids"], skip_special_tokens=True) == "café 東京 🙂"
    gen = GenerationConfig.from_pretrained(out)
    assert gen.bos_token_id == tiny_tokenizer.bos_token_id
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    assert tiny_tokenizer.eos_token_id in eos
    info = json.loads((out / "gguf_import.json").read_text())
    assert info["architecture"] == "qwen2" and info["tokenizer_model"] == "gpt2"


@pytest.mark.parametrize("pre", ["default", "gpt-2", "llama-bpe", "qwen2", "smollm"])
def test_bpe_pre_tokenizers_match_llama_cpp(pre, tiny_model_factory, tmp_path):
    """Each llama.cpp pre-tokenizer family (regex set, ignore_merges) on a 'gpt2' vocabulary."""
    gguf_file = write_gguf_from_hf(tiny_model_factory("llama"), tmp_path / f"{pre}.gguf", pre=pre)
    tokens = compare_tokenization(gguf_file, build_tokenizer_from_gguf(gguf_file), STRINGS)
    assert tokens["agree"] == tokens["checked"] == 2 * len(STRINGS), tokens["mismatches"][:3]


def test_cli_import_with_verify(tiny_model_factory, tmp_path):
    gguf_file = _export(tiny_model_factory("llama"), tmp_path / "m.gguf", "f32")
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(
        main, ["import-gguf", str(gguf_file), "--out", str(out), "--verify", "--verify-strings", "200"]
    )
    assert result.exit_code == 0, result.output
    assert "tokenization vs llama.cpp: 400/400 identical" in result.output
    assert "KL mean" in result.output
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in out.iterdir()
    }


def test_resolve_model_dir_imports_gguf_once(tiny_model_factory, tmp_path, monkeypatch):
    from edgedistill.models import load_causal_lm, resolve_model_dir

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    gguf_file = _export(tiny_model_factory("llama"), tmp_path / "teacher.gguf", "f32")
    first = resolve_model_dir(gguf_file, "teacher")
    assert (first / "config.json").exists() and first.is_relative_to(tmp_path / "cache")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_dir(gguf_file, "teacher") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # cached, not re-imported
    model, tok = load_causal_lm(gguf_file, "teacher")
    assert model.config.model_type == "llama" and tok.eos_token == "<|end|>"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_single_pass_loader_equals_transformers_loader(arch, tiny_model_factory, tmp_path):
    """Our one-pass config + dequantization gives what from_pretrained(gguf_file=...) gives."""
    from edgedistill.gguf_import.importer import _load_weights
    from edgedistill.gguf_import.reader import read_gguf

    gguf_file = _export(tiny_model_factory(arch), tmp_path / f"{arch}.gguf", "f16")
    info = read_gguf(gguf_file)
    ours = _load_weights(gguf_file, info, "float32", fast=True)
    theirs = _load_weights(gguf_file, info, "float32", fast=False)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {k: v for k, v in ours.config.to_diff_dict().items() if k != "dtype"} == {
        k: v for k, v in theirs.config.to_diff_dict().items() if k != "dtype"
    }


def test_concurrent_first_use_imports_once(tmp_path, monkeypatch):
    """accelerate launch / torchrun ranks resolving the same .gguf at once: one imports, the rest wait
    for it (before the lock, a second rank's rename onto the finished directory failed)."""
    import threading
    import time

    import edgedistill.gguf_import as gi
    from edgedistill.atomic import atomic_dir
    from edgedistill.models import resolve_model_dir

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF" + b"\0" * 60)
    calls = []

    def slow_import(src, out):
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough for every other thread to arrive meanwhile
        with atomic_dir(out) as tmp:
            (tmp / "config.json").write_text("{}")

    monkeypatch.setattr(gi, "import_gguf", slow_import)
    results, errors = [], []

    def worker():
        try:
            results.append(resolve_model_dir(gguf_file, "teacher"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1
    assert len(set(results)) == 1 and (results[0] / "config.json").exists()
