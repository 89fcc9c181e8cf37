"""Vocabulary pruning (edgedistill.prune.vocab) on byte-level BPE and SentencePiece (Gemma-style) tokenizers.

The guarantees, each checked on both kinds: any text round-trips (decode(encode(s)) == s, also scripts
and emoji the calibration texts never had); on the calibration texts the student's ids are the
teacher's ids mapped; special tokens keep their roles; the student's logits are the teacher's logits
at the kept ids; the GGUF export of the pruned student tokenizes in llama.cpp as its HF tokenizer does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgedistill.errors import ConfigError
from edgedistill.prune.vocab import prune_vocabulary
from edgedistill.testing.tiny import CORPUS, build_tiny_model
from edgedistill.vocab_map import MAP_FILE, load_vocab_map, vocab_hash
from gguf_import_helpers import gemma_style_spm

CALIBRATION = CORPUS[:9]  # prose, digits, code, whitespace, a little unicode
UNSEEN = ["Ελληνικά и кириллица, עברית, हिन्दी 🦀🎉👩‍💻", "zzz QQQ 0xDEADBEEF ~~~ ¿¡ ∮ ½", "\t\t\n  \r\n x", "ﬁ ﷽ 𝔘𝔫𝔦"]
SPM_CHAT = "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"


def _spm_model(tmp_path: Path, keep_model_file: bool) -> Path:
    """A tiny gemma3 model with a SentencePiece BPE tokenizer (byte fallback), as Gemma's."""
    import shutil

    from tokenizers import AddedToken
    from transformers import GemmaTokenizerFast

    gemma_style_spm(tmp_path / "tokenizer.model", add_dummy_prefix=False)
    # transformers 5: vocab_file= builds an empty tokenizer, and BOS is added only when asked for
    tok = GemmaTokenizerFast.from_pretrained(str(tmp_path), add_bos_token=True)
    # the turn markers are special in the real Gemma 3 tokenizer (and llama.cpp forces <end_of_turn> to
    # CONTROL); transformers 5 converts SentencePiece user-defined symbols as non-special
    tok.add_tokens([AddedToken(m, special=True, normalized=False) for m in ("<start_of_turn>", "<end_of_turn>")],
                   special_tokens=True)
    tok.chat_template = SPM_CHAT
    model = build_tiny_model("gemma3", tmp_path / "spm-model", tokenizer=tok, hidden_size=32)
    if keep_model_file:  # transformers 5's save_pretrained writes tokenizer.json only
        shutil.copy2(tmp_path / "tokenizer.model", model / "tokenizer.model")
    else:
        (model / "tokenizer.model").unlink(missing_ok=True)
    return model


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """kind -> teacher dir: byte-level BPE untied (llama) and tied (gemma3), SPM with and without tokenizer.model."""
    from edgedistill.testing.tiny import build_tokenizer

    root = tmp_path_factory.mktemp("prune-vocab")
    tok = build_tokenizer()
    return {
        "bpe-llama": build_tiny_model("llama", root / "llama", tokenizer=tok),
        "bpe-gemma3-tied": build_tiny_model("gemma3", root / "gemma3", tokenizer=tok),
        "spm-model-file": _spm_model(root / "spm1", keep_model_file=True),
        "spm-json-only": _spm_model(root / "spm2", keep_model_file=False),
    }


@pytest.fixture(scope="module")
def pruned(teachers, tmp_path_factory):
    root = tmp_path_factory.mktemp("pruned")
    out = {}
    for kind, teacher in teachers.items():
        report = prune_vocabulary(teacher, list(CALIBRATION), root / kind)
        out[kind] = (teacher, root / kind, report)
    return out


KINDS = ["bpe-llama", "bpe-gemma3-tied", "spm-model-file", "spm-json-only"]


def _toks(teacher, student):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher), AutoTokenizer.from_pretrained(student)


@pytest.mark.parametrize("kind", KINDS)
def test_calibration_ids_are_the_teacher_ids_mapped(pruned, kind):
    teacher, student, report = pruned[kind]
    t_tok, s_tok = _toks(teacher, student)
    vmap = load_vocab_map(student)
    assert len(vmap) == report.kept == len(s_tok) < len(t_tok)
    assert vmap.teacher_vocab_sha256 == vocab_hash(t_tok)
    assert report.token_coverage == 1.0 and report.identical_texts == 1.0
    m = vmap.student_to_teacher
    for text in CALIBRATION:
        for special in (False, True):
            s_ids = s_tok(text, add_special_tokens=special).input_ids
            assert [m[i] for i in s_ids] == t_tok(text, add_special_tokens=special).input_ids
    chat = [{"role": "user", "content": CALIBRATION[0]}]
    s_chat = s_tok.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    t_chat = t_tok.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
    assert [m[i] for i in s_chat] == t_chat


