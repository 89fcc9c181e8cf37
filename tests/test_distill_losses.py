"""Distillation losses against direct full-vocabulary formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from edgedistill.distill.losses import (
    LOSSES,
    FullTeacher,
    TopKTeacher,
    chunked_response_loss,
    forward_kl,
    jsd,
    reverse_kl,
)

N, H, V = 37, 16, 50


@pytest.fixture()
def setup():
    g = torch.Generator().manual_seed(0)
    h_s = torch.randn(N, H, generator=g, requires_grad=True)
    h_t = torch.randn(N, H, generator=g)
    s_head = torch.nn.Linear(H, V, bias=False)
    t_head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad():
        s_head.weight.copy_(torch.randn(V, H, generator=g))
        t_head.weight.copy_(torch.randn(V, H, generator=g))
    targets = torch.randint(0, V, (N,), generator=g)
    return h_s, h_t, s_head, t_head, targets


def direct(name, s_logits, t_logits, targets, T, alpha, beta):
    """Textbook full-vocabulary formulas, summed over positions."""
    ce = F.cross_entropy(s_logits, targets, reduction="sum")
    if name == "sft":
        return ce
    p = F.softmax(t_logits / T, -1)
    q = F.softmax(s_logits / T, -1)
    if name == "forward_kl":
        kd = (p * (p.log() - q.log())).sum()
    elif name == "reverse_kl":
        kd = (q * (q.log() - p.log())).sum()
    else:
        m = beta * p + (1 - beta) * q
        kd = beta * (p * (p.log() - m.log())).sum() + (1 - beta) * (q * (q.log() - m.log())).sum()
    return alpha * T * T * kd + (1 - alpha) * ce


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("T", [1.0, 2.5])
def test_each_loss_matches_direct_formula(setup, name, T):
    h_s, h_t, s_head, t_head, targets = setup
    spec = LOSSES.get(name)
    out = chunked_response_loss(spec, h_s, s_head, targets, V, FullTeacher(h_t, t_head), temperature=T,
                                alpha=0.3, beta=0.4, chunk=8)
    want = direct(name, s_head(h_s), t_head(h_t), targets, T, 0.3, 0.4)
    assert torch.allclose(out["loss"], want, rtol=1e-4, atol=1e-4)
    assert int(out["n"]) == N


@pytest.mark.parametrize("name", LOSSES.names())
def test_chunked_equals_unchunked_values_and_gradients(setup, name):
    h_s, h_t, s_head, t_head, targets = setup
    spec = LOSSES.get(name)
    results = []
    for chunk in (5, N):
        s_head.zero_grad()
        h = h_s.detach().clone().requires_grad_(True)
        out = chunked_response_loss(spec, h, s_head, targets, V, FullTeacher(h_t, t_head), temperature=2.0,
                                    alpha=0.7, chunk=chunk)
        out["loss"].backward()
        results.append((out["loss"].detach(), h.grad.clone(), s_head.weight.grad.clone()))
    (l1, gh1, gw1), (l2, gh2, gw2) = results
    assert torch.allclose(l1, l2, rtol=1e-5, atol=1e-5)
    assert torch.allclose(gh1, gh2, rtol=1e-4, atol=1e-6)
    assert torch.allclose(gw1, gw2, rtol=1e-4, atol=1e-6)
    assert gh1.abs().sum() > 0


def test_kl_zero_when_student_equals_teacher(setup):
    h_s, _, s_head, _, targets = setup
    for name in ("forward_kl", "reverse_kl", "jsd"):
        out = chunked_response_loss(LOSSES.get(name), h_s, s_head, targets, V,
                                    FullTeacher(h_s.detach(), s_head), alpha=1.0, chunk=16)
        assert abs(float(out["kd"])) < 1e-4, name
    # and strictly positive when they differ
    out = chunked_response_loss(LOSSES.get("forward_kl"), h_s, s_head, targets, V,
                                FullTeacher(-h_s.detach(), s_head), alpha=1.0)
    assert float(out["kd"]) > 1.0


def test_jsd_symmetric_and_bounded():
    g = torch.Generator().manual_seed(1)
    a = F.log_softmax(torch.randn(20, V, generator=g) * 4, -1)
    b = F.log_softmax(torch.randn(20, V, generator=g) * 4, -1)
    assert torch.allclose(jsd(a, b, 0.5), jsd(b, a, 0.5), atol=1e-6)
    for beta in (0.1, 0.5, 0.9):
        v = jsd(a, b, beta)
        entropy = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
        assert (v >= -1e-6).all() and (v <= entropy + 1e-5).all()
    # disjoint supports reach the bound ln 2 at beta = 0.5
    p = torch.full((1, 4), float("-inf")); p[0, :2] = math.log(0.5)
    q = torch.full((1, 4), float("-inf")); q[0, 2:] = math.log(0.5)
    assert abs(float(jsd(p, q, 0.5)) - math.log(2)) < 1e-5
    assert torch.allclose(forward_kl(a, b), reverse_kl(b, a))


def test_temperature_scales_kd_by_t_squared(setup):
    h_s, h_t, s_head, t_head, targets = setup
    T = 3.0
    out = chunked_response_loss(LOSSES.get("forward_kl"), h_s, s_head, targets, V, FullTeacher(h_t, t_head),
                                temperature=T, alpha=1.0)
    raw = forward_kl(F.log_softmax(s_head(h_s) / T, -1), F.log_softmax(t_head(h_t) / T, -1)).sum()
    assert torch.allclose(out["kd"], raw * T * T, rtol=1e-5)
    assert torch.allclose(out["loss"], out["kd"])  # alpha = 1: no cross-entropy


def test_shared_vocab_range_ignores_padded_rows(setup):
    """Teacher rows beyond n_vocab (padding) never enter the loss."""
    h_s, h_t, s_head, t_head, targets = setup
    big = torch.nn.Linear(H, V + 14, bias=False)
    with torch.no_grad():
        big.weight[:V] = t_head.weight
        big.weight[V:] = 50.0  # huge logits on padded rows would dominate if compared
    spec = LOSSES.get("forward_kl")
    a = chunked_response_loss(spec, h_s, s_head, targets, V, FullTeacher(h_t, t_head))
    b = chunked_response_loss(spec, h_s, s_head, targets, V, FullTeacher(h_t, big))
    assert torch.allclose(a["loss"], b["loss"], rtol=1e-5)


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("T", [1.0, 1.5])
def test_topk_with_full_support_equals_full_teacher(setup, name, T):
    """k = vocabulary: the remainder bucket is empty (log-mass -inf) and must not turn into NaN."""
    h_s, h_t, s_head, t_head, targets = setup
    t_logp = F.log_softmax(t_head(h_t).detach() / T, -1)
    v, i = t_logp.topk(V, -1)
    spec = LOSSES.get(name)
    grads = []
    for teacher in (FullTeacher(h_t, t_head), TopKTeacher(v, i)):
        h = h_s.detach().clone().requires_grad_(True)
        out = chunked_response_loss(spec, h, s_head, targets, V, teacher, temperature=T)
        out["loss"].backward()
        grads.append((out["loss"].detach(), h.grad))
    (full, g_full), (top, g_top) = grads
    assert torch.allclose(full, top, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(g_top).all() and torch.allclose(g_full, g_top, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("T,alpha", [(1.0, 0.3), (1.0, 1.0), (2.5, 0.3), (2.5, 1.0)])
def test_each_loss_gradient_matches_direct_formula(setup, name, T, alpha):
    """The gradient shortcuts (CE read off the KD log-softmax at T = 1, CE outside autograd at alpha = 1,
    forward KL's constant entropy term) must not change the gradient."""
    h_s, h_t, s_head, t_head, targets = setup
    grads = []
    for ours in (True, False):
        h = h_s.detach().clone().requires_grad_(True)
        if ours:
            loss = chunked_response_loss(LOSSES.get(name), h, s_head, targets, V, FullTeacher(h_t, t_head),
                                         temperature=T, alpha=alpha, beta=0.4, chunk=8)["loss"]
        else:
            loss = direct(name, s_head(h), t_head(h_t).detach(), targets, T, alpha, 0.4)
        loss.backward()
        grads.append(h.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_topk_bucket_lower_bounds_full_kl(setup):
    """Merging the tail into one bucket can only lower KL (data-processing inequality), and the gap
    shrinks as k grows."""
    h_s, h_t, s_head, t_head, targets = setup
    t_logp = F.log_softmax(t_head(h_t).detach(), -1)
    spec = LOSSES.get("forward_kl")
    full = float(chunked_response_loss(spec, h_s, s_head, targets, V, FullTeacher(h_t, t_head))["kd"])
    prev = -1.0
    for k in (1, 5, 20, 45):
        v, i = t_logp.topk(k, -1)
        kd = float(chunked_response_loss(spec, h_s, s_head, targets, V, TopKTeacher(v.half(), i.int()))["kd"])
        assert kd <= full + 1e-3
        assert kd >= prev - 1e-2
        prev = kd
    assert prev > 0.8 * full


def test_registry_lists_valid_losses():
    assert LOSSES.names() == ["forward_kl", "jsd", "reverse_kl", "sft"]
    with pytest.raises(Exception, match="valid: forward_kl, jsd, reverse_kl, sft"):
        LOSSES.get("kl")
