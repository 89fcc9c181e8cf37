"""Import a GGUF model file as a Hugging Face model directory.

The result holds ``config.json``, dequantized weights (``model.safetensors``), a tokenizer built from
the GGUF vocabulary that tokenizes exactly as llama.cpp does (see :mod:`.tokenizer`),
``generation_config.json`` and ``gguf_import.json`` (where it came from, how long it took). It is
written under a temporary name and renamed into place, so an interrupted import leaves nothing
behind that looks finished.

Weights and config follow transformers' GGUF support (its key mapping and per-architecture tensor
processors, which undo llama.cpp's layout changes), read in one pass by :mod:`.weights`, or by
``from_pretrained(gguf_file=...)`` itself as a fallback; a few config fields its mapping gets wrong are
corrected from the metadata here. The tokenizer does not come from transformers, whose GGUF tokenizer
conversion is wrong for SentencePiece-BPE vocabularies such as Gemma 3's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gguf import Keys

from edgedistill.atomic import atomic_dir, atomic_write_json
from edgedistill.errors import EdgeDistillError
from edgedistill.gguf_import.command import DTYPES, IMPORT_MARKERS
from edgedistill.gguf_import.reader import GGUFFile, read_gguf
from edgedistill.gguf_import.tokenizer import CONTROL_LOOKING_TEXTS, read_vocab, tokenizer_from_vocab
from edgedistill.vocab_map import copy_vocab_map

# general.architecture values whose weights transformers can load as a causal LM (its GGUF loader
# also knows t5/umt5, which are not causal LMs). gemma3 is checked against llama.cpp on the real
# Gemma 3 270M file; llama, qwen2, qwen3, gemma3 and phi3 by round-trip tests (docs/gguf-import.md).
SUPPORTED_ARCHITECTURES = (
    "bloom", "deci", "falcon", "gemma2", "gemma3", "gpt2", "lfm2", "llama", "mamba", "mistral",
    "nemotron", "phi3", "qwen2", "qwen2moe", "qwen3", "qwen3_moe", "stablelm", "starcoder2",
)

# Texts llama.cpp treats as "end of generation" besides the eos token: used for generation_config.
_EOG_TEXTS = frozenset(
    ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "<|end_of_text|>"]
)


def check_architecture(gguf: GGUFFile) -> str:
    arch = gguf.architecture
    if arch is None:
        raise EdgeDistillError(f"{gguf.path} has no general.architecture key; is it a model file?")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise EdgeDistillError(
            f"{gguf.path}: cannot import architecture {arch!r}",
            hint=f"importable architectures: {', '.join(SUPPORTED_ARCHITECTURES)}",
        )
    return arch


def _eog_ids(vocab) -> list[int]:
    ids = [vocab.eos_id] if vocab.eos_id is not None else []
    for tid, text in enumerate(vocab.tokens):
        if text in _EOG_TEXTS and text in CONTROL_LOOKING_TEXTS and tid not in ids:
            ids.append(tid)
    return ids


def _config(path: Path, gguf: GGUFFile, fast: bool):
    """transformers' config for the file, with the fields its GGUF mapping misses filled in."""
    from transformers import CONFIG_MAPPING, AutoConfig

    try:
        if fast:
            from edgedistill.gguf_import.weights import config_dict

            cfg = config_dict(gguf)
            config = CONFIG_MAPPING[cfg["model_type"]].from_dict(cfg)
        else:
            config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, TypeError, NotImplementedError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EdgeDistillError(f"could not read the model configuration of {path}: {msg}") from None
    arch = gguf.architecture
    # Qwen 3 (and others) have head_dim != hidden_size / heads; transformers leaves its default (128).
    key_length = gguf.arch_get(Keys.Attention.KEY_LENGTH)
    if key_length is not None and hasattr(config, "head_dim"):
        config.head_dim = int(key_length)
    if arch in ("gemma2", "gemma3"):
        # llama.cpp scales attention by 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 27B models
        # (62 / 46 layers); transformers' GGUF mapping always assumes 256.
        scale = gguf.arch_get(Keys.Attention.SCALE)
        heads = gguf.arch_get(Keys.Attention.HEAD_COUNT)
        big = gguf.arch_get(Keys.LLM.BLOCK_COUNT) == {"gemma3": 62, "gemma2": 46}[arch]
        if scale:
            config.query_pre_attn_scalar = 1.0 / float(scale) ** 2
        elif big and heads:
            config.query_pre_attn_scalar = int(gguf.arch_get(Keys.LLM.EMBEDDING_LENGTH)) // int(heads)
        elif key_length is not None:
            config.query_pre_attn_scalar = int(key_length)
        swa_base = gguf.arch_get(Keys.Rope.FREQ_BASE_SWA)
        if swa_base is not None and hasattr(config, "rope_local_base_freq"):
            config.rope_local_base_freq = float(swa_base)
        pattern = gguf.arch_get(Keys.Attention.SLIDING_WINDOW_PATTERN)
        layer_types = getattr(config, "layer_types", None)
        if pattern is not None and hasattr(pattern, "__len__") and layer_types and len(pattern) == len(layer_types):
            config.layer_types = ["sliding_attention" if bool(p) else "full_attention" for p in pattern]
    # Tied embeddings <=> the file has no separate output matrix (llama.cpp then reuses token_embd).
    names = {t.name for t in gguf.tensors}
    if "token_embd.weight" in names:
        config.tie_word_embeddings = "output.weight" not in names
    return config


