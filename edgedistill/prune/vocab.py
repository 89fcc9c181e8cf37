"""Vocabulary pruning: keep the tokens a task needs, gather their embedding rows and LM-head rows.

    report = prune_vocabulary(Path("teacher/"), texts, Path("student/"), vocab_size=None)

Gemma 3 270M spends 168M of its 268M parameters on a 262,144-token embedding table that is also the
LM head. A student for one task needs the tokens its text uses: every token the teacher's tokenizer
produces on ``texts`` (prompts as the model sees them and teacher answers), the special tokens, the
byte tokens that keep any other text encodable, and the intermediate tokens that the tokenizer's merges
need to reach the kept tokens (see :mod:`edgedistill.prune.tokenizer_trim` for why that is exact).
The student keeps the teacher's id order (renumbered 0..n-1) and records ``vocab_map.json``
(:mod:`edgedistill.vocab_map`), which distill, eval and export use to relate it to the teacher.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from edgedistill.atomic import atomic_dir
from edgedistill.errors import ConfigError, EdgeDistillError
from edgedistill.models import load_tokenizer
from edgedistill.prune.tokenizer_trim import (
    Closure, byte_ids, read_tokenizer_json, sentencepiece_counts, special_ids, spm_piece_scores,
    write_trimmed_tokenizer,
)
from edgedistill.vocab_map import VocabMap, vocab_hash

N_ROUNDTRIP_PROBES = 64


@dataclass
class VocabReport:
    kept: int  # student vocabulary size (= embedding rows)
    teacher_tokens: int  # len(teacher tokenizer)
    teacher_rows: int  # teacher embedding rows (config.vocab_size, may be padded)
    from_texts: int  # distinct tokens the teacher produced on the texts (tokenizer.json, and tokenizer.model if any)
    kept_from_texts: int  # of those, kept (all of them without a cap)
    merge_intermediates: int  # tokens kept only because merges need them
    specials: int
    byte_tokens: int
    vocab_size_cap: int | None
    texts: int
    text_tokens: int  # teacher tokens in the texts
    token_coverage: float  # share of those tokens whose id is kept
    identical_texts: float  # share of texts the student segments exactly as the teacher (ids mapped)
    student_tokens_per_teacher_token: float  # > 1 when a cap forces longer segmentations
    embedding_params_before: int
    embedding_params_after: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"vocabulary: kept {self.kept:,} of {self.teacher_tokens:,} tokens ({self.kept_from_texts:,} of the "
                f"{self.from_texts:,} the texts use, "
                f"{self.merge_intermediates:,} merge intermediates, {self.specials} special, {self.byte_tokens} byte); "
                f"coverage {self.token_coverage:.2%} of {self.text_tokens:,} text tokens, "
                f"{self.identical_texts:.1%} of texts segmented as the teacher does")


def _template_texts(tok) -> list[str]:
    """The chat template's own text (role names, newlines) is part of every prompt: keep its tokens."""
    if not getattr(tok, "chat_template", None):
        return []
    try:
        return [tok.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                                        tokenize=False, add_generation_prompt=False),
                tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)]
    except Exception:  # a template that rejects this conversation (jinja raise_exception): its text is in the data
        return []


def _config_special_ids(model) -> list[int]:
    ids = []
    for cfg in (model.config, model.generation_config):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            v = getattr(cfg, name, None) if cfg is not None else None
            ids += [v] if isinstance(v, int) else [i for i in (v or []) if isinstance(i, int)]
    return ids


def choose_tokens(closure: Closure, counts: Counter, required: set[int], vocab_size: int | None) -> set[int]:
    """``required`` plus every counted token with its merge closure; with a cap, most frequent first."""
    if vocab_size is not None and vocab_size < len(required):
        raise ConfigError(f"vocab_size={vocab_size} is smaller than the {len(required)} tokens every student keeps "
                          "(special tokens and byte tokens)", hint=f"use --vocab-size {len(required)} or more")
    kept = set(required)
    for tid, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        new = closure(tid) - kept
        if vocab_size is None or len(kept) + len(new) <= vocab_size:
            kept |= new
    return kept


def _gather_rows(model, kept: list[int]) -> None:
    """Embedding and LM-head rows of the kept ids, tied heads stay tied, config.vocab_size follows."""
    import torch

    idx = torch.tensor(kept, dtype=torch.long)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == emb.weight.data_ptr()
    # modules are edited in place: Gemma's embedding is a scaled subclass that must stay one
    emb.weight = torch.nn.Parameter(emb.weight.data[idx].clone())
    emb.num_embeddings = len(kept)
    if emb.padding_idx is not None:
        emb.padding_idx = kept.index(emb.padding_idx) if emb.padding_idx in kept else None
    if head is not None:
        if tied:
            head.weight = emb.weight
        else:
            head.weight = torch.nn.Parameter(head.weight.data[idx].clone())
        if getattr(head, "bias", None) is not None:
            head.bias = torch.nn.Parameter(head.bias.data[idx].clone())
        head.out_features = len(kept)
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    text_cfg.vocab_size = len(kept)
    model.config.vocab_size = len(kept)


def _remap_special_ids(model, new_id: dict[int, int]) -> None:
    for cfg in (model.config, model.generation_config):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            v = getattr(cfg, name, None) if cfg is not None else None
            if isinstance(v, int):
                setattr(cfg, name, new_id[v])
            elif isinstance(v, list):
                setattr(cfg, name, [new_id[i] for i in v])


