"""llama.cpp must tokenize a GGUF export exactly as the Hugging Face tokenizer does.

Byte-level BPE with each supported pre-tokenizer regex (gpt-2, llama-bpe, qwen2) and a SentencePiece
(Gemma-style, byte fallback) tokenizer trained in-process, over a varied corpus: several scripts,
digits, whitespace runs, code, emoji, special tokens written in the text.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.export.gguf import describe_gguf, write_gguf
from edgedistill.export.gguf.tokenizer import LLAMA3_REGEX, PRE_TOKENIZERS, QWEN2_REGEX
from edgedistill.export.verify import TOKENIZER_CORPUS
from edgedistill.runtimes import open_runtime
from edgedistill.testing.tiny import CHAT_TEMPLATE, CORPUS, SPECIAL_TOKENS, build_tiny_model

EXTRA = [
    "",
    " ",
    "\n",
    "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n",
    "text<|end|>more <s> inside",
    "don't won't it's I'm we'll they've she'd",
    "    def f(x):\n        return x ** 2  # square\n",
    "1234567890 12 345 6789",
    "a\u00a0non-breaking space and\u2003em space",
    "Mixed 東京2026年 and Ünïcödé",
    "🙂🙂🙂 emoji run",
]
CORPUS_ALL = list(TOKENIZER_CORPUS) + list(CORPUS) + EXTRA


def _mismatches(model_dir: Path, gguf_path: Path, texts) -> list:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(model_dir)
    bad = []
    with open_runtime(gguf_path) as rt:
        for text in texts:
            for special in (True, False):
                want = hf(text, add_special_tokens=special).input_ids
                got = rt.tokenize(text, add_special_tokens=special)
                if want != got:
                    bad.append((text, special, want[:16], got[:16]))
            # decoding the ids gives the text back (no special tokens in these)
            if "<" not in text:
                ids = rt.tokenize(text, add_special_tokens=False)
                assert rt.detokenize(ids) == text
    return bad


def _bpe_tokenizer(regex: str | None):
    """A byte-level BPE like testing.tiny.build_tokenizer, with ``regex`` split before ByteLevel."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    if regex is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(CORPUS) * 4 + list(TOKENIZER_CORPUS), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "</s>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def test_tiny_tokenizer_matches_hf(tiny_model_factory, tmp_path):
    model = tiny_model_factory("llama")
    path = tmp_path / "m.gguf"
    write_gguf(model, path, "f16")
    assert describe_gguf(path)["metadata"]["tokenizer.ggml.pre"] == "gpt-2"
    assert _mismatches(model, path, CORPUS_ALL) == []


@pytest.mark.parametrize("regex,pre", [(LLAMA3_REGEX, "llama-bpe"), (QWEN2_REGEX, "qwen2")])
def test_pre_tokenizer_regexes_match_hf(regex, pre, tmp_path):
    tok = _bpe_tokenizer(regex)
    # qwen3, not qwen2: transformers 5 loads a qwen2 directory with Qwen2Tokenizer, whose own
    # pre-tokenizer replaces the one under test
    model = build_tiny_model("qwen3", tmp_path / "model", tokenizer=tok)
    path = tmp_path / "m.gguf"
    write_gguf(model, path, "f16")
    assert describe_gguf(path)["metadata"]["tokenizer.ggml.pre"] == pre
    assert _mismatches(model, path, CORPUS_ALL) == []


def test_wrong_pre_tokenizer_would_differ(tmp_path, monkeypatch):
    """The check above can fail: the llama-bpe regex labelled as gpt-2 tokenizes differently."""
    from edgedistill.export.gguf import tokenizer as tok_mod

    tok = _bpe_tokenizer(LLAMA3_REGEX)
    model = build_tiny_model("qwen3", tmp_path / "model", tokenizer=tok)  # not qwen2: see above
    monkeypatch.setitem(tok_mod.PRE_TOKENIZERS, LLAMA3_REGEX, "gpt-2")
    wrong = tmp_path / "wrong.gguf"
    write_gguf(model, wrong, "f16")
    assert describe_gguf(wrong)["metadata"]["tokenizer.ggml.pre"] == "gpt-2"
    assert _mismatches(model, wrong, CORPUS_ALL) != []


def test_unknown_pre_tokenizer_is_refused(tmp_path):
    tok = _bpe_tokenizer(r"\p{L}+|\s+|.")
    model = build_tiny_model("llama", tmp_path / "model", tokenizer=tok)
    with pytest.raises(EdgeDistillError) as exc:
        write_gguf(model, tmp_path / "m.gguf", "f16")
    assert all(name in str(exc.value) for name in PRE_TOKENIZERS.values())
    assert not (tmp_path / "m.gguf").exists()


def _spm_tokenizer_dir(tmp_path: Path):
    """A Gemma-style SentencePiece (BPE, byte fallback, no dummy prefix) tokenizer, trained in-process."""
    import sentencepiece as spm
    from transformers import GemmaTokenizerFast

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(CORPUS) * 4 + list(TOKENIZER_CORPUS)), model_writer=buf, vocab_size=700,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, add_dummy_prefix=False,
        remove_extra_whitespaces=False, normalization_rule_name="identity", split_digits=True,
        allow_whitespace_only_pieces=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
        eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], minloglevel=2,
    )
    (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
    return GemmaTokenizerFast.from_pretrained(str(tmp_path), add_bos_token=True)  # v5: no vocab_file=, no BOS by default


def test_sentencepiece_tokenizer_matches_hf(tmp_path):
    tok = _spm_tokenizer_dir(tmp_path)
    model = build_tiny_model("gemma3", tmp_path / "model", tokenizer=tok)
    # transformers 5's save_pretrained no longer writes the SentencePiece file (only tokenizer.json,
    # whose export path test_gguf_tokenizer_spm_json.py covers); real Gemma checkpoints ship it
    shutil.copy2(tmp_path / "tokenizer.model", model / "tokenizer.model")
    path = tmp_path / "m.gguf"
    write_gguf(model, path, "f16")
    meta = describe_gguf(path)["metadata"]
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.add_space_prefix"] is False
    assert meta["tokenizer.ggml.scores"].startswith("<array of")
    texts = CORPUS_ALL + ["<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"]
    assert _mismatches(model, path, texts) == []


def test_duplicate_token_strings_are_refused(tmp_path):
    # llama.cpp aborts the process on such a vocabulary, so the writer must refuse it first
    from edgedistill.export.gguf.tokenizer import _check_unique

    _check_unique(["a", "b", "<s>"], tmp_path)
    with pytest.raises(EdgeDistillError, match="appears twice"):
        _check_unique(["a", "b", "a"], tmp_path)


def test_gemma3_metadata_has_every_key_of_a_real_gemma3_file(gemma_gguf, tmp_path):
    """Our gemma3 export writes every architecture/tokenizer key the real Gemma 3 270M GGUF carries."""
    real_file = gemma_gguf
    tok = _spm_tokenizer_dir(tmp_path)
    model = build_tiny_model("gemma3", tmp_path / "model", tokenizer=tok)
    write_gguf(model, tmp_path / "m.gguf", "f16")
    ours = describe_gguf(tmp_path / "m.gguf")["metadata"]
    real = describe_gguf(real_file)["metadata"]
    informational = {"general.basename", "general.license", "general.size_label", "general.tags",
                     "tokenizer.ggml.add_sep_token"}
    assert set(real) - set(ours) <= informational
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                "general.architecture", "gemma3.rope.freq_base"):
        assert ours[key] == real[key], key