def _fast_path_available() -> bool:
    try:
        from transformers.modeling_gguf_pytorch_utils import (  # noqa: F401
            GGUF_TO_TRANSFORMERS_MAPPING,
            TENSOR_PROCESSORS,
            get_gguf_hf_weights_map,
        )
    except ImportError:
        return False
    return True


def _load_weights(path: Path, gguf: GGUFFile, dtype: str, fast: bool | None = None):
    """(model, config): our single-pass loader, or transformers' from_pretrained(gguf_file=...)."""
    import torch
    from transformers import AutoModelForCausalLM

    fast = _fast_path_available() if fast is None else fast
    config = _config(path, gguf, fast)
    try:
        if fast:
            from edgedistill.gguf_import.weights import load_model

            return load_model(path, gguf, config, getattr(torch, dtype))
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, config=config, dtype=getattr(torch, dtype), low_cpu_mem_usage=True
        )
        # transformers 5 records the source as a GGUF quantization_config; the weights are dequantized
        # float tensors, so the imported model must not claim it (nor save it into config.json)
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
            model.hf_quantizer = None
        return model
    except (ValueError, KeyError, TypeError, NotImplementedError, RuntimeError, OSError) as exc:
        msg = " ".join(str(exc).split())[:400] if str(exc) else type(exc).__name__
        raise EdgeDistillError(f"could not load the weights of {path}: {msg}") from None


def import_gguf(
    gguf_path: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float32", fast: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Hugging Face model directory for the GGUF file ``gguf_path`` at ``out_dir``; return it.

    ``dtype`` is the dtype of the saved weights (float32 keeps the dequantized values exactly).
    ``fast`` picks the weight loader: our single-pass one (default when transformers' GGUF internals
    are importable) or transformers' ``from_pretrained(gguf_file=...)`` (``fast=False``).
    An existing ``out_dir`` is replaced only when it is an earlier import and ``overwrite`` is set.
    """
    if dtype not in DTYPES:
        raise EdgeDistillError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    path = Path(gguf_path).expanduser()
    out = Path(out_dir).expanduser()
    t0 = time.perf_counter()
    gguf = read_gguf(path)  # validates the whole container (magic, version, truncation) first
    arch = check_architecture(gguf)
    vocab = read_vocab(gguf)
    tokenizer = tokenizer_from_vocab(vocab)
    t_tok = time.perf_counter() - t0

    t1 = time.perf_counter()
    fast = _fast_path_available() if fast is None else fast
    model = _load_weights(path.resolve(), gguf, dtype, fast)
    t_weights = time.perf_counter() - t1

    eog = _eog_ids(vocab)
    for key, value in (("bos_token_id", vocab.bos_id), ("pad_token_id", vocab.pad_id)):
        if value is not None:
            setattr(model.config, key, value)
    if vocab.eos_id is not None:
        model.config.eos_token_id = vocab.eos_id
    gen = model.generation_config
    gen.bos_token_id = vocab.bos_id
    gen.eos_token_id = eog[0] if len(eog) == 1 else (eog or None)
    gen.pad_token_id = vocab.pad_id if vocab.pad_id is not None else vocab.eos_id
    model.config._name_or_path = vocab.model_name or path.stem

    t2 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite, made_by=IMPORT_MARKERS) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        copy_vocab_map(path.parent, tmp, len(vocab.tokens))  # the export of a vocabulary-pruned student
        atomic_write_json(
            tmp / "gguf_import.json",
            {
                "source": str(path.resolve()),
                "source_bytes": path.stat().st_size,
                "architecture": arch,
                "model_name": vocab.model_name,
                "tokenizer_model": vocab.model,
                "tokenizer_pre": vocab.pre,
                "vocab_size": len(vocab.tokens),
                "n_tensors": len(gguf.tensors),
                "dtype": dtype,
                "weight_loader": "edgedistill single-pass" if fast else "transformers from_pretrained",
                "seconds": {
                    "tokenizer": round(t_tok, 2),
                    "weights": round(t_weights, 2),
                    "save": round(time.perf_counter() - t2, 2),
                },
            },
        )
    return out
