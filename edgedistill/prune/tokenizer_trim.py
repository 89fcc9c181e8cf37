"""Which tokens a vocabulary-pruned tokenizer must keep, and the rewritten tokenizer files.

Why the kept set segments the kept text exactly as before:

* **BPE** (byte-level, and SentencePiece-style BPE with byte fallback as Gemma's ``tokenizer.json``):
  a word is segmented by repeatedly applying the lowest-ranked merge among its adjacent pairs. If
  every symbol that appears while a kept token is built (its characters and every intermediate merge
  result) is kept, and a merge is kept when its two parts and its result are, then at every step the
  merge the teacher applied is still available, and it is still the lowest-ranked available one (the
  available merges are a subset). The process therefore runs identically. A token's intermediates do
  not depend on its context: no merge crosses the token's span, so the merges inside the span are
  those of BPE run on the token's own text (:func:`bpe_trace`).
* **SentencePiece** ``tokenizer.model`` (BPE type, as Gemma ships it): the same argument with "merge the
  adjacent pair whose concatenation is a piece, highest score first" (:func:`spm_trace`); its trace is
  added as well, so the rewritten ``tokenizer.model`` agrees with the rewritten ``tokenizer.json``.
* **Unigram**: the teacher's segmentation is the best-scoring path over its pieces; a subset of pieces
  that still contains that path's pieces has the same best path, so no intermediates are needed.

Every text stays encodable: byte-level BPE keeps its 256 byte symbols; byte-fallback tokenizers keep
``<0x00>`` .. ``<0xFF>``. Special and added tokens are kept (except ``<unusedN>`` placeholders).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

from edgedistill.atomic import atomic_write_bytes, atomic_write_text
from edgedistill.errors import ConfigError

BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
UNUSED_PLACEHOLDER = re.compile(r"[<\[]unused[-_]?\d+[>\]]")
# Files save_pretrained writes for a tokenizer; copied when they need no rewriting.
PLAIN_TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja", "chat_template.json")


def read_tokenizer_json(model_dir: Path) -> dict:
    path = model_dir / "tokenizer.json"
    if not path.exists():
        raise ConfigError(f"{model_dir}: vocabulary pruning needs a fast tokenizer (tokenizer.json), which is missing",
                          hint="save the tokenizer with transformers' fast tokenizer (save_pretrained) first")
    tj = json.loads(path.read_text(encoding="utf-8"))
    kind = tj.get("model", {}).get("type")
    if kind not in ("BPE", "Unigram"):
        raise ConfigError(f"{path}: vocabulary pruning supports BPE and Unigram tokenizers, not {kind!r}")
    return tj


def base_vocab(tj: dict) -> dict[str, int]:
    model = tj["model"]
    if model["type"] == "Unigram":
        return {piece: i for i, (piece, _score) in enumerate(model["vocab"])}
    return dict(model["vocab"])


def _merge_pair(merge) -> tuple[str, str]:
    return tuple(merge.split(" ", 1)) if isinstance(merge, str) else (merge[0], merge[1])


def _merge_trace(text: str, priority) -> list[str]:
    """Symbols created by greedy pairwise merging of ``text``'s characters: at each step the adjacent
    pair with the lowest ``priority(left, right)`` (None: not mergeable; ties: leftmost) is merged."""
    symbols = list(text)
    seen = list(symbols)
    while len(symbols) > 1:
        best, at = None, -1
        for i in range(len(symbols) - 1):
            p = priority(symbols[i], symbols[i + 1])
            if p is not None and (best is None or p < best):
                best, at = p, i
        if at < 0:
            break
        symbols[at:at + 2] = [symbols[at] + symbols[at + 1]]
        seen.append(symbols[at])
    return seen


def bpe_trace(text: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Every symbol BPE creates while segmenting ``text`` alone: its characters, then each merge result."""
    return _merge_trace(text, lambda a, b: ranks.get((a, b)))


def spm_trace(text: str, scores: dict[str, float]) -> list[str]:
    """The same for SentencePiece BPE: merge the adjacent pair that forms the best-scored piece."""
    return _merge_trace(text, lambda a, b: -scores[a + b] if a + b in scores else None)


