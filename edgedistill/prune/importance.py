"""What the calibration data say about the teacher: one forward pass per sequence with hooks.

Collected per decoder block (indexed by the teacher's layer number):

- **block influence** (ShortGPT, Men et al. 2024): ``1 - cos(x_in, x_out)`` averaged over tokens, how
  much the block changes the residual stream. A block that barely turns it is the cheapest to drop.
- **MLP channel activation**: mean ``|a|`` of the input of the down projection (the gated activation),
  one score per intermediate channel (Minitron, Muralidharan et al. 2024).
- **head activation**: mean L2 norm of each head's slice of the output projection's input.
- **embedding channel activation**: mean ``|y|`` of every hidden-sized norm's output, summed over the
  norms (Minitron ranks embedding channels by LayerNorm outputs).

Sequences go one at a time (no padding to mask out), and the teacher's calibration loss comes from the
same pass, so the statistics cost one forward pass over the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from edgedistill.prune.depth import decoder_layers


@dataclass
class CalibSequence:
    """Token ids and which next-token positions count for perplexity (the teacher's answer, or every
    position when the data are prompts only)."""

    ids: list[int]
    scored: list[bool]


@dataclass
class Activations:
    block_influence: list[float]
    hidden: torch.Tensor
    mlp: list[torch.Tensor | None]
    heads: list[torch.Tensor | None]
    tokens: int
    nll: float = field(default=0.0)
    scored_tokens: int = 0

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / max(1, self.scored_tokens))


def _first_tensor(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _forward(model, seq: CalibSequence) -> tuple[float, int]:
    """Run ``seq``; return (sum of next-token NLL over the scored positions, their count).

    Logits are computed only where they are scored (``logits_to_keep``): with a 262k-token vocabulary
    the head is most of the cost of a pass, and only the answer's positions need it."""
    where = [t for t in range(len(seq.ids) - 1) if seq.scored[t + 1]]
    keep = torch.tensor(where or [0])
    logits = model(torch.tensor([seq.ids]), logits_to_keep=keep).logits[0]
    if not where:
        return 0.0, 0
    targets = torch.tensor([seq.ids[t + 1] for t in where])
    logp = torch.log_softmax(logits.float(), dim=-1)
    return float(-logp.gather(1, targets[:, None]).sum()), len(where)


@torch.no_grad()
def perplexity(model, sequences: list[CalibSequence]) -> float:
    """exp(mean NLL) of the scored positions."""
    total, count = 0.0, 0
    for seq in sequences:
        s, n = _forward(model, seq)
        total, count = total + s, count + n
    return math.exp(total / max(1, count))


@torch.no_grad()
def collect(model, sequences: list[CalibSequence], attn_out: str, mlp_out: str, hidden_norms: list[str],
            head_dim: int) -> Activations:
    """Run ``sequences`` through ``model`` and gather the statistics above.

    ``attn_out`` / ``mlp_out`` name, relative to a block, the modules whose input is the per-head
    attention output and the MLP activation; ``hidden_norms`` names the hidden-sized norm modules
    (relative to the model) whose outputs rank the embedding channels.
    """
    layers = decoder_layers(model)
    n = len(layers)
    bi = [0.0] * n
    mlp: list[torch.Tensor | None] = [None] * n
    heads: list[torch.Tensor | None] = [None] * n
    hidden = torch.zeros(model.config.hidden_size)
    handles = []

    def add(store, i, value):
        store[i] = value if store[i] is None else store[i] + value

    def block_hook(i):
        def hook(module, args, kwargs, output):
            x_in = (args[0] if args else kwargs["hidden_states"]).float()
            x_out = _first_tensor(output).float()
            bi[i] += float((1 - torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1)).sum())
        return hook

    def mlp_hook(i):
        def hook(module, args):
            add(mlp, i, args[0].float().abs().sum(dim=(0, 1)))
        return hook

    def head_hook(i):
        def hook(module, args):
            x = args[0].float()
            add(heads, i, x.reshape(*x.shape[:-1], -1, head_dim).norm(dim=-1).sum(dim=(0, 1)))
        return hook

    def norm_hook(module, args, output):
        nonlocal hidden
        hidden += _first_tensor(output).float().abs().sum(dim=(0, 1))

    modules = dict(model.named_modules())
    for i, layer in enumerate(layers):
        sub = dict(layer.named_modules())
        handles.append(layer.register_forward_hook(block_hook(i), with_kwargs=True))
        if mlp_out in sub:  # absent for an architecture width pruning does not know (depth only)
            handles.append(sub[mlp_out].register_forward_pre_hook(mlp_hook(i)))
        if attn_out in sub:
            handles.append(sub[attn_out].register_forward_pre_hook(head_hook(i)))
    for name in hidden_norms:
        handles.append(modules[name].register_forward_hook(norm_hook))
    tokens, nll, scored = 0, 0.0, 0
    try:
        for seq in sequences:
            s, k = _forward(model, seq)
            nll, scored, tokens = nll + s, scored + k, tokens + len(seq.ids)
    finally:
        for h in handles:
            h.remove()
    t = max(1, tokens)
    return Activations(block_influence=[b / t for b in bi], hidden=hidden / t,
                       mlp=[m / t if m is not None else None for m in mlp],
                       heads=[h / t if h is not None else None for h in heads], tokens=tokens,
                       nll=nll, scored_tokens=scored)


def choose_layers(block_influence: list[float], num_layers: int) -> list[int]:
    """The ``num_layers`` blocks with the largest influence, in model order (ties: the earlier block)."""
    order = sorted(range(len(block_influence)), key=lambda i: (-block_influence[i], i))
    return sorted(order[:num_layers])