def _segmentation_check(s_tok, s2t: list[int], texts: list[str], teacher_ids: list[list[int]]) -> int:
    """How many texts the student segments exactly as the teacher (ids mapped)."""
    same = 0
    for text, t_ids in zip(texts, teacher_ids):
        s_ids = s_tok(text, add_special_tokens=False).input_ids
        same += [s2t[i] for i in s_ids] == t_ids
    return same


def _roundtrip_check(t_tok, s_tok, where: Path) -> None:
    """Any text survives encode/decode in the student whenever it does in the teacher (byte fallback)."""
    from edgedistill.gguf_import.probe_strings import probe_strings

    for text in probe_strings(N_ROUNDTRIP_PROBES, seed=12) + ["héllo 東京 🙂 Ωμέγα ∑ \t\n  x"]:
        if t_tok.decode(t_tok(text, add_special_tokens=False).input_ids) != text:
            continue  # the teacher itself normalizes this text; nothing to promise
        back = s_tok.decode(s_tok(text, add_special_tokens=False).input_ids)
        if back != text:
            raise EdgeDistillError(f"{where}: the pruned tokenizer does not round-trip {text[:40]!r} (got {back[:40]!r}); "
                                   "this is a bug in vocabulary pruning")


def prune_vocabulary(model_dir: Path, texts: list[str], out_dir: Path, *, vocab_size: int | None = None) -> VocabReport:
    """Write to ``out_dir`` (atomically) the model of ``model_dir`` with only the tokens ``texts`` need."""
    import torch
    from transformers import AutoModelForCausalLM

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    texts = [t for t in texts if t]
    if not texts:
        raise ConfigError("vocabulary pruning needs calibration texts; none were given",
                          hint="give --data with prompts and teacher answers")
    t_tok = load_tokenizer(model_dir, "teacher")
    tj = read_tokenizer_json(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    teacher_rows = model.get_input_embeddings().weight.shape[0]

    all_texts = texts + _template_texts(t_tok)
    teacher_ids = [t_tok(t, add_special_tokens=False).input_ids for t in all_texts]
    counts = Counter(i for ids in teacher_ids for i in ids)
    specials = special_ids(tj, t_tok, _config_special_ids(model))
    byte_set = byte_ids(tj)
    closure = Closure(tj, spm_piece_scores(model_dir))
    sp_counts = sentencepiece_counts(model_dir, all_texts)
    kept = sorted(choose_tokens(closure, counts + sp_counts, specials | byte_set, vocab_size))
    if kept[-1] >= teacher_rows:
        raise ConfigError(f"{model_dir}: the tokenizer has ids up to {kept[-1]} but the model only {teacher_rows} rows")

    emb_before = sum(p.numel() for p in {id(p): p for p in _emb_params(model)}.values())
    _gather_rows(model, kept)
    new_id = {t: s for s, t in enumerate(kept)}
    _remap_special_ids(model, new_id)
    emb_after = sum(p.numel() for p in {id(p): p for p in _emb_params(model)}.values())
    vmap = VocabMap(kept, teacher_rows, vocab_hash(t_tok))

    with atomic_dir(out_dir) as tmp:
        with torch.no_grad():
            model.save_pretrained(tmp, safe_serialization=True)
        write_trimmed_tokenizer(model_dir, tmp, tj, kept)
        vmap.write(tmp)
        s_tok = load_tokenizer(tmp, "pruned student")
        if len(s_tok) != len(kept):
            raise EdgeDistillError(f"{out_dir}: the rewritten tokenizer has {len(s_tok)} tokens, expected {len(kept)}; "
                                   "this is a bug in vocabulary pruning")
        same = _segmentation_check(s_tok, kept, all_texts, teacher_ids)
        if vocab_size is None and same != len(all_texts):
            raise EdgeDistillError(f"{out_dir}: {len(all_texts) - same} calibration texts are segmented differently "
                                   "after pruning; this is a bug in vocabulary pruning")
        _roundtrip_check(t_tok, s_tok, out_dir)
        n_student = sum(len(s_tok(t, add_special_tokens=False).input_ids) for t in texts)

    n_text = sum(len(ids) for ids in teacher_ids[:len(texts)])
    covered = sum(c for tid, c in Counter(i for ids in teacher_ids[:len(texts)] for i in ids).items() if tid in new_id)
    return VocabReport(
        kept=len(kept), teacher_tokens=len(t_tok), teacher_rows=teacher_rows, from_texts=len(counts | sp_counts),
        kept_from_texts=len((set(counts) | set(sp_counts)) & set(new_id)),
        merge_intermediates=len(set(kept) - set(counts) - set(sp_counts) - specials - byte_set),
        specials=len(specials), byte_tokens=len(byte_set), vocab_size_cap=vocab_size, texts=len(texts),
        text_tokens=n_text, token_coverage=covered / max(n_text, 1),
        identical_texts=same / len(all_texts), student_tokens_per_teacher_token=n_student / max(n_text, 1),
        embedding_params_before=emb_before, embedding_params_after=emb_after,
    )


def _emb_params(model) -> list:
    head = model.get_output_embeddings()
    return [model.get_input_embeddings().weight] + ([head.weight] if head is not None else [])