class Closure:
    """closure(token id) -> the ids that must be kept with it, for one tokenizer."""

    def __init__(self, tj: dict, spm_scores: dict[str, float] | None):
        self.kind = tj["model"]["type"]
        self.vocab = base_vocab(tj)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.ranks = {}
        if self.kind == "BPE":
            for rank, merge in enumerate(tj["model"].get("merges", [])):
                self.ranks.setdefault(_merge_pair(merge), rank)
        self.spm_scores = spm_scores

    def __call__(self, tid: int) -> set[int]:
        token = self.id_to_token.get(tid)
        if token is None or self.kind != "BPE" or BYTE_TOKEN.fullmatch(token):
            return {tid}  # an added token, a Unigram piece, a byte: nothing is built from parts
        symbols = bpe_trace(token, self.ranks)
        if self.spm_scores is not None:
            symbols += spm_trace(token, self.spm_scores)
        # a character outside the vocabulary is byte fallback, and those bytes are always kept
        return {tid} | {self.vocab[s] for s in symbols if s in self.vocab}


def byte_ids(tj: dict) -> set[int]:
    """The ids every text can fall back to: <0xNN> tokens, or the 256 byte-level symbols."""
    vocab = base_vocab(tj)
    model = tj["model"]
    if model.get("byte_fallback") or model["type"] == "Unigram":
        found = {i for t, i in vocab.items() if BYTE_TOKEN.fullmatch(t)}
        n_bytes = len({t.upper() for t in vocab if BYTE_TOKEN.fullmatch(t)})
        if model.get("byte_fallback") and n_bytes < 256:
            # the promise "any text stays encodable" would not hold, and llama.cpp aborts the whole
            # process on a byte it has no <0xNN> token for
            raise ConfigError(f"tokenizer.json: byte_fallback is on but the vocabulary holds only {n_bytes} of the "
                              "256 <0x00>..<0xFF> byte tokens; text outside the kept tokens could not be encoded",
                              hint="check the teacher's tokenizer.json (an empty or partial conversion?)")
        return found
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    missing = [c for c in alphabet if c not in vocab]
    if missing:
        raise ConfigError(f"tokenizer.json: a BPE without byte fallback lacks {len(missing)} of the 256 byte-level "
                          "symbols; text outside its vocabulary could not be encoded after pruning")
    return {vocab[c] for c in alphabet}


def special_ids(tj: dict, hf_tok, extra: list[int]) -> set[int]:
    """Added/special tokens (chat markers, bos/eos/pad/unk...), minus ``<unusedN>`` placeholders."""
    ids = {a["id"] for a in tj.get("added_tokens", []) if not UNUSED_PLACEHOLDER.fullmatch(a["content"])}
    ids |= {i for i in hf_tok.all_special_ids if i is not None}
    unk = tj["model"].get("unk_token") if tj["model"]["type"] == "BPE" else None
    if unk is not None and unk in base_vocab(tj):
        ids.add(base_vocab(tj)[unk])
    if tj["model"]["type"] == "Unigram" and tj["model"].get("unk_id") is not None:
        ids.add(int(tj["model"]["unk_id"]))
    return ids | {int(i) for i in extra}


# ------------------------------------------------------------------------------------------ rewriting


def _remap_post_processor(node, new_id: dict[int, int]):
    if isinstance(node, dict):
        if node.get("type") == "TemplateProcessing":
            for spec in node.get("special_tokens", {}).values():
                spec["ids"] = [new_id[i] for i in spec["ids"]]
        for key in ("processors",):
            for child in node.get(key, []) or []:
                _remap_post_processor(child, new_id)
    return node


