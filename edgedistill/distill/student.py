"""Student models: a layer-pruned copy of the teacher (DistilBERT-style), LoRA, and the small
accessors the trainer needs (final hidden states without logits, the LM head).

    from edgedistill.distill.student import prune_layers
    prune_layers("gemma-3-270m/", [0, 3, 6, 9, 12, 15], "student-init/")   # 18 -> 6 layers
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch

from edgedistill.atomic import atomic_dir
from edgedistill.errors import ConfigError


def _layer_container(model) -> tuple[Any, str]:
    """(module holding the ModuleList of decoder blocks, attribute name)."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    for name in ("layers", "h", "blocks"):
        if isinstance(getattr(base, name, None), torch.nn.ModuleList):
            return base, name
    raise ConfigError(f"cannot find the decoder layers of {type(model).__name__} to prune")


def prune_layers(model_dir_or_model, keep_layers: list[int], out_dir: str | os.PathLike) -> Path:
    """Write a copy of a causal LM that keeps only the decoder blocks ``keep_layers`` (in that order).

    Embeddings, the kept blocks, the final norm and the LM head are copied; ``num_hidden_layers`` and
    every per-layer list in the config (e.g. Gemma 3's ``layer_types``) are cut to the kept layers, so
    sliding-window / full-attention assignments follow their blocks. ``model_dir_or_model`` is a HF
    directory, a .gguf file or a loaded ``PreTrainedModel``. The result (weights, config, tokenizer,
    generation config) is written atomically to ``out_dir``; returns ``out_dir``.
    """
    from transformers import AutoModelForCausalLM

    tokenizer = None
    if isinstance(model_dir_or_model, (str, os.PathLike)):
        from edgedistill.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_dir_or_model, "teacher")
    else:
        model = model_dir_or_model
    config = copy.deepcopy(model.config)
    n_old = config.num_hidden_layers
    keep = [int(i) for i in keep_layers]
    bad = [i for i in keep if not 0 <= i < n_old]
    if not keep or bad:
        raise ConfigError(
            f"invalid setting 'keep_layers': {bad or keep} outside the teacher's layers 0..{n_old - 1}"
        )
    if len(set(keep)) != len(keep):
        raise ConfigError("invalid setting 'keep_layers': indices repeat")
    # Every config list with one entry per layer follows the kept layers.
    for key, value in list(vars(config).items()):
        if (isinstance(value, (list, tuple)) and len(value) == n_old and key != "architectures"
                and not key.endswith("_token_id")):
            setattr(config, key, type(value)(value[i] for i in keep))
    config.num_hidden_layers = len(keep)
    if hasattr(config, "max_window_layers") and isinstance(config.max_window_layers, int):
        config.max_window_layers = min(config.max_window_layers, len(keep))

    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
    old_base, attr = _layer_container(model)
    new_base, _ = _layer_container(student)
    old_layers = getattr(old_base, attr)
    # Map parameter names of kept blocks to their new index; everything else keeps its name.
    prefix = _module_prefix(model, old_layers) + "."
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            idx, rest = name[len(prefix):].split(".", 1)
            if int(idx) in keep:
                state[f"{prefix}{keep.index(int(idx))}.{rest}"] = tensor
        else:
            state[name] = tensor
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if not _is_tied(student, m)]
    if missing or unexpected:
        raise RuntimeError(f"layer pruning left weights unmatched: missing={missing} unexpected={unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        student.tie_weights()
    student.generation_config = copy.deepcopy(model.generation_config)

    out_dir = Path(out_dir)
    # replaces an earlier pruned copy (a model directory), never a directory of other files
    with atomic_dir(out_dir, overwrite=True, made_by=("config.json",)) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        elif getattr(model, "name_or_path", None) and Path(model.name_or_path).is_dir():
            from edgedistill.models import load_tokenizer

            load_tokenizer(model.name_or_path).save_pretrained(tmp)
    return out_dir


def _module_prefix(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise RuntimeError("layer list not found in model")


def _is_tied(model, name: str) -> bool:
    return name.endswith("lm_head.weight") and getattr(model.config, "tie_word_embeddings", False)


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
