"""Test helpers for the GGUF import tests: write a small GGUF file from a tiny HF model with gguf-py.

A stand-in for the project's GGUF exporter (edgedistill.export.gguf), written the way llama.cpp's
convert_hf_to_gguf.py does it for llama / qwen2: llama.cpp tensor names, Q/K rows permuted for
llama's rotary layout, the byte-level BPE vocabulary with token types, merges and pre-tokenizer
"gpt-2", and the vocabulary padded with [PADn] tokens up to the embedding rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_ARCHS = {"llama": "LLAMA", "qwen2": "QWEN2"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # HF -> llama.cpp rotary layout, as convert_hf_to_gguf.LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf_from_hf(hf_dir: Path, out_path: Path, ftype: str = "f32", pre: str = "gpt-2") -> Path:
    import gguf
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(hf_dir)
    arch = cfg.model_type
    model_arch = getattr(gguf.MODEL_ARCH, _ARCHS[arch])
    arch_name = gguf.MODEL_ARCH_NAMES[model_arch]
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(hf_dir)

    w = gguf.GGUFWriter(str(out_path), arch_name)
    w.add_name(f"tiny-{arch}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(getattr(cfg, "rope_theta", 10000.0)))
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if ftype == "f32" else gguf.LlamaFileType.MOSTLY_F16)

    # vocabulary, as convert_hf_to_gguf's get_vocab_base(): id order, padded up to vocab_size
    vocab = tok.get_vocab()
    rev = {i: t for t, i in vocab.items()}
    added = {t.content: t for t in tok.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(cfg.vocab_size):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif rev[i] in added:
            tokens.append(rev[i])
            types.append(gguf.TokenType.CONTROL if added[rev[i]].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(rev[i])
            types.append(gguf.TokenType.NORMAL)
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_unk_token_id(tok.unk_token_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)

    names = gguf.get_tensor_name_map(model_arch, cfg.num_hidden_layers)
    state = model.state_dict()
    if getattr(cfg, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    for hf_name, t in state.items():
        data = t.detach().numpy().astype(np.float32)
        if arch == "llama" and hf_name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads)
        if arch == "llama" and hf_name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_key_value_heads)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name}")
        if ftype == "f16" and data.ndim == 2:
            data = data.astype(np.float16)
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


def train_sentencepiece(out_dir: Path, vocab_size: int = 1000, model_type: str = "bpe"):
    """A small SentencePiece model (byte fallback, user-defined and control pieces) trained in-process."""
    import io

    import sentencepiece as spm

    from edgedistill.gguf_import.probe_strings import probe_strings
    from edgedistill.testing.tiny import CORPUS

    text = list(CORPUS) * 3 + [s for s in probe_strings(400, seed=7) if s.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        byte_fallback=True,
        character_coverage=0.9995,
        user_defined_symbols=["<table>", "  ", "\n\n"],
        control_symbols=["<start_of_turn>", "<end_of_turn>"],
        pad_id=0, unk_id=3, bos_id=2, eos_id=1,
        split_digits=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        minloglevel=2,
        num_threads=1,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def write_spm_vocab_gguf(sp, out_path: Path, add_space_prefix: bool, arch: str = "llama") -> Path:
    """A GGUF holding only hyperparameters and a SentencePiece ('llama') vocabulary, as
    convert_hf_to_gguf.py writes one; enough for llama.cpp's vocab_only loading."""
    import gguf

    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        elif sp.is_unused(i):
            types.append(gguf.TokenType.UNUSED)
        elif tokens[-1] in ("<table>", "  ", "\n\n"):
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    w = gguf.GGUFWriter(str(out_path), arch)
    w.add_name("tiny-spm")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(add_space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


def gemma_style_spm(out_file: Path, add_dummy_prefix: bool) -> Path:
    """A SentencePiece BPE trained as Gemma's (byte fallback, digits split, <pad>/<eos>/<bos>/<unk> at
    0..3, turn markers as user-defined pieces), written to ``out_file``."""
    import io

    import sentencepiece as spm

    from edgedistill.gguf_import.probe_strings import probe_strings
    from edgedistill.testing.tiny import CORPUS

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(CORPUS) * 4 + probe_strings(200, seed=1)), model_writer=buf, vocab_size=900,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, add_dummy_prefix=add_dummy_prefix,
        remove_extra_whitespaces=False, normalization_rule_name="identity", split_digits=True,
        allow_whitespace_only_pieces=True, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
        eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<start_of_turn>", "<end_of_turn>"], minloglevel=2,
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_bytes(buf.getvalue())
    return out_file
