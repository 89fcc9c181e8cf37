"""Build a Hugging Face fast tokenizer from a GGUF file's metadata that tokenizes as llama.cpp does.

transformers' own GGUF tokenizer conversion gets Gemma 3 wrong (words come out as single
characters), so the tokenizer is rebuilt here from ``tokenizer.ggml.*`` following llama.cpp's
``llama-vocab.cpp``:

* ``tokenizer.ggml.model == "llama"`` (SentencePiece, SPM): llama.cpp starts from the UTF-8
  characters of each text fragment and repeatedly merges the adjacent pair whose concatenation is a
  vocabulary entry with the highest score; leftover characters become ``<0xXX>`` byte tokens.
  That is a BPE whose merge list is "every split (a, b) of every token t with a and b in the
  vocabulary, ranked by the score of t", with byte fallback; spaces become "▁" and, when
  ``tokenizer.ggml.add_space_prefix`` is true (the default), every text fragment gets a leading "▁".
* ``tokenizer.ggml.model == "gpt2"`` (byte-level BPE): the text is split by the pre-tokenizer
  regexes llama.cpp picks from ``tokenizer.ggml.pre``, bytes are mapped to GPT-2's printable
  alphabet, and the ranked ``tokenizer.ggml.merges`` apply.

Special tokens follow llama.cpp's partition: user-defined tokens (type 4) are always cut out of the
raw text first; control (3) and unknown (2) tokens are cut out only when special tokens are parsed.
In the saved tokenizer control tokens are "special" added tokens, so the default HF behaviour
(chat templates: "<start_of_turn>" is one token) equals llama.cpp with ``special=True``, and
``split_special_tokens=True`` equals llama.cpp with ``special=False``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import Keys

from edgedistill.errors import EdgeDistillError
from edgedistill.gguf_import.reader import GGUFFile, read_gguf

# llama.cpp token types (tokenizer.ggml.token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.ggml.pre name -> (pre-tokenizer regexes, ignore_merges, default add_bos); from
# llama.cpp's llm_tokenizer_bpe. Several regexes are applied one after another, each splitting the
# pieces left by the previous one (matches and the text between them both kept).
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BPE_PRE_TOKENIZERS: dict[str, tuple[list[str], bool, bool]] = {}
for _names, _spec in [
    (("default",), ([r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], False, False)),
    (("gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion"), ([_GPT2], False, False)),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "lfm2", "dbrx", "smaug-bpe"), ([_LLAMA3], True, True)),
    (("qwen2", "stablelm2", "hunyuan"), ([_QWEN2], False, False)),
    (("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"), ([r"\p{N}", _GPT2], False, False)),
]:
    for _n in _names:
        BPE_PRE_TOKENIZERS[_n] = _spec

TOKENIZER_MODELS = ("llama", "gpt2")

# llama.cpp (llama-vocab.cpp, "auto-detect special tokens by text") turns tokens with these texts into
# control tokens whatever their GGUF type says (end-of-turn / end-of-generation / fill-in-the-middle
# markers), so e.g. Gemma's user-defined "</s>" is only parsed when special tokens are parsed.
CONTROL_LOOKING_TEXTS = frozenset(
    [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
        "_<EOT>", "[EOT]", "[EOS]", "<end_of_utterance>", "<|eom_id|>", "<|return|>", "<|call|>", "<|flush|>",
        "<|calls|>", "</s>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|code_prefix|>", "<|prefix|>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "<|code_suffix|>", "<|suffix|>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "<|code_middle|>", "<|middle|>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
    ]
)
# ... and these gpt-oss markers into user-defined ones (always parsed).
USER_DEFINED_TEXTS = frozenset(["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"])


@dataclass
class GGUFVocab:
    """The tokenizer part of a GGUF file's metadata."""

    model: str
    pre: str
    tokens: list[str]
    scores: np.ndarray | None
    types: np.ndarray
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None
    model_name: str
    context_length: int | None
    source: str = ""  # the GGUF file, for messages


def _opt_int(meta: dict, key: str) -> int | None:
    v = meta.get(key)
    return None if v is None else int(v)


