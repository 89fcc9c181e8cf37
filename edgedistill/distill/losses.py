"""Distillation losses, computed chunk by chunk over response positions.

Every KD loss is a per-position divergence between two distributions given as log-probabilities
over the same M "bins": the full shared vocabulary (teacher in memory), or the teacher's top-k tokens
plus one remainder bucket holding all other probability mass (teacher top-k cache, see topk_cache.py).

Definitions (P = teacher, Q = student, both at temperature T):

- ``forward_kl``: KL(P || Q) = sum P (log P - log Q)  (mean-seeking, the classic Hinton KD)
- ``reverse_kl``: KL(Q || P) = sum Q (log Q - log P)  (mode-seeking, as in MiniLLM)
- ``jsd``:  M = beta P + (1 - beta) Q;  beta KL(P || M) + (1 - beta) KL(Q || M)  (bounded by ln 2)
- ``sft``:  no KD term; cross-entropy on the teacher's response tokens only.

The total per token is ``alpha * T^2 * KD + (1 - alpha) * CE`` (``CE`` at T = 1 on the teacher's
tokens). The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.).

Memory: :func:`chunked_response_loss` never builds logits for a whole batch. It takes the hidden states
of the response positions only, and applies the LM head + loss ``chunk`` positions at a time under
activation checkpointing, so the backward pass recomputes one chunk's logits instead of keeping all of
them: peak logits memory is O(chunk x vocab) instead of O(batch x seq x vocab).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from edgedistill.registry import Registry


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: ``divergence(student_logp, teacher_logp, beta) -> [N]`` or None for sft."""

    name: str
    divergence: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None

    @property
    def uses_teacher_logits(self) -> bool:
        return self.divergence is not None


LOSSES: Registry[LossSpec] = Registry("loss")


