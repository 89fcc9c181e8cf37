"""The tokenizer, written into GGUF metadata so llama.cpp tokenizes exactly as the HF tokenizer does.

Two kinds are supported:

* **byte-level BPE** (GPT-2 / Llama 3 / Qwen2 style ``tokenizer.json``): ``tokenizer.ggml.model = gpt2``,
  the vocabulary, the merges and ``tokenizer.ggml.pre`` — llama.cpp's name for the pre-tokenizer regex.
  The regex is read from ``tokenizer.json`` and looked up in :data:`PRE_TOKENIZERS`; an unknown one is an
  error (llama.cpp would silently split text differently).
* **SentencePiece** (a ``tokenizer.model`` next to the weights: Gemma, Llama 2, Phi-3):
  ``tokenizer.ggml.model = llama`` with every piece's score and type, ``add_space_prefix`` from the
  model's normalizer.
* **SentencePiece-style BPE in tokenizer.json only** (``model.type == "BPE"`` with ``byte_fallback``, "▁"
  for spaces, ``<0xNN>`` byte tokens, no ``tokenizer.model``: what ``edgedistill import-gguf`` writes
  for Gemma, and what students distilled from it keep): ``tokenizer.ggml.model = llama`` with scores
  derived from the merge ranks (see :func:`_sentencepiece_bpe_json`).

Token types follow llama.cpp: NORMAL, CONTROL (special added tokens such as ``<s>``, ``<|end|>``; parsed
from text only with ``special=True`` and not printed on detokenization), USER_DEFINED (non-special added
tokens), BYTE (SentencePiece ``<0xNN>`` byte fallback), UNKNOWN, UNUSED (padding rows of the embedding).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.errors import EdgeDistillError

# The regexes HF tokenizers use, by llama.cpp pre-tokenizer name. "gpt-2" is the one a plain
# ``ByteLevel(use_regex=True)`` pre-tokenizer applies (our tiny test tokenizer, GPT-2, Phi-2...).
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {GPT2_REGEX: "gpt-2", LLAMA3_REGEX: "llama-bpe", QWEN2_REGEX: "qwen2"}


@dataclass
class TokenizerMetadata:
    model: str  # "gpt2" or "llama"
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad, eot
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None

    def write(self, w) -> None:
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.merges:
            w.add_token_merges(self.merges)
        setters = {"bos": w.add_bos_token_id, "eos": w.add_eos_token_id, "unk": w.add_unk_token_id,
                   "pad": w.add_pad_token_id, "eot": w.add_eot_token_id}
        for key, tid in self.special_ids.items():
            setters[key](int(tid))
        w.add_add_bos_token(self.add_bos)
        w.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            w.add_chat_template(self.chat_template)


def tokenizer_metadata(model_dir: Path, vocab_size: int) -> TokenizerMetadata:
    """Read the tokenizer of a HF model directory into GGUF metadata, padded to ``vocab_size`` rows."""
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise EdgeDistillError(f"{model_dir}: no usable tokenizer for GGUF export: {exc}") from None
    if (model_dir / "tokenizer.model").exists():
        meta = _sentencepiece(model_dir / "tokenizer.model", hf, vocab_size)
    elif (model_dir / "tokenizer.json").exists():
        if _is_sentencepiece_bpe_json(model_dir / "tokenizer.json"):
            meta = _sentencepiece_bpe_json(model_dir / "tokenizer.json", hf, vocab_size)
        else:
            meta = _byte_level_bpe(model_dir / "tokenizer.json", hf, vocab_size)
    else:
        raise EdgeDistillError(
            f"{model_dir}: GGUF export needs tokenizer.json (byte-level BPE) or tokenizer.model (SentencePiece)"
        )
    _special_tokens(meta, hf, model_dir)
    _check_unique(meta.tokens, model_dir)
    return meta


def _special_contents(hf) -> set[str]:
    """Contents of the added tokens that the running tokenizer treats as special (CONTROL in GGUF).

    Read from the backend transformers runs: it decides whether ``split_special_tokens`` splits a
    token. transformers 5 converts SentencePiece user-defined symbols (``<start_of_turn>``) as
    non-special in tokenizer.json but its GemmaTokenizer marks them special in its backend; a generic
    ``TokenizersBackend`` keeps the file's flags. ``added_tokens_decoder`` may disagree with both.
    """
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        return {t.content for t in hf.added_tokens_decoder.values() if t.special}
    return {t["content"] for t in json.loads(backend.to_str()).get("added_tokens", []) if t.get("special")}


def _effective_tokenizer_json(path: Path, hf) -> dict:
    """The tokenizer.json that ``hf`` really runs (its Rust backend), not necessarily the file's.

    transformers 5 builds some tokenizer classes' normalizer / pre-tokenizer in code whatever the file
    says (``Qwen2Tokenizer`` for model_type qwen2, ``GemmaTokenizer``), so llama.cpp must be given the
    pipeline transformers applies; with transformers 4 (or ``TokenizersBackend``) both are the file's.
    """
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is not None:
        return json.loads(backend.to_str())
    return json.loads(path.read_text(encoding="utf-8"))


def _check_unique(tokens: list[str], model_dir: Path) -> None:
    # llama.cpp aborts the whole process (an assert, not an error) on a vocabulary with repeated strings
    seen: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t in seen:
            raise EdgeDistillError(
                f"{model_dir}: token {t!r} appears twice in the vocabulary (ids {seen[t]} and {i}); "
                "llama.cpp cannot load such a vocabulary",
                hint="fix tokenizer.json / added_tokens so every token string is unique",
            )
        seen[t] = i


# ----------------------------------------------------------------------------------------- BPE


def _pre_tokenizer_name(tj: dict, where: Path) -> str:
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    regexes, byte_level = [], None
    for step in steps:
        if step.get("type") == "Split" and isinstance(step.get("pattern"), dict):
            regexes.append(step["pattern"].get("Regex") or step["pattern"].get("String"))
        elif step.get("type") == "ByteLevel":
            byte_level = step
        elif step.get("type") == "Digits" or step.get("type") is None:
            raise EdgeDistillError(f"{where}: pre_tokenizer step {step.get('type')!r} has no llama.cpp equivalent")
    if byte_level is None:
        raise EdgeDistillError(f"{where}: not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer)")
    if byte_level.get("add_prefix_space"):
        raise EdgeDistillError(f"{where}: ByteLevel add_prefix_space=true is not supported by llama.cpp's gpt2 model")
    if byte_level.get("use_regex", True):
        regexes.append(GPT2_REGEX)
    if len(regexes) != 1 or regexes[0] not in PRE_TOKENIZERS:
        raise EdgeDistillError(
            f"{where}: pre-tokenizer regex {regexes!r} is not one llama.cpp knows here",
            hint=f"supported pre-tokenizers: {', '.join(sorted(PRE_TOKENIZERS.values()))}",
        )
    return PRE_TOKENIZERS[regexes[0]]


def _byte_level_bpe(path: Path, hf, vocab_size: int) -> TokenizerMetadata:
    tj = _effective_tokenizer_json(path, hf)
    model = tj.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise EdgeDistillError(
            f"{path}: model type {model.get('type')!r} (byte_fallback={model.get('byte_fallback')}) is not a "
            "byte-level BPE nor a SentencePiece-style BPE with byte fallback; SentencePiece Unigram tokenizers "
            "need their tokenizer.model next to tokenizer.json"
        )
    pre = _pre_tokenizer_name(tj, path)
    vocab = hf.get_vocab()
    id_to_tok = {i: t for t, i in vocab.items()}
    added = {t.content: t for t in hf.added_tokens_decoder.values()}
    special = _special_contents(hf)
    n = max(vocab_size, len(id_to_tok))
    if len(id_to_tok) > vocab_size:
        raise EdgeDistillError(f"{path}: tokenizer has {len(id_to_tok)} tokens but the model only {vocab_size} embedding rows")
    tokens, types = [], []
    import gguf

    for i in range(n):
        tok = id_to_tok.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif tok in added:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if tok in special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(tok)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return TokenizerMetadata("gpt2", pre, tokens, [int(t) for t in types], merges=merges)


# --------------------------------------------------------------------------------- SentencePiece


def _sentencepiece(path: Path, hf, vocab_size: int) -> TokenizerMetadata:
    import gguf
    from sentencepiece import SentencePieceProcessor
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    sp = SentencePieceProcessor(model_file=str(path))
    proto = spm_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    n_sp = sp.vocab_size()
    if n_sp > vocab_size:
        raise EdgeDistillError(f"{path}: tokenizer has {n_sp} pieces but the model only {vocab_size} embedding rows")
    tokens, scores, types = [], [], []
    for i in range(n_sp):
        tokens.append(sp.id_to_piece(i))
        scores.append(float(sp.get_score(i)))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    # tokens the HF tokenizer adds on top of the SentencePiece model (chat markers...)
    special = _special_contents(hf)
    for tid, added in sorted(hf.added_tokens_decoder.items()):
        kind = gguf.TokenType.CONTROL if added.content in special else gguf.TokenType.USER_DEFINED
        if tid < len(tokens):
            # HF matches the added token's content in text; keep llama.cpp's text for that id the same
            tokens[tid] = added.content
            if types[tid] in (gguf.TokenType.NORMAL, gguf.TokenType.UNUSED, gguf.TokenType.CONTROL):
                types[tid] = kind
            continue
        while len(tokens) < tid:
            tokens.append(f"[PAD{len(tokens)}]"), scores.append(-1000.0), types.append(gguf.TokenType.UNUSED)
        tokens.append(added.content), scores.append(-1000.0), types.append(kind)
    while len(tokens) < vocab_size:
        tokens.append(f"[PAD{len(tokens)}]"), scores.append(-1000.0), types.append(gguf.TokenType.UNUSED)
    meta = TokenizerMetadata("llama", "default", tokens, [int(t) for t in types], scores=scores)
    meta.add_space_prefix = bool(proto.normalizer_spec.add_dummy_prefix)
    return meta


# ------------------------------------------------------------ SentencePiece-style BPE, tokenizer.json only

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
SPACE = "\u2581"  # "▁", SentencePiece's visible space


def _is_sentencepiece_bpe_json(path: Path) -> bool:
    # a cheap look at the head of the file would miss "byte_fallback" (it follows the added tokens),
    # so parse it; the caller parses it again through transformers anyway
    model = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def _steps(node: dict | None) -> list[dict]:
    if not node:
        return []
    return list(node.get("normalizers") or node.get("pretokenizers") or []) if node.get("type") == "Sequence" else [node]


def _space_prefix(tj: dict, where: Path) -> bool:
    """Whether the HF tokenizer puts "▁" before each text fragment (llama.cpp's add_space_prefix).

    llama.cpp's SPM tokenizer does no normalization besides " " -> "▁" (and the optional prefix),
    and does not split words; anything else in the normalizer / pre-tokenizer is refused.
    """
    replaces, prefix = False, False
    for step in _steps(tj.get("normalizer")):
        kind = step.get("type")
        if kind == "Replace" and step.get("pattern", {}).get("String") == " " and step.get("content") == SPACE:
            replaces = True
        elif kind == "Prepend" and step.get("prepend") == SPACE:
            prefix = True
        else:
            raise EdgeDistillError(
                f"{where}: normalizer step {kind!r} has no llama.cpp SentencePiece equivalent",
                hint="llama.cpp only maps spaces to '▁' (and optionally prepends one)",
            )
    for step in _steps(tj.get("pre_tokenizer")):
        kind = step.get("type")
        if kind == "Metaspace" and step.get("replacement", SPACE) == SPACE and step.get("split", True) is False:
            replaces = True
            scheme = step.get("prepend_scheme") or ("always" if step.get("add_prefix_space", True) else "never")
            prefix = prefix or scheme != "never"
        elif kind == "Split" and replaces and step.get("pattern", {}).get("String") == " ":
            continue  # spaces are already "▁" when the pre-tokenizer runs: this split never matches
        else:
            raise EdgeDistillError(
                f"{where}: pre_tokenizer step {kind!r} ({json.dumps(step)[:120]}) has no llama.cpp "
                "SentencePiece equivalent (llama.cpp does not split words before merging)"
            )
    if not replaces:
        raise EdgeDistillError(f"{where}: a byte-fallback BPE that does not map spaces to '▁' is not SentencePiece-style")
    return prefix


def _sentencepiece_bpe_json(path: Path, hf, vocab_size: int) -> TokenizerMetadata:
    """A SentencePiece-style BPE ``tokenizer.json`` as a llama.cpp SPM vocabulary.

    llama.cpp's SPM tokenizer starts from the UTF-8 characters of a fragment and keeps merging the
    adjacent pair whose concatenation is a token with the highest score (ties: leftmost), then turns
    leftover characters into ``<0xNN>`` tokens. HF's BPE merges the pair with the lowest merge rank
    (ties: leftmost). A token's score is therefore minus the rank of the first merge producing it:
    the two orders agree whenever the merge list holds every split of every token, grouped by the
    token made — true of SentencePiece-converted tokenizers and of ``import-gguf``'s (the export's
    verification checks the tokenization of the written file either way). Tokens no merge produces
    (single characters, ``<0xNN>`` bytes, special tokens) score below every merged token.
    """
    import gguf

    tj = _effective_tokenizer_json(path, hf)
    model = tj["model"]
    add_space_prefix = _space_prefix(tj, path)
    base_vocab: dict[str, int] = model.get("vocab") or {}
    vocab = hf.get_vocab()
    id_to_tok = {i: t for t, i in vocab.items()}
    if len(id_to_tok) > vocab_size or (id_to_tok and max(id_to_tok) >= vocab_size):
        raise EdgeDistillError(f"{path}: tokenizer has {len(id_to_tok)} tokens but the model only {vocab_size} embedding rows")
    merges = model.get("merges", [])
    first_rank: dict[int, int] = {}
    for rank, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        tid = base_vocab.get(left + right)
        if tid is not None and tid not in first_rank:
            first_rank[tid] = rank
    floor = -float(len(merges) + 1)
    added = hf.added_tokens_decoder  # id -> AddedToken
    special = _special_contents(hf)
    unk_id = base_vocab.get(model.get("unk_token")) if model.get("unk_token") else None
    tokens, scores, types = [], [], []
    for i in range(vocab_size):
        tok = id_to_tok.get(i)
        if tok is None:
            tokens.append(f"[PAD{i}]"), scores.append(floor), types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(tok)
        scores.append(-float(first_rank[i]) if i in first_rank else floor)
        if i == unk_id:
            types.append(gguf.TokenType.UNKNOWN)
        elif i in added:
            types.append(gguf.TokenType.CONTROL if added[i].content in special else gguf.TokenType.USER_DEFINED)
        elif _BYTE_TOKEN.fullmatch(tok) and base_vocab.get(tok) == i:
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    meta = TokenizerMetadata("llama", "default", tokens, [int(t) for t in types], scores=scores)
    meta.add_space_prefix = add_space_prefix
    return meta


# ------------------------------------------------------------------------------------ special tokens


def _special_tokens(meta: TokenizerMetadata, hf, model_dir: Path) -> None:
    ids = {"bos": hf.bos_token_id, "eos": hf.eos_token_id, "unk": hf.unk_token_id, "pad": hf.pad_token_id}
    gen_path = model_dir / "generation_config.json"
    if gen_path.exists():
        gen_eos = json.loads(gen_path.read_text()).get("eos_token_id")
        gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else []
        if gen_eos:
            # generation stops at these; the first is the eos, a second (e.g. Llama 3's <|eot_id|>) the eot
            ids["eos"] = gen_eos[0]
            if len(gen_eos) > 1:
                ids["eot"] = gen_eos[1]
    meta.special_ids = {k: int(v) for k, v in ids.items() if v is not None}
    # add_bos / add_eos: what the HF tokenizer's post-processor really does, not what a flag claims
    with_special = hf("a", add_special_tokens=True).input_ids
    plain = hf("a", add_special_tokens=False).input_ids
    meta.add_bos = bool(hf.bos_token_id is not None and with_special[:1] == [hf.bos_token_id] and plain[:1] != [hf.bos_token_id])
    meta.add_eos = bool(hf.eos_token_id is not None and with_special[-1:] == [hf.eos_token_id] and plain[-1:] != [hf.eos_token_id])
    template = getattr(hf, "chat_template", None)
    if isinstance(template, str) and template:
        meta.chat_template = template