def read_vocab(gguf: GGUFFile) -> GGUFVocab:
    meta, T = gguf.metadata, Keys.Tokenizer
    where = f"{gguf.path}"
    model = meta.get(T.MODEL)
    if model is None or T.LIST not in meta:
        raise EdgeDistillError(
            f"{where} has no tokenizer (metadata tokenizer.ggml.model / tokenizer.ggml.tokens missing)",
            hint="import a GGUF file written with its vocabulary (llama.cpp's convert_hf_to_gguf.py does)",
        )
    if model not in TOKENIZER_MODELS:
        raise EdgeDistillError(
            f"{where}: tokenizer.ggml.model is {model!r}; supported tokenizer types: {', '.join(TOKENIZER_MODELS)}"
        )
    tokens = list(meta[T.LIST])
    n = len(tokens)
    types = meta.get(T.TOKEN_TYPE)
    types = np.full(n, NORMAL, dtype=np.int32) if types is None else np.asarray(types, dtype=np.int32)
    scores = meta.get(T.SCORES)
    scores = None if scores is None else np.asarray(scores, dtype=np.float32)
    if len(types) != n or (scores is not None and len(scores) != n):
        raise EdgeDistillError(f"{where}: tokenizer.ggml.token_type/scores do not have one entry per token ({n})")
    pre = str(meta.get(T.PRE, "default"))
    if model == "llama":
        default_bos = True
    else:
        default_bos = BPE_PRE_TOKENIZERS.get(pre, ([], False, False))[2]
    context = gguf.arch_get(Keys.LLM.CONTEXT_LENGTH)
    vocab = GGUFVocab(
        model=model,
        pre=pre,
        tokens=tokens,
        scores=scores,
        types=types,
        merges=list(meta.get(T.MERGES, [])),
        bos_id=_opt_int(meta, T.BOS_ID),
        eos_id=_opt_int(meta, T.EOS_ID),
        unk_id=_opt_int(meta, T.UNK_ID),
        pad_id=_opt_int(meta, T.PAD_ID),
        add_bos=bool(meta.get(T.ADD_BOS, default_bos)),
        add_eos=bool(meta.get(T.ADD_EOS, False)),
        add_space_prefix=bool(meta.get(T.ADD_PREFIX, model == "llama")),
        chat_template=meta.get(T.CHAT_TEMPLATE),
        model_name=str(meta.get(Keys.General.NAME, "")),
        context_length=None if context is None else int(context),
        source=where,
    )
    for key, tid in [("bos", vocab.bos_id), ("eos", vocab.eos_id), ("unknown", vocab.unk_id), ("padding", vocab.pad_id)]:
        if tid is not None and not 0 <= tid < n:
            raise EdgeDistillError(f"{where}: tokenizer.ggml.{key}_token_id = {tid} is outside the vocabulary (0..{n - 1})")
    if model == "gpt2" and pre not in BPE_PRE_TOKENIZERS:
        raise EdgeDistillError(
            f"{where}: byte-level BPE pre-tokenizer tokenizer.ggml.pre = {pre!r} is not supported",
            hint=f"supported: {', '.join(sorted(BPE_PRE_TOKENIZERS))}",
        )
    if model == "gpt2" and not vocab.merges:
        raise EdgeDistillError(f"{where}: a 'gpt2' tokenizer needs tokenizer.ggml.merges, which is missing")
    return vocab


def _token_to_id(tokens: list[str]) -> dict[str, int]:
    # llama.cpp fills its text -> id map in id order, so a duplicated text maps to its last id.
    return {t: i for i, t in enumerate(tokens)}


def _spm_merges(vocab: GGUFVocab, token_to_id: dict[str, int]) -> list[tuple[str, str]]:
    """All (left, right) splits of every vocabulary entry, best-scored result first.

    llama.cpp merges any adjacent pair whose concatenation is in the vocabulary, best score first
    (ties: leftmost). Ranking the merges by the score of their result reproduces that order.
    """
    scores = vocab.scores if vocab.scores is not None else -np.arange(len(vocab.tokens), dtype=np.float32)
    order = sorted(token_to_id.values(), key=lambda i: (-float(scores[i]), i))
    merges = []
    for tid in order:
        text = vocab.tokens[tid]
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in token_to_id and right in token_to_id:
                merges.append((left, right))
    return merges


def _added_tokens(vocab: GGUFVocab):
    """AddedTokens for llama.cpp's 'special tokens cache': control, user-defined and unknown types."""
    from tokenizers import AddedToken

    # llama.cpp gives Phi-3's special tokens rstrip (matched with the whitespace after them).
    phi3 = any(s in vocab.model_name.lower() for s in ("phi-3", "phi3"))
    out = []
    for text, ttype in zip(vocab.tokens, vocab.types):
        if text in USER_DEFINED_TEXTS:
            special = False
        elif text in CONTROL_LOOKING_TEXTS or ttype in (CONTROL, UNKNOWN):
            special = True
        elif ttype == USER_DEFINED:
            special = False
        else:
            continue
        if not text:
            continue
        rstrip = phi3 and text not in ("<unk>", "<s>", "<|endoftext|>")
        out.append(AddedToken(text, special=special, normalized=False, lstrip=False, rstrip=rstrip, single_word=False))
    return out


