"""Tiny random causal LMs and an in-process-trained tokenizer.

Nothing here touches the network: the tokenizer is a byte-level BPE trained on a fixed corpus, and the
models are built from configs with a fixed seed. Used by the test suite (2 layers, width 64) and by the
benchmarks (larger widths through ``hidden_size`` / ``num_layers``).

    tok = build_tokenizer()
    path = build_tiny_model("llama", tmp_path / "llama", tokenizer=tok)
"""

from __future__ import annotations

import math
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# A fixed, varied corpus: prose, digits, code, whitespace runs, a little unicode.
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: What is 12 plus 30? Answer: 42",
    "Premise: A man is playing a guitar. Hypothesis: A person makes music. Label: entailment",
    "Summarize: The meeting covered the budget, the schedule and the hiring plan for next year.",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n\tprint(i * 2)",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 -7 2026",
    "Unicode: café naïve Zürich 東京 Привет مرحبا 🙂",
    "   leading spaces and    runs of   whitespace\n\n\nnew lines",
    "Return a list of the words in the string, using sep as the delimiter string.",
    "Open file and return a corresponding file object. If the file cannot be opened, an OSError is raised.",
    "A small model that runs on a phone, a single-board computer or an embedded box.",
    "The teacher answers the prompts; the student learns from the answers.",
    "contradiction neutral entailment yes no true false",
    "The final answer is 7. #### 7",
]


def build_tokenizer(vocab_size: int = 384, extra_corpus: list[str] | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with bos/eos/pad and a chat template.

    Deterministic: the same arguments give the same vocabulary and merges.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(CORPUS) * 4 + list(extra_corpus or [])
    tok.train_from_iterator(corpus, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|end|>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "</s>"],
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


# Architecture -> function(vocab, hidden, layers, tokenizer ids) -> config. Every architecture the
# project supports has an entry; tests parametrise over ARCHITECTURES.
def _common(tok, vocab: int, hidden: int, layers: int, heads: int) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def _llama(tok, vocab, hidden, layers, heads):
    from transformers import LlamaConfig

    return LlamaConfig(**_common(tok, vocab, hidden, layers, heads), rms_norm_eps=1e-5)


def _qwen2(tok, vocab, hidden, layers, heads):
    from transformers import Qwen2Config

    return Qwen2Config(**_common(tok, vocab, hidden, layers, heads), use_sliding_window=False)


def _qwen3(tok, vocab, hidden, layers, heads):
    from transformers import Qwen3Config

    return Qwen3Config(**_common(tok, vocab, hidden, layers, heads), head_dim=hidden // heads)


def _gemma3(tok, vocab, hidden, layers, heads):
    from transformers import Gemma3TextConfig

    kw = _common(tok, vocab, hidden, layers, heads)
    kw["tie_word_embeddings"] = True  # as the real Gemma 3 checkpoints
    return Gemma3TextConfig(**kw, head_dim=hidden // heads, sliding_window=64, query_pre_attn_scalar=hidden // heads)


def _phi3(tok, vocab, hidden, layers, heads):
    from transformers import Phi3Config

    kw = _common(tok, vocab, hidden, layers, heads)
    kw["num_key_value_heads"] = heads
    return Phi3Config(**kw, original_max_position_embeddings=512, resid_pdrop=0.0, embd_pdrop=0.0)


ARCHITECTURES = {
    "llama": _llama,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gemma3": _gemma3,
    "phi3": _phi3,
}


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    tokenizer=None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a random ``arch`` causal LM (plus tokenizer and generation config) to ``out_dir``.

    ``vocab_size`` defaults to the tokenizer's size rounded up to a multiple of 64 — padded rows, as
    real checkpoints have them.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; have {sorted(ARCHITECTURES)}")
    tok = tokenizer if tokenizer is not None else build_tokenizer()
    vocab = vocab_size or ((len(tok) + 63) // 64) * 64
    config = ARCHITECTURES[arch](tok, vocab, hidden_size, num_layers, num_heads)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init in HF uses std 0.02: logits are then nearly uniform and greedy decoding is
    # degenerate. A larger std gives peaked, distinct next-token distributions, which makes the
    # export/verification tests meaningful.
    # The std shrinks with width (0.15 at width 64) so that wider models keep the same per-layer gain;
    # a fixed std makes a width-768 random model chaotic, and then even f16 rounding flips its tokens.
    # Embedding rows keep 0.15: they are looked up, not multiplied through.
    std = 0.15 * math.sqrt(64 / hidden_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.15 if "embed_tokens" in name else std)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    _resave_as_transformers_loads_it(out_dir)
    return out_dir


def _resave_as_transformers_loads_it(out_dir: Path) -> None:
    """Make tokenizer.json say what ``AutoTokenizer`` does with the directory.

    transformers 5 loads some model types' tokenizers with their own class whatever
    tokenizer_config.json declares (qwen2: ``Qwen2Tokenizer``, whose pre-tokenizer splits digits one
    by one), so the byte-level test tokenizer saved as it is would tokenize differently in
    transformers than in llama.cpp / onnxruntime-genai, which read tokenizer.json. Re-saving it as
    loaded gives the tiny model the tokenizer a real checkpoint of that type has.
    """
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(out_dir)
    if type(loaded).__name__ not in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        loaded.save_pretrained(out_dir)