@pytest.mark.parametrize("kind", KINDS)
def test_any_text_round_trips(pruned, kind):
    from edgedistill.gguf_import.probe_strings import probe_strings

    teacher, student, _ = pruned[kind]
    t_tok, s_tok = _toks(teacher, student)
    checked = 0
    for text in UNSEEN + probe_strings(150, seed=3):
        if t_tok.decode(t_tok(text, add_special_tokens=False).input_ids) != text:
            continue  # the teacher normalizes it itself
        ids = s_tok(text, add_special_tokens=False).input_ids
        assert s_tok.decode(ids) == text
        checked += 1
    assert checked >= 100
    # text outside the calibration set does need the fallback: more (shorter) tokens than the teacher's
    held_out = CORPUS[len(CALIBRATION):]
    n_s = sum(len(s_tok(t, add_special_tokens=False).input_ids) for t in held_out)
    n_t = sum(len(t_tok(t, add_special_tokens=False).input_ids) for t in held_out)
    assert n_s > n_t


@pytest.mark.parametrize("kind", KINDS)
def test_specials_keep_their_roles(pruned, kind):
    from transformers import AutoConfig, GenerationConfig

    teacher, student, _ = pruned[kind]
    t_tok, s_tok = _toks(teacher, student)
    m = load_vocab_map(student).student_to_teacher
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(s_tok, role) == getattr(t_tok, role), role
        assert m[getattr(s_tok, role + "_id")] == getattr(t_tok, role + "_id"), role
    assert s_tok.chat_template == t_tok.chat_template
    for loader in (AutoConfig, GenerationConfig):
        t_cfg, s_cfg = loader.from_pretrained(teacher), loader.from_pretrained(student)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            assert m[getattr(s_cfg, name)] == getattr(t_cfg, name), (loader.__name__, name)
    markers = ["<start_of_turn>", "<end_of_turn>"] if kind.startswith("spm") else ["<|user|>", "<|end|>"]
    for marker in markers:
        (sid,) = s_tok(marker, add_special_tokens=False).input_ids
        assert s_tok.convert_ids_to_tokens(sid) == marker and m[sid] == t_tok.convert_tokens_to_ids(marker)


@pytest.mark.parametrize("kind", KINDS)
def test_student_logits_are_the_teacher_logits_at_the_kept_ids(pruned, kind):
    from transformers import AutoModelForCausalLM

    teacher, student, report = pruned[kind]
    t_model = AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32).eval()
    s_model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32).eval()
    assert s_model.config.vocab_size == report.kept
    assert s_model.get_input_embeddings().weight.shape[0] == report.kept
    tied = kind == "bpe-gemma3-tied" or kind.startswith("spm")
    same_storage = s_model.get_output_embeddings().weight.data_ptr() == s_model.get_input_embeddings().weight.data_ptr()
    assert same_storage is tied
    assert report.embedding_params_after < report.embedding_params_before
    t_tok, s_tok = _toks(teacher, student)
    m = load_vocab_map(student).tensor()
    ids = s_tok(CALIBRATION[3], return_tensors="pt").input_ids
    with torch.no_grad():
        s_logits = s_model(input_ids=ids).logits
        t_logits = t_model(input_ids=m[ids]).logits[..., m]
    torch.testing.assert_close(s_logits, t_logits, rtol=1e-4, atol=1e-4)


def test_sentencepiece_model_file_is_rewritten_consistently(pruned):
    import sentencepiece as spm

    teacher, student, _ = pruned["spm-model-file"]
    t_sp = spm.SentencePieceProcessor(model_file=str(teacher / "tokenizer.model"))
    s_sp = spm.SentencePieceProcessor(model_file=str(student / "tokenizer.model"))
    t_tok, s_tok = _toks(teacher, student)
    m = load_vocab_map(student).student_to_teacher
    assert s_sp.get_piece_size() < t_sp.get_piece_size()
    assert (s_sp.bos_id(), s_sp.eos_id(), s_sp.unk_id(), s_sp.pad_id()) == (
        s_tok.bos_token_id, s_tok.eos_token_id, s_tok.unk_token_id, s_tok.pad_token_id)
    for sid in range(s_sp.get_piece_size()):
        assert s_sp.id_to_piece(sid) == t_sp.id_to_piece(m[sid])
    for text in CALIBRATION:
        assert [m[i] for i in s_sp.encode(text)] == t_sp.encode(text)
    for text in UNSEEN:
        assert s_sp.decode(s_sp.encode(text)) == text


def test_vocab_size_caps_by_frequency_and_stays_lossless(teachers, tmp_path):
    teacher = teachers["bpe-llama"]
    full = prune_vocabulary(teacher, list(CALIBRATION), tmp_path / "full")
    floor = full.specials + full.byte_tokens
    with pytest.raises(ConfigError, match=rf"vocab_size={floor - 1} is smaller than the {floor} tokens"):
        prune_vocabulary(teacher, list(CALIBRATION), tmp_path / "bad", vocab_size=floor - 1)
    assert not (tmp_path / "bad").exists()
    cap = floor + 30
    capped = prune_vocabulary(teacher, list(CALIBRATION), tmp_path / "capped", vocab_size=cap)
    assert capped.kept <= cap < full.kept
    assert capped.token_coverage < 1.0 and capped.student_tokens_per_teacher_token > 1.0
    t_tok, s_tok = _toks(teacher, tmp_path / "capped")
    for text in CALIBRATION + UNSEEN:
        assert s_tok.decode(s_tok(text, add_special_tokens=False).input_ids) == text
    json.dumps(capped.to_dict())  # prune.json material