def trimmed_tokenizer_json(tj: dict, kept: list[int]) -> dict:
    """``tj`` with only the ``kept`` teacher ids (ascending), renumbered 0..n-1 in the same order."""
    new_id = {t: s for s, t in enumerate(kept)}
    out = json.loads(json.dumps(tj))
    model = out["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][t] for t in kept if t < len(model["vocab"])]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        vocab = {tok: new_id[i] for tok, i in model["vocab"].items() if i in new_id}
        model["vocab"] = vocab
        model["merges"] = [m for m in model.get("merges", [])
                           if (p := _merge_pair(m))[0] in vocab and p[1] in vocab and p[0] + p[1] in vocab]
    out["added_tokens"] = [dict(a, id=new_id[a["id"]]) for a in tj.get("added_tokens", []) if a["id"] in new_id]
    _remap_post_processor(out.get("post_processor"), new_id)
    return out


def _trim_tokenizer_config(src: Path, dst: Path, new_id: dict[int, int]) -> None:
    cfg = json.loads(src.read_text(encoding="utf-8"))
    decoder = cfg.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        cfg["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in decoder.items() if int(k) in new_id}
    atomic_write_text(dst, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def _trim_added_tokens_json(src: Path, dst: Path, new_id: dict[int, int]) -> None:
    added = json.loads(src.read_text(encoding="utf-8"))
    atomic_write_text(dst, json.dumps({t: new_id[i] for t, i in added.items() if i in new_id}, ensure_ascii=False))


def spm_piece_scores(model_dir: Path) -> dict[str, float] | None:
    """Piece -> score of a BPE-type ``tokenizer.model`` (None when there is none or it is Unigram)."""
    path = model_dir / "tokenizer.model"
    if not path.exists():
        return None
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    proto = spm_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    if proto.trainer_spec.model_type != spm_pb2.TrainerSpec.BPE:
        return None
    normal = (spm_pb2.ModelProto.SentencePiece.NORMAL, spm_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return {p.piece: p.score for p in proto.pieces if p.type in normal}


def sentencepiece_counts(model_dir: Path, texts: list[str]) -> Counter:
    """Ids the teacher's ``tokenizer.model`` itself produces on ``texts`` (kept too: the GGUF exporter
    tokenizes with it, and it may segment some text unlike tokenizer.json)."""
    path = model_dir / "tokenizer.model"
    if not path.exists():
        return Counter()
    from sentencepiece import SentencePieceProcessor

    sp = SentencePieceProcessor(model_file=str(path))
    return Counter(i for text in texts for i in sp.encode(text))


def _trim_sentencepiece(src: Path, dst: Path, kept: list[int]) -> None:
    """Keep the kept pieces in order; special ids renumbered.

    ``kept`` is ascending, so the kept pieces (ids below the model's size) get student ids 0..k-1, the
    same as in the rewritten tokenizer.json, and tokens added on top of the model follow them.
    """
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    proto = spm_pb2.ModelProto()
    proto.ParseFromString(src.read_bytes())
    n = len(proto.pieces)
    new_id = {t: s for s, t in enumerate(kept)}
    pieces = [proto.pieces[t] for t in kept if t < n]
    del proto.pieces[:]
    proto.pieces.extend(pieces)
    spec = proto.trainer_spec
    for name in ("unk_id", "bos_id", "eos_id", "pad_id"):
        old = getattr(spec, name)
        if old >= 0:
            setattr(spec, name, new_id.get(old, -1))
    spec.vocab_size = len(pieces)
    atomic_write_bytes(dst, proto.SerializeToString())


def write_trimmed_tokenizer(src_dir: Path, dst_dir: Path, tj: dict, kept: list[int]) -> None:
    """Write every tokenizer file of ``src_dir`` into ``dst_dir`` for the ``kept`` teacher ids."""
    new_id = {t: s for s, t in enumerate(kept)}
    atomic_write_text(dst_dir / "tokenizer.json", json.dumps(trimmed_tokenizer_json(tj, kept), ensure_ascii=False))
    if (src_dir / "tokenizer_config.json").exists():
        _trim_tokenizer_config(src_dir / "tokenizer_config.json", dst_dir / "tokenizer_config.json", new_id)
    if (src_dir / "added_tokens.json").exists():
        _trim_added_tokens_json(src_dir / "added_tokens.json", dst_dir / "added_tokens.json", new_id)
    if (src_dir / "tokenizer.model").exists():
        _trim_sentencepiece(src_dir / "tokenizer.model", dst_dir / "tokenizer.model", kept)
    for name in PLAIN_TOKENIZER_FILES:
        if (src_dir / name).exists():
            shutil.copy2(src_dir / name, dst_dir / name)
