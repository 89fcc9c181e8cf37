"""GGUF export of a SentencePiece-style BPE given only as ``tokenizer.json`` (no ``tokenizer.model``).

That is the tokenizer ``import-gguf`` builds for Gemma and that students distilled from a Gemma
``.gguf`` keep. The writer turns it into a llama.cpp ``llama`` (SPM) vocabulary whose scores come from
the merge ranks; llama.cpp's tokenization of the written file must equal the HF tokenizer's and the
tokenization of a GGUF written from the original ``tokenizer.model``, on every probe string, with
special-token parsing on and off and with and without BOS.

The slow test does the same with the real Gemma 3 270M vocabulary (262,144 tokens), comparing with
llama.cpp on the original Gemma GGUF file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.export.gguf import describe_gguf, write_gguf
from edgedistill.gguf_import.probe_strings import probe_strings
from edgedistill.testing.tiny import build_tiny_model
from gguf_import_helpers import gemma_style_spm

llama_cpp = pytest.importorskip("llama_cpp")

TURN = ["<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", "a<end_of_turn>b <start_of_turn> c"]
CHAT_TEMPLATE = "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_BYTE = 1, 2, 3, 4, 6


def _spm_json_model(tmp_path: Path, prefix: bool) -> Path:
    """A tiny gemma3 model whose tokenizer is a SentencePiece BPE converted to tokenizer.json.

    ``tokenizer.model`` stays in ``reference/`` (for a GGUF written the SentencePiece way) and is
    deleted from ``model/``. With ``prefix`` the SentencePiece model adds a dummy "▁" prefix and the
    tokenizer.json gets the matching ``Prepend`` normalizer.
    """
    from tokenizers import AddedToken
    from transformers import GemmaTokenizerFast

    gemma_style_spm(tmp_path / "tokenizer.model", add_dummy_prefix=prefix)
    tok = GemmaTokenizerFast.from_pretrained(str(tmp_path), add_bos_token=True)  # v5: no vocab_file=, no BOS by default
    # a non-special added token (USER_DEFINED in GGUF), matched in the raw text as import-gguf's are
    tok.add_tokens([AddedToken("[multimodal]", special=False, normalized=False)])
    tok.chat_template = CHAT_TEMPLATE
    reference = build_tiny_model("gemma3", tmp_path / "reference", tokenizer=tok, hidden_size=32)
    # transformers 5's save_pretrained writes tokenizer.json only; the reference keeps the SentencePiece file
    shutil.copy2(tmp_path / "tokenizer.model", reference / "tokenizer.model")
    model = build_tiny_model("gemma3", tmp_path / "model", tokenizer=tok, hidden_size=32)
    (model / "tokenizer.model").unlink(missing_ok=True)
    # As import-gguf writes it: a generic fast tokenizer that runs tokenizer.json as it is. (transformers
    # 5's GemmaTokenizer class builds its normalizer in code and would ignore the file's.)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "TokenizersBackend" if "backend" in cfg else "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    # the turn markers are special in the real Gemma 3 tokenizer.json; transformers 5's conversion of a
    # SentencePiece model writes its user-defined symbols as non-special
    tj_path = model / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    for t in tj["added_tokens"]:
        if t["content"] in ("<start_of_turn>", "<end_of_turn>"):
            t["special"] = True
    tj_path.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    if prefix:
        tj_path = model / "tokenizer.json"
        tj = json.loads(tj_path.read_text(encoding="utf-8"))
        tj["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, tj["normalizer"]]}
        tj_path.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    return model


def _llama(path: Path):
    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


def compare(hf, gguf_path: Path, texts, other_gguf: Path | None = None) -> tuple[int, list, list]:
    """(tokenizations compared, mismatches with HF, mismatches with ``other_gguf``)."""
    ours = _llama(gguf_path)
    other = _llama(other_gguf) if other_gguf else None
    n, bad_hf, bad_other = 0, [], []
    try:
        for text in texts:
            for special in (True, False):
                for bos in (True, False):
                    got = ours.tokenize(text.encode("utf-8"), add_bos=bos, special=special)
                    want = hf(text, add_special_tokens=bos, split_special_tokens=not special)["input_ids"]
                    n += 1
                    if got != want:
                        bad_hf.append((text, special, bos, got[:12], want[:12]))
                    if other is not None:
                        ref = other.tokenize(text.encode("utf-8"), add_bos=bos, special=special)
                        if got != ref:
                            bad_other.append((text, special, bos, got[:12], ref[:12]))
    finally:
        ours.close()
        if other is not None:
            other.close()
    return n, bad_hf, bad_other


def _types(path: Path) -> list[int]:
    from edgedistill.gguf_import.reader import read_gguf
    from edgedistill.gguf_import.tokenizer import read_vocab

    return [int(t) for t in read_vocab(read_gguf(path, with_tensors=False)).types]


@pytest.mark.parametrize("prefix", [False, True], ids=["gemma-no-prefix", "dummy-prefix"])
def test_tokenizer_json_only_spm_matches_hf_and_sentencepiece(tmp_path, prefix):
    from transformers import AutoTokenizer

    model = _spm_json_model(tmp_path, prefix)
    ours, ref = tmp_path / "ours.gguf", tmp_path / "ref.gguf"
    write_gguf(model, ours, "f16")
    write_gguf(tmp_path / "reference", ref, "f16")  # through tokenizer.model
    meta = describe_gguf(ours)["metadata"]
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.pre"] == "default"
    assert meta["tokenizer.ggml.add_space_prefix"] is prefix
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert meta["tokenizer.ggml.add_bos_token"] is True and meta["tokenizer.ggml.add_eos_token"] is False
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (2, 1)
    assert (meta["tokenizer.ggml.unknown_token_id"], meta["tokenizer.ggml.padding_token_id"]) == (3, 0)
    hf = AutoTokenizer.from_pretrained(model)
    types = _types(ours)
    assert types[3] == TYPE_UNKNOWN and types[0] == types[2] == TYPE_CONTROL
    assert types[hf.convert_tokens_to_ids("<start_of_turn>")] == TYPE_CONTROL
    assert types[hf.convert_tokens_to_ids("[multimodal]")] == TYPE_USER_DEFINED
    assert types.count(TYPE_BYTE) == 256 and types[hf.convert_tokens_to_ids("<0x41>")] == TYPE_BYTE
    texts = probe_strings(600) + TURN + ["x [multimodal] y", "<0x41> literal byte token text"]
    n, bad_hf, bad_ref = compare(hf, ours, texts, other_gguf=ref)
    assert n == 4 * len(texts)
    assert bad_hf == []
    # The reference (written from tokenizer.model) differs from HF in one case since transformers 5:
    # with special=False, llama.cpp's SentencePiece merging rebuilds "<start_of_turn>" from its
    # characters (the piece's SentencePiece score is 0, the highest), while HF (split_special_tokens)
    # and our tokenizer.json-only file split it. Everything else must agree.
    rebuilt = [b for b in bad_ref if not b[1] and any(m in b[0] for m in ("<start_of_turn>", "<end_of_turn>"))]
    assert [b for b in bad_ref if b not in rebuilt] == []


def test_wrong_scores_would_differ(tmp_path, monkeypatch):
    """The comparison can fail: scores in reverse merge order make llama.cpp tokenize differently."""
    from transformers import AutoTokenizer

    from edgedistill.export.gguf import tokenizer as tok_mod

    model = _spm_json_model(tmp_path, prefix=False)
    real = tok_mod._sentencepiece_bpe_json

    def reversed_scores(*args, **kwargs):
        meta = real(*args, **kwargs)
        meta.scores = [-s for s in meta.scores]
        return meta

    monkeypatch.setattr(tok_mod, "_sentencepiece_bpe_json", reversed_scores)
    wrong = tmp_path / "wrong.gguf"
    write_gguf(model, wrong, "f16")
    _, bad_hf, _ = compare(AutoTokenizer.from_pretrained(model), wrong, probe_strings(100))
    assert len(bad_hf) > 50


def test_unsupported_normalizer_is_refused(tmp_path):
    model = _spm_json_model(tmp_path, prefix=False)
    tj_path = model / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    tj["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, tj["normalizer"]]}
    tj_path.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(EdgeDistillError, match=r"tokenizer\.json: normalizer step 'NFKC'"):
        write_gguf(model, tmp_path / "m.gguf", "f16")
    assert not (tmp_path / "m.gguf").exists()


# ----------------------------------------------------------------------------- the real Gemma vocabulary


@pytest.mark.slow
def test_real_gemma_tokenizer_json_exports_to_the_original_vocabulary(tmp_path, gemma_gguf):
    """A small gemma3 model with the imported Gemma 3 tokenizer (tokenizer.json only), written to GGUF:
    llama.cpp tokenizes like the HF tokenizer and like the original Gemma file, on 1,200 probe strings."""
    from transformers import AutoTokenizer

    from edgedistill.gguf_import import build_tokenizer_from_gguf
    from edgedistill.gguf_import.reader import read_gguf
    from edgedistill.gguf_import.tokenizer import read_vocab

    original = gemma_gguf
    tok = build_tokenizer_from_gguf(original)
    model = build_tiny_model("gemma3", tmp_path / "model", tokenizer=tok, vocab_size=262144, hidden_size=32)
    assert not (model / "tokenizer.model").exists()
    out = tmp_path / "model.gguf"
    write_gguf(model, out, "q8_0")
    ours_vocab = read_vocab(read_gguf(out, with_tensors=False))
    real_vocab = read_vocab(read_gguf(original, with_tensors=False))
    assert ours_vocab.tokens == real_vocab.tokens
    for key in ("model", "pre", "bos_id", "eos_id", "unk_id", "pad_id", "add_bos", "add_eos", "add_space_prefix"):
        assert getattr(ours_vocab, key) == getattr(real_vocab, key), key
    # same types, except <unk> (UNKNOWN here, CONTROL there) and "</s>" (CONTROL here, USER_DEFINED there,
    # which llama.cpp turns into CONTROL by its text): both parsed the same way
    differ = {real_vocab.tokens[i] for i in range(len(real_vocab.tokens)) if ours_vocab.types[i] != real_vocab.types[i]}
    assert differ <= {"<unk>", "</s>"}
    hf = AutoTokenizer.from_pretrained(model)
    texts = probe_strings(1200)
    n, bad_hf, bad_original = compare(hf, out, texts, other_gguf=original)
    assert n == 4800
    assert bad_hf == []
    assert bad_original == []