def test_map_file_is_checked(teachers, tmp_path):
    prune_vocabulary(teachers["bpe-llama"], list(CALIBRATION), tmp_path / "s")
    path = tmp_path / "s" / MAP_FILE
    data = json.loads(path.read_text())
    data["student_to_teacher"][1] = data["student_to_teacher"][0]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="maps two student ids to one teacher id"):
        load_vocab_map(tmp_path / "s")


def test_empty_texts_are_refused(teachers, tmp_path):
    with pytest.raises(ConfigError, match="needs calibration texts"):
        prune_vocabulary(teachers["bpe-llama"], ["", ""], tmp_path / "s")


@pytest.mark.parametrize("kind", ["bpe-llama", "spm-json-only"])
def test_without_merge_intermediates_segmentation_would_change(teachers, tmp_path, monkeypatch, kind):
    """The closure matters: keeping only the produced tokens breaks the teacher's segmentation, and
    prune_vocabulary refuses to write such a student."""
    from edgedistill.errors import EdgeDistillError
    from edgedistill.prune import tokenizer_trim

    report = prune_vocabulary(teachers[kind], list(CALIBRATION), tmp_path / "ok")
    assert report.merge_intermediates > 0
    monkeypatch.setattr(tokenizer_trim.Closure, "__call__", lambda self, tid: {tid})
    with pytest.raises(EdgeDistillError, match="segmented differently after pruning"):
        prune_vocabulary(teachers[kind], list(CALIBRATION), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def _unigram_fast_tokenizer(model_bytes: bytes):
    """A Unigram tokenizer.json for a Unigram SentencePiece model, BOS added as Llama's. (transformers 5's
    LlamaTokenizer always builds a BPE model, whatever the SentencePiece file's type.)"""
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    proto = spm_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, [(p.piece, p.score) for p in proto.pieces])
    assert type(backend.model).__name__ == "Unigram"
    bos = proto.pieces[proto.trainer_spec.bos_id].piece
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, proto.trainer_spec.bos_id)])
    names = {"bos_token": "bos_id", "eos_token": "eos_id", "unk_token": "unk_id", "pad_token": "pad_id"}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, **{k: proto.pieces[getattr(proto.trainer_spec, v)].piece for k, v in names.items()})


def test_unigram_sentencepiece_keeps_only_the_used_pieces(tmp_path):
    """Unigram: the teacher's best path over a subset that still holds its pieces is unchanged, so no
    intermediates are kept; ids map, any text round-trips, tokenizer.model agrees."""
    import io

    import sentencepiece as spm

    from edgedistill.gguf_import.probe_strings import probe_strings

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(CORPUS) * 4 + probe_strings(200, seed=1)), model_writer=buf, vocab_size=700,
        model_type="unigram", byte_fallback=True, character_coverage=1.0, minloglevel=2,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3)
    (tmp_path / "tokenizer.model").write_bytes(buf.getvalue())
    tok = _unigram_fast_tokenizer(buf.getvalue())
    teacher = build_tiny_model("llama", tmp_path / "teacher", tokenizer=tok)
    (teacher / "tokenizer.model").write_bytes(buf.getvalue())  # transformers 5 saves tokenizer.json only
    report = prune_vocabulary(teacher, list(CALIBRATION), tmp_path / "student")
    assert report.merge_intermediates == 0 and report.kept < len(tok)
    t_tok, s_tok = _toks(teacher, tmp_path / "student")
    m = load_vocab_map(tmp_path / "student").student_to_teacher
    for text in CALIBRATION:
        assert [m[i] for i in s_tok(text).input_ids] == t_tok(text).input_ids
    for text in list(CORPUS) + UNSEEN:
        want = t_tok.decode(t_tok(text, add_special_tokens=False).input_ids)
        assert s_tok.decode(s_tok(text, add_special_tokens=False).input_ids) == want
    t_sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    s_sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "student" / "tokenizer.model"))
    for text in CALIBRATION:
        assert [m[i] for i in s_sp.encode(text)] == t_sp.encode(text)


def test_byte_fallback_without_the_byte_tokens_is_refused(teachers, tmp_path):
    """A byte-fallback tokenizer that lacks <0xNN> tokens (e.g. an empty conversion) cannot keep the
    round-trip promise, and its GGUF would abort llama.cpp: refused, nothing written."""
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(teachers["spm-json-only"], teacher)
    tj = json.loads((teacher / "tokenizer.json").read_text(encoding="utf-8"))
    tj["model"]["vocab"] = {(f"<b{t[3:]}" if t in ("<0x41>", "<0x42>") else t): i
                            for t, i in tj["model"]["vocab"].items()}
    (teacher / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="holds only 254 of the 256 <0x00>..<0xFF> byte tokens"):
        prune_vocabulary(teacher, list(CALIBRATION), tmp_path / "s")
    assert not (tmp_path / "s").exists()
