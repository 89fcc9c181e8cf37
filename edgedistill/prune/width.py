"""Width pruning (Minitron): keep the strongest MLP channels, attention heads and embedding channels.

Each architecture family registers ONE :class:`WidthRule`: for every parameter of a decoder block (by
its name inside the block) which axis is sliced by which index set, plus the modules whose inputs
measure head and MLP-channel activation and the hidden-sized norms that rank embedding channels.
Index sets ("kinds"):

    hidden   embedding channels kept (the same for every block, the embeddings, the final norm, the head)
    mlp      intermediate channels kept in this block
    q / kv   rows of the kept query / key-value heads (head_dim stays; it is written into the config)
    qkv      Phi-3's fused [q; k; v] rows          gate_up   Phi-3's fused [gate; up] rows

A parameter the rule does not name is an error, so a new architecture cannot be half-pruned silently.

GQA: query head ``h`` reads key/value head ``h // (H / KV)``. Kept key/value groups are ranked by the
summed activation of their query heads; inside each kept group the strongest ``H' / KV'`` query heads
stay, so every new group has the same size and the new head ``j`` still reads group ``j // (H' / KV')``.

Gemma 3 multiplies embeddings by ``sqrt(hidden_size)`` in the forward pass; a narrower model would
scale them by less. The kept rows are multiplied by ``sqrt(old / new)`` so the residual stream keeps its
scale, and with a tied head the final norm is divided by the same factor so the logits do not change.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from edgedistill.errors import ConfigError
from edgedistill.prune.depth import build_student, decoder_layers, module_prefix
from edgedistill.registry import Registry

Slice = tuple[str | None, ...]  # one kind (or None: keep) per tensor axis


@dataclass(frozen=True)
class WidthRule:
    family: str
    model_types: tuple[str, ...]
    block_params: dict[str, Slice]
    """Parameter name inside a block -> kind per axis."""
    attn_out: str = "self_attn.o_proj"
    mlp_out: str = "mlp.down_proj"
    top_params: dict[str, Slice] = field(default_factory=lambda: {
        "model.embed_tokens.weight": (None, "hidden"), "model.norm.weight": ("hidden",),
        "lm_head.weight": (None, "hidden")})
    fix: Callable[[object, object, dict], None] | None = None
    """(new model, teacher config, index sets) -> None: adjustments beyond slicing (Gemma's scale)."""

    def hidden_norms(self, model) -> list[str]:
        """Names of the hidden-sized norms (every block's and the final one) for embedding ranking."""
        prefix = module_prefix(model, decoder_layers(model))
        names = [n.rsplit(".", 1)[0] for n, kinds in self.top_params.items() if kinds == ("hidden",)]
        for i in range(len(decoder_layers(model))):
            names += [f"{prefix}.{i}.{n.rsplit('.', 1)[0]}" for n, kinds in self.block_params.items()
                      if kinds == ("hidden",)]
        modules = dict(model.named_modules())
        return [n for n in names if n in modules]


WIDTH_RULES: Registry[WidthRule] = Registry("width-pruning architecture")

_ATTN = {"self_attn.q_proj.weight": ("q", "hidden"), "self_attn.k_proj.weight": ("kv", "hidden"),
         "self_attn.v_proj.weight": ("kv", "hidden"), "self_attn.o_proj.weight": ("hidden", "q")}
_MLP = {"mlp.gate_proj.weight": ("mlp", "hidden"), "mlp.up_proj.weight": ("mlp", "hidden"),
        "mlp.down_proj.weight": ("hidden", "mlp")}
_NORMS = {"input_layernorm.weight": ("hidden",), "post_attention_layernorm.weight": ("hidden",)}
_QK_NORM = {"self_attn.q_norm.weight": (None,), "self_attn.k_norm.weight": (None,)}  # per head_dim: kept
_QKV_BIAS = {"self_attn.q_proj.bias": ("q",), "self_attn.k_proj.bias": ("kv",), "self_attn.v_proj.bias": ("kv",)}


def _register(rule: WidthRule) -> None:
    for mt in rule.model_types:
        WIDTH_RULES.register(mt, rule)


def _gemma_scale(model, teacher_config, idx: dict) -> None:
    """Keep sqrt(hidden) * embedding as it was (see the module docstring)."""
    old, new = teacher_config.hidden_size, model.config.hidden_size
    if old == new:
        return
    c = math.sqrt(old / new)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(c)
        if getattr(model.config, "tie_word_embeddings", False):
            norm = model.get_decoder().norm.weight  # Gemma's norm multiplies by (1 + w)
            norm.copy_((1 + norm) / c - 1)


_register(WidthRule("llama", ("llama", "mistral"), {**_ATTN, **_MLP, **_NORMS}))
_register(WidthRule("qwen2", ("qwen2",), {**_ATTN, **_QKV_BIAS, **_MLP, **_NORMS}))
_register(WidthRule("qwen3", ("qwen3",), {**_ATTN, **_QK_NORM, **_MLP, **_NORMS}))
_register(WidthRule("gemma3", ("gemma3_text",), {
    **_ATTN, **_QK_NORM, **_MLP, **_NORMS,
    "pre_feedforward_layernorm.weight": ("hidden",), "post_feedforward_layernorm.weight": ("hidden",)},
    fix=_gemma_scale))
_register(WidthRule("phi3", ("phi3",), {
    "self_attn.qkv_proj.weight": ("qkv", "hidden"), "self_attn.o_proj.weight": ("hidden", "q"),
    "mlp.gate_up_proj.weight": ("gate_up", "hidden"), "mlp.down_proj.weight": ("hidden", "mlp"), **_NORMS}))


def rule_for(config) -> WidthRule:
    if config.model_type not in WIDTH_RULES:
        raise ConfigError(f"width pruning does not know architecture {config.model_type!r}; it knows "
                          f"{', '.join(WIDTH_RULES.names())}", hint="prune by depth only (--num-layers)")
    return WIDTH_RULES.get(config.model_type)


def head_dim_of(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


@dataclass
class WidthPlan:
    """The target shape; unset entries keep the teacher's."""

    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int


def plan_for(config, hidden_size=None, intermediate_size=None, num_attention_heads=None,
             num_key_value_heads=None) -> WidthPlan:
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    new_heads = num_attention_heads or heads
    new_kv = num_key_value_heads or min(kv, new_heads)
    if new_heads // new_kv > heads // kv:
        raise ConfigError(
            f"invalid setting 'num_key_value_heads': {new_heads} query heads in {new_kv} key/value groups "
            f"need {new_heads // new_kv} per group, but the teacher's groups have {heads // kv}",
            hint="lower --num-attention-heads with --num-key-value-heads")
    return WidthPlan(hidden_size or config.hidden_size, intermediate_size or config.intermediate_size,
                     new_heads, new_kv)


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in ascending index order (ties: the lower index)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return torch.tensor(sorted(order[:k]), dtype=torch.long)


def choose_heads(scores: torch.Tensor, kv: int, new_heads: int, new_kv: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept query heads in new order, kept key/value heads) from per-query-head ``scores``."""
    group = len(scores) // kv
    per_group = new_heads // new_kv
    groups = _top(scores.reshape(kv, group).sum(dim=1), new_kv)
    q = [int(g) * group + int(j) for g in groups for j in _top(scores[g * group:(g + 1) * group], per_group)]
    return torch.tensor(q, dtype=torch.long), groups


def _rows(heads: torch.Tensor, d: int) -> torch.Tensor:
    return (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1)


def _index_sets(config, plan: WidthPlan, acts, layer_ids: list[int]) -> list[dict]:
    """Per new block: kind -> index tensor (the shared ``hidden`` set included)."""
    d = head_dim_of(config)
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    hidden = _top(acts.hidden, plan.hidden_size)
    out = []
    for old in layer_ids:
        q_heads, kv_heads = choose_heads(acts.heads[old], kv, plan.num_attention_heads, plan.num_key_value_heads)
        mlp = _top(acts.mlp[old], plan.intermediate_size)
        q, k = _rows(q_heads, d), _rows(kv_heads, d)
        out.append({"hidden": hidden, "mlp": mlp, "q": q, "kv": k,
                    "qkv": torch.cat([q, heads * d + k, (heads + kv) * d + k]),
                    "gate_up": torch.cat([mlp, config.intermediate_size + mlp]),
                    "q_heads": q_heads, "kv_heads": kv_heads})
    return out


def _slice(tensor: torch.Tensor, kinds: Slice, idx: dict, name: str) -> torch.Tensor:
    if len(kinds) != tensor.dim():
        raise RuntimeError(f"width rule for {name} names {len(kinds)} axes; the tensor has {tensor.dim()}")
    for axis, kind in enumerate(kinds):
        if kind is not None:
            tensor = tensor.index_select(axis, idx[kind])
    return tensor.contiguous()


def prune_width(model, acts, layer_ids: list[int], plan: WidthPlan, rule: WidthRule, teacher_config):
    """A new, narrower model from ``model`` (whose block ``i`` was the teacher's ``layer_ids[i]``).

    ``acts`` are the teacher's activation statistics (:func:`edgedistill.prune.importance.collect`).
    """
    config = copy.deepcopy(model.config)
    sets = _index_sets(config, plan, acts, layer_ids)
    config.head_dim = head_dim_of(model.config)  # stays; written explicitly so it cannot be re-derived
    config.hidden_size = plan.hidden_size
    config.intermediate_size = plan.intermediate_size
    config.num_attention_heads = plan.num_attention_heads
    config.num_key_value_heads = plan.num_key_value_heads
    prefix = module_prefix(model, decoder_layers(model)) + "."
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith(prefix):
            i, rest = name[len(prefix):].split(".", 1)
            kinds = rule.block_params.get(rest)
            idx = sets[int(i)]
        else:
            kinds, idx = rule.top_params.get(name), sets[0]
        if kinds is None:
            raise RuntimeError(f"width rule {rule.family!r} does not say how to slice {name}")
        state[name] = _slice(tensor, kinds, idx, name)
    student = build_student(model, config, state, "width pruning")
    if rule.fix is not None:
        rule.fix(student, teacher_config, sets[0])
    return student, [{"layer": old, "query_heads": s["q_heads"].tolist(), "kv_heads": s["kv_heads"].tolist()}
                     for old, s in zip(layer_ids, sets)]
