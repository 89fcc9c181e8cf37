"""Student models: a layer-pruned copy of the teacher (DistilBERT-style), LoRA, and the small
accessors the trainer needs (final hidden states without logits, the LM head).

    from edgedistill.distill.student import prune_layers
    prune_layers("gemma-3-270m/", [0, 3, 6, 9, 12, 15], "student-init/")   # 18 -> 6 layers
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from edgedistill.atomic import atomic_dir


def prune_layers(model_dir_or_model, keep_layers: list[int], out_dir: str | os.PathLike) -> Path:
    """Write a copy of a causal LM that keeps only the decoder blocks ``keep_layers`` (in that order).

    Embeddings, the kept blocks, the final norm and the LM head are copied; ``num_hidden_layers`` and
    every per-layer list in the config (e.g. Gemma 3's ``layer_types``) are cut to the kept layers, so
    sliding-window / full-attention assignments follow their blocks (this is
    :func:`edgedistill.prune.depth.select_layers` plus saving; ``edgedistill prune`` also chooses the
    blocks and prunes width). ``model_dir_or_model`` is a HF directory, a .gguf file or a loaded
    ``PreTrainedModel``. The result (weights, config, tokenizer,
    generation config) is written atomically to ``out_dir``; returns ``out_dir``.
    """
    from edgedistill.prune.depth import select_layers

    tokenizer = None
    if isinstance(model_dir_or_model, (str, os.PathLike)):
        from edgedistill.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_dir_or_model, "teacher")
    else:
        model = model_dir_or_model
    student = select_layers(model, keep_layers)

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        elif getattr(model, "name_or_path", None) and Path(model.name_or_path).is_dir():
            from edgedistill.models import load_tokenizer

            load_tokenizer(model.name_or_path).save_pretrained(tmp)
    return out_dir


# --- accessors used by the trainer -------------------------------------------------------------------


def decoder_of(model):
    """The transformer body of a causal LM (or a PEFT-wrapped one): returns last hidden states."""
    inner = model
    if hasattr(inner, "get_base_model"):  # peft
        inner = inner.get_base_model()
    return inner.get_decoder() if hasattr(inner, "get_decoder") else inner.model


def head_of(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_output_embeddings()


def softcap_of(model) -> float | None:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner.config, "final_logit_softcapping", None)


def add_lora(model, r: int, alpha: int, dropout: float, target_modules: list[str] | None):
    """Wrap ``model`` with LoRA adapters on every linear layer except the LM head (or the given ones)."""
    from peft import LoraConfig, get_peft_model

    if target_modules is None:
        head = head_of(model)
        names = set()
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and module is not head:
                names.add(name.rsplit(".", 1)[-1])
        target_modules = sorted(names)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)