def _plogratio(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """sum_i p_i (log p_i - log q_i) with 0 log 0 = 0 (top-k buckets may hold zero mass)."""
    p = logp.exp()
    term = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    return term.sum(-1)


def forward_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    # sum P log P - sum P log Q. The first term does not depend on the student, so it is computed
    # without autograd; the graph then holds one product (backward: -P) instead of the four
    # vocabulary-sized intermediates of _plogratio's where/exp/sub/mul chain.
    with torch.no_grad():
        p = teacher_logp.exp()
        neg_entropy = torch.where(p > 0, p * teacher_logp, torch.zeros_like(p)).sum(-1)
    return neg_entropy - (p * student_logp).sum(-1)


def reverse_kl(student_logp: torch.Tensor, teacher_logp: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    return _plogratio(student_logp, teacher_logp)


def jsd(student_logp: torch.Tensor, teacher_logp: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    if beta <= 0.0:  # M = Q: both terms vanish
        return torch.zeros(student_logp.shape[:-1], dtype=student_logp.dtype, device=student_logp.device)
    if beta >= 1.0:
        return torch.zeros(student_logp.shape[:-1], dtype=student_logp.dtype, device=student_logp.device)
    # log M computed in log space: logsumexp(log beta + log P, log(1-beta) + log Q)
    log_m = torch.logsumexp(
        torch.stack([teacher_logp + torch.log(torch.tensor(beta)), student_logp + torch.log(torch.tensor(1 - beta))]),
        dim=0,
    )
    return beta * _plogratio(teacher_logp, log_m) + (1 - beta) * _plogratio(student_logp, log_m)


LOSSES.register("sft", LossSpec("sft", None))
LOSSES.register("forward_kl", LossSpec("forward_kl", forward_kl))
LOSSES.register("reverse_kl", LossSpec("reverse_kl", reverse_kl))
LOSSES.register("jsd", LossSpec("jsd", jsd))


# --- teacher targets ---------------------------------------------------------------------------------


@dataclass
class FullTeacher:
    """Teacher in memory: its final hidden states at the response positions and its LM head."""

    hidden: torch.Tensor  # [N, H_teacher], no grad
    head: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TopKTeacher:
    """Teacher from the top-k cache: log-probs (at the run's temperature) and token ids per position."""

    logp: torch.Tensor  # [N, k] float
    index: torch.Tensor  # [N, k] int64


def topk_bins(student_logp: torch.Tensor, teacher: TopKTeacher) -> tuple[torch.Tensor, torch.Tensor]:
    """Both distributions over k+1 bins: the teacher's top-k tokens plus one remainder bucket.

    The student's remainder is the exact log-mass of all its other tokens; the teacher's is
    log(1 - sum of its cached top-k probabilities), zero mass when the top-k already covers ~all of it.
    """
    index = teacher.index.long()
    s_top = student_logp.gather(-1, index)
    s_rest = student_logp.scatter(-1, index, float("-inf")).logsumexp(-1, keepdim=True)
    # k = the whole vocabulary leaves no remainder (log-mass -inf); a finite floor keeps 0 * log q at 0
    s_rest = s_rest.clamp(min=torch.finfo(s_rest.dtype).min)
    t_top = teacher.logp.float()
    t_mass = t_top.exp().sum(-1, keepdim=True)
    t_rest = torch.where(t_mass < 1.0 - 1e-6, torch.log1p(-t_mass.clamp(max=1.0 - 1e-6)),
                         torch.full_like(t_mass, float("-inf")))
    return torch.cat([s_top, s_rest], -1), torch.cat([t_top, t_rest], -1)


def apply_head(head: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, n_vocab: int,
               softcap: float | None = None) -> torch.Tensor:
    """LM head on ``hidden`` -> fp32 logits over the shared real-token range [0, n_vocab)."""
    logits = head(hidden)[..., :n_vocab].float()
    if softcap:  # Gemma-2 style final logit soft-capping
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def _chunk_loss(spec: LossSpec, s_head, n_vocab: int, temperature: float, alpha: float, beta: float, s_softcap,
                t_softcap, h_s: torch.Tensor, targets: torch.Tensor, t_a: torch.Tensor | None,
                t_b: torch.Tensor | None, t_head) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of CE, sum of KD) over one chunk of positions."""
    logits = apply_head(s_head, h_s, n_vocab, s_softcap)
    if not spec.uses_teacher_logits or t_a is None:
        ce = F.cross_entropy(logits, targets, reduction="sum")
        return ce, torch.zeros((), device=ce.device, dtype=ce.dtype)
    s_logp = F.log_softmax(logits / temperature, dim=-1)
    if temperature == 1.0:  # CE is read off the same log-softmax: no second vocabulary-wide pass
        ce = -s_logp.gather(-1, targets[:, None]).sum()
    else:
        # With alpha = 1 the CE term has zero weight: compute it for the log only, outside autograd,
        # so the backward pass does not run a second log-softmax for nothing.
        with torch.no_grad() if alpha >= 1.0 else contextlib.nullcontext():
            ce = F.cross_entropy(logits, targets, reduction="sum")
    if t_head is not None:  # full teacher: its hidden states -> logits
        with torch.no_grad():
            t_logp = F.log_softmax(apply_head(t_head, t_a, n_vocab, t_softcap) / temperature, dim=-1)
    else:
        s_logp, t_logp = topk_bins(s_logp, TopKTeacher(t_a, t_b))
    kd = spec.divergence(s_logp, t_logp, beta).sum() * (temperature**2)
    return ce, kd


def chunked_response_loss(
    spec: LossSpec,
    student_hidden: torch.Tensor,
    student_head: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    n_vocab: int,
    teacher: FullTeacher | TopKTeacher | None = None,
    temperature: float = 1.0,
    alpha: float = 0.5,
    beta: float = 0.5,
    chunk: int = 256,
    student_softcap: float | None = None,
    teacher_softcap: float | None = None,
) -> dict[str, torch.Tensor]:
    """Summed losses over N response positions, computed ``chunk`` positions at a time.

    ``student_hidden`` is [N, H] (final hidden states of the positions that predict ``targets`` [N]).
    Returns sums (divide by ``n`` for means): ``loss`` = alpha*KD + (1-alpha)*CE for logit losses,
    CE for sft; ``ce``; ``kd``; ``n`` (number of positions).
    """
    if spec.uses_teacher_logits and teacher is None:
        raise ValueError(f"loss {spec.name} needs teacher targets")
    n = targets.shape[0]
    ce_sum = student_hidden.new_zeros((), dtype=torch.float32)
    kd_sum = student_hidden.new_zeros((), dtype=torch.float32)
    # With a single chunk, checkpointing cannot lower the peak (that chunk's logits exist at some point
    # either way) and would only compute both LM heads twice; checkpoint only when there are several.
    use_ckpt = torch.is_grad_enabled() and student_hidden.requires_grad and n > chunk
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        if isinstance(teacher, FullTeacher):
            t_a, t_b, t_head = teacher.hidden[sl], None, teacher.head
        elif isinstance(teacher, TopKTeacher):
            t_a, t_b, t_head = teacher.logp[sl], teacher.index[sl], None
        else:
            t_a = t_b = t_head = None
        args = (spec, student_head, n_vocab, temperature, alpha, beta, student_softcap, teacher_softcap,
                student_hidden[sl], targets[sl], t_a, t_b, t_head)
        if use_ckpt:
            ce, kd = checkpoint(_chunk_loss, *args, use_reentrant=False)
        else:
            ce, kd = _chunk_loss(*args)
        ce_sum = ce_sum + ce
        kd_sum = kd_sum + kd
    if spec.uses_teacher_logits:
        loss = alpha * kd_sum + (1.0 - alpha) * ce_sum
    else:
        loss = ce_sum
    return {"loss": loss, "ce": ce_sum.detach(), "kd": kd_sum.detach(), "n": torch.tensor(n)}
