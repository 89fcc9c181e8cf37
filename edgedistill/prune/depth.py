"""Depth pruning: a copy of a causal LM that keeps only some of its decoder blocks.

Embeddings, the kept blocks, the final norm and the LM head are copied; ``num_hidden_layers`` and every
per-layer list in the config (e.g. Gemma 3's ``layer_types``) are cut to the kept layers, so sliding-
window / full-attention assignments follow their blocks. Which blocks to keep is the caller's choice:
given (``--keep-layers``) or measured (:func:`edgedistill.prune.importance.choose_layers`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from edgedistill.errors import ConfigError


def layer_container(model) -> tuple[Any, str]:
    """(module holding the ModuleList of decoder blocks, attribute name)."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    for name in ("layers", "h", "blocks"):
        if isinstance(getattr(base, name, None), torch.nn.ModuleList):
            return base, name
    raise ConfigError(f"cannot find the decoder layers of {type(model).__name__} to prune")


def decoder_layers(model) -> torch.nn.ModuleList:
    base, attr = layer_container(model)
    return getattr(base, attr)


def module_prefix(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise RuntimeError("layer list not found in model")


def is_tied(model, name: str) -> bool:
    return name.endswith("lm_head.weight") and getattr(model.config, "tie_word_embeddings", False)


def select_layers(model, keep_layers: list[int]):
    """A new model of the same class holding the blocks ``keep_layers`` (in that order) of ``model``."""
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

    # Map parameter names of kept blocks to their new index; everything else keeps its name.
    prefix = module_prefix(model, decoder_layers(model)) + "."
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            idx, rest = name[len(prefix):].split(".", 1)
            if int(idx) in keep:
                state[f"{prefix}{keep.index(int(idx))}.{rest}"] = tensor
        else:
            state[name] = tensor
    return build_student(model, config, state, "layer pruning")


def build_student(model, config, state: dict, what: str):
    """A model of ``config`` holding exactly ``state`` (every weight must match), tied like the
    config says, with ``model``'s generation config."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_config(config, dtype=next(model.parameters()).dtype)
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [m for m in missing if not is_tied(student, m)]
    if missing or unexpected:
        raise RuntimeError(f"{what} left weights unmatched: missing={missing} unexpected={unexpected}")
    if getattr(config, "tie_word_embeddings", False):
        student.tie_weights()
    student.generation_config = copy.deepcopy(model.generation_config)
    return student
