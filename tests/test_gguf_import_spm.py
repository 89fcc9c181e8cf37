"""SentencePiece ('llama') GGUF vocabularies: our tokenizer vs llama.cpp, with and without the
leading-space prefix (Llama 2 / Mistral style vs Gemma style), on a SentencePiece model trained
in-process (byte fallback, user-defined and control pieces)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgedistill.gguf_import import build_tokenizer_from_gguf
from edgedistill.gguf_import.probe_strings import probe_strings
from edgedistill.gguf_import.verify import compare_tokenization

sys.path.insert(0, str(Path(__file__).parent))
from gguf_import_helpers import train_sentencepiece, write_spm_vocab_gguf  # noqa: E402

pytest.importorskip("llama_cpp")
pytest.importorskip("sentencepiece")
STRINGS = probe_strings(500, seed=2)


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
@pytest.mark.parametrize("add_space_prefix", [True, False])
def test_spm_vocab_matches_llama_cpp(model_type, add_space_prefix, tmp_path):
    sp = train_sentencepiece(tmp_path, model_type=model_type)
    gguf_file = write_spm_vocab_gguf(sp, tmp_path / "spm.gguf", add_space_prefix=add_space_prefix)
    tok = build_tokenizer_from_gguf(gguf_file)
    report = compare_tokenization(gguf_file, tok, STRINGS)
    assert report["agree"] == report["checked"] == 2 * len(STRINGS), report["mismatches"][:3]
    # the space prefix shows up as a leading "▁" piece (or merged into the first word)
    first = tok.convert_ids_to_tokens(tok("hello", add_special_tokens=False)["input_ids"])[0]
    assert first.startswith("▁") == add_space_prefix
    # user-defined pieces are cut out of raw text always; control pieces only when parsing specials
    table = tok.convert_tokens_to_ids("<table>")
    assert table in tok("a<table>b", split_special_tokens=True)["input_ids"]
    turn = tok.convert_tokens_to_ids("<start_of_turn>")
    assert turn in tok("<start_of_turn>x")["input_ids"]
    assert turn not in tok("<start_of_turn>x", split_special_tokens=True)["input_ids"]
    text = "Héllo wörld 東京 🙂 one space, no user-defined pieces"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