def _special_name(vocab: GGUFVocab, tid: int | None) -> str | None:
    return None if tid is None else vocab.tokens[tid]


def _post_processor(vocab: GGUFVocab):
    from tokenizers import processors

    head = [("bos", vocab.bos_id)] if vocab.add_bos and vocab.bos_id is not None else []
    tail = [("eos", vocab.eos_id)] if vocab.add_eos and vocab.eos_id is not None else []
    names = {"bos": _special_name(vocab, vocab.bos_id), "eos": _special_name(vocab, vocab.eos_id)}
    single = [names[k] for k, _ in head] + ["$A"] + [names[k] for k, _ in tail]
    pair = single + [names[k] for k, _ in head] + ["$B"] + [names[k] for k, _ in tail]
    specials = sorted({(names[k], i) for k, i in head + tail})
    return processors.TemplateProcessing(
        single=" ".join(f"{s}:0" if s == "$A" else s for s in single),
        pair=" ".join(pair),
        special_tokens=specials,
    )


def _build_spm(vocab: GGUFVocab):
    from tokenizers import Tokenizer, decoders, models, normalizers

    token_to_id = _token_to_id(vocab.tokens)
    unk = _special_name(vocab, vocab.unk_id)
    model = models.BPE(
        vocab=token_to_id,
        merges=_spm_merges(vocab, token_to_id),
        unk_token=unk,
        fuse_unk=True,
        byte_fallback=True,
        ignore_merges=False,
    )
    tok = Tokenizer(model)
    steps = [normalizers.Replace(" ", "▁")]
    if vocab.add_space_prefix:
        steps.insert(0, normalizers.Prepend("▁"))
    tok.normalizer = normalizers.Sequence(steps)
    dec = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if vocab.add_space_prefix:
        dec.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(dec)
    return tok


def _build_bpe(vocab: GGUFVocab):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    regexes, ignore_merges, _ = BPE_PRE_TOKENIZERS[vocab.pre]
    token_to_id = _token_to_id(vocab.tokens)
    where = vocab.source or vocab.model_name or "GGUF"
    merges = []
    for i, line in enumerate(vocab.merges):
        parts = line.split(" ")
        if len(parts) != 2:
            raise EdgeDistillError(f"{where}: tokenizer.ggml.merges[{i}] = {line!r} is not 'left right'")
        # the tokenizers library panics on these deep inside; name the entry instead
        missing = [t for t in (parts[0], parts[1], parts[0] + parts[1]) if t not in token_to_id]
        if missing:
            raise EdgeDistillError(
                f"{where}: tokenizer.ggml.merges[{i}] = {line!r} uses {missing[0]!r}, which is not in "
                "tokenizer.ggml.tokens; the file's tokenizer metadata is inconsistent",
                hint="the GGUF file is damaged or was written by a faulty converter; convert the model again",
            )
        merges.append((parts[0], parts[1]))
    model = models.BPE(vocab=token_to_id, merges=merges, ignore_merges=ignore_merges, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated", invert=False) for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def tokenizer_from_vocab(vocab: GGUFVocab):
    """A ``PreTrainedTokenizerFast`` equivalent to llama.cpp's tokenizer for ``vocab``."""
    from transformers import PreTrainedTokenizerFast

    tok = _build_spm(vocab) if vocab.model == "llama" else _build_bpe(vocab)
    tok.add_tokens(_added_tokens(vocab))
    tok.post_processor = _post_processor(vocab)
    kwargs = {
        "bos_token": _special_name(vocab, vocab.bos_id),
        "eos_token": _special_name(vocab, vocab.eos_id),
        "unk_token": _special_name(vocab, vocab.unk_id),
        "pad_token": _special_name(vocab, vocab.pad_id),
    }
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=vocab.context_length or int(1e30),
        clean_up_tokenization_spaces=False,
        **{k: v for k, v in kwargs.items() if v is not None},
    )
    if vocab.chat_template:
        fast.chat_template = vocab.chat_template
    return fast


def build_tokenizer_from_gguf(path: str | os.PathLike):
    """Read only the metadata of the GGUF file ``path`` (no weights) and build its tokenizer."""
    return tokenizer_from_vocab(read_vocab(read_gguf(Path(path), with_tensors=False)))
