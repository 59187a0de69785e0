"""torch-only checks of pgpo_core: autograd and half-precision inputs (CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def _closed_form_kl_grads(zv: np.ndarray, zb: np.ndarray):
    """d KL(p || q) / d z_visual = p (log p - log q - KL);  d KL / d z_blind = q - p."""
    lp = zv - zv.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    lq = zb - zb.max(-1, keepdims=True)
    lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
    p, q = np.exp(lp), np.exp(lq)
    kl = np.sum(p * (lp - lq), -1, keepdims=True)
    return p * (lp - lq - kl), q - p


def test_exact_kl_gradcheck_float64(pgpo):
    gen = torch.Generator().manual_seed(0)
    zv = torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    zb = torch.randn(2, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    for chunk_size in (None, 4):
        assert torch.autograd.gradcheck(
            lambda a, b: pgpo.token_visual_dependency(a, b, mask, chunk_size=chunk_size,
                                                      temperature=1.3),
            (zv, zb))


def test_exact_kl_gradient_matches_closed_form(pgpo):
    rng = np.random.default_rng(1)
    zv = rng.normal(size=(2, 4, 6)) * 2
    zb = rng.normal(size=(2, 4, 6)) * 2
    mask = np.array([[True, True, False, True], [False, True, True, True]])
    zv[0, 2] = [1e4, -1e4, 0, 0, 0, 0]  # finite garbage on padding: gradient exactly 0 there
    tv = torch.tensor(zv, requires_grad=True)
    tb = torch.tensor(zb, requires_grad=True)
    out = pgpo.token_visual_dependency(tv, tb, torch.tensor(mask), chunk_size=3)
    out.sum().backward()
    gv, gb = _closed_form_kl_grads(zv, zb)
    m = mask[..., None]
    np.testing.assert_allclose(tv.grad.numpy(), np.where(m, gv, 0.0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tb.grad.numpy(), np.where(m, gb, 0.0), rtol=1e-10, atol=1e-14)
    assert np.all(tv.grad.numpy()[~mask] == 0.0) and np.all(tb.grad.numpy()[~mask] == 0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_exact_kl_half_precision_is_computed_in_float32(pgpo, dtype):
    gen = torch.Generator().manual_seed(2)
    zv = (torch.randn(2, 3, 64, generator=gen) * 4).to(dtype)
    zb = (torch.randn(2, 3, 64, generator=gen) * 4).to(dtype)
    mask = torch.ones(2, 3, dtype=torch.bool)
    out = pgpo.token_visual_dependency(zv, zb, mask, chunk_size=4)
    assert out.dtype == torch.float32
    # reference: the same (rounded) half-precision values, in float64
    ref = torch.nn.functional.kl_div(torch.log_softmax(zb.double(), -1),
                                     torch.log_softmax(zv.double(), -1), log_target=True,
                                     reduction="none").sum(-1)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    # half-precision gradients flow back in the input dtype
    zv.requires_grad_(True)
    pgpo.token_visual_dependency(zv, zb, mask).sum().backward()
    assert zv.grad.dtype == dtype and torch.isfinite(zv.grad).all()


def test_sampled_and_weights_half_precision(pgpo):
    lv = torch.tensor([[-0.6931, -1.3863]], dtype=torch.bfloat16)
    lb = torch.tensor([[-1.3863, -0.6931]], dtype=torch.bfloat16)
    mask = torch.ones(1, 2, dtype=torch.bool)
    k3 = pgpo.sampled_token_dependency(lv, lb, mask)
    assert k3.dtype == torch.float32
    w = pgpo.token_weights(k3.to(torch.bfloat16), mask)
    assert w.dtype == torch.float32
    assert float(w.sum()) == pytest.approx(2.0, rel=1e-6)


def test_policy_loss_gradient_unclipped_region(pgpo):
    # token-mean, all ratios inside [0.8, 1.28]: loss = -(1/N) sum_t A_t r_t, so
    # d loss / d logp_t = -A_t r_t / N (r_t = exp(logp_t - logp_old_t)), 0 on padding.
    logp_old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0]], dtype=torch.float64)
    delta = torch.tensor([[0.1, -0.15, 0.05], [0.0, 0.2, 0.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, -2.0, 0.5], [3.0, -1.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    logp = (logp_old + delta).requires_grad_(True)
    loss, _ = pgpo.policy_loss(logp, logp_old, adv, mask)
    loss.backward()
    expected = torch.where(mask, -adv * torch.exp(delta) / 5, torch.zeros(()))
    torch.testing.assert_close(logp.grad, expected, rtol=1e-12, atol=0)


def test_policy_loss_gradient_clipped_tokens_is_zero(pgpo):
    # A > 0 with r = 1.5 > 1.28 and A < 0 with r = 0.5 < 0.8 take the constant clipped branch:
    # no gradient. The unclipped third token (A = 1, r = 1) gets -A r / N = -1/3.
    logp_old = torch.zeros(1, 3, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0]], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64)
    loss, metrics = pgpo.policy_loss(logp, logp_old, adv, torch.ones(1, 3, dtype=torch.bool))
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0, -1 / 3]],
                                                       dtype=torch.float64))
    assert float(metrics["clip_frac"]) == pytest.approx(2 / 3)


def test_policy_loss_gradcheck_every_aggregation(pgpo):
    gen = torch.Generator().manual_seed(3)
    logp_old = -torch.rand(3, 4, dtype=torch.float64, generator=gen)
    logp = (logp_old + 0.5 * torch.randn(3, 4, dtype=torch.float64, generator=gen))
    adv = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    mask = torch.rand(3, 4, generator=gen) < 0.7
    for aggregation in pgpo.AGGREGATIONS:
        assert torch.autograd.gradcheck(
            lambda x: pgpo.policy_loss(x, logp_old, adv, mask, aggregation=aggregation,
                                       dual_clip=3.0)[0],
            (logp.clone().requires_grad_(True),))


def test_reshape_advantages_keeps_gradient_of_advantages(pgpo):
    # Eq. 8 is linear in A: d sum(A~) / d A_i = sum_t w~_t = |o_i| (Eq. 7)
    adv = torch.tensor([0.5, -2.0], dtype=torch.float64, requires_grad=True)
    dep = torch.tensor([[0.1, 2.0, 0.5], [1.0, 0.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, True]])
    pgpo.reshape_advantages(adv, dep, mask).sum().backward()
    torch.testing.assert_close(adv.grad, torch.tensor([3.0, 2.0], dtype=torch.float64),
                               rtol=1e-12, atol=0)


@pytest.mark.parametrize("dual_clip", [None, 3.0])
def test_policy_loss_gradient_is_finite_for_huge_ratios_and_garbage_padding(pgpo, dual_clip):
    """Issue 8: in float32, log r = 90 overflowed exp and the gradient was NaN. With the
    default clamp at +-20 the gradient is 0 beyond it (verl's behaviour), exact inside it,
    and padding holding +-inf / NaN log-probs or advantages contributes nothing."""
    logp = torch.tensor([[90.0, 0.1, float("inf"), float("nan")],
                         [-float("inf"), -90.0, 0.0, 0.0]], requires_grad=True)
    logp_old = torch.tensor([[0.0, 0.0, float("nan"), 0.0], [-float("inf"), 0.0, 0.0, 0.0]])
    adv = torch.tensor([[1.0, 1.0, float("nan"), float("inf")], [0.0, -1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False, False], [False, True, True, True]])
    loss, _ = pgpo.policy_loss(logp, logp_old, adv, mask, dual_clip=dual_clip)
    loss.backward()
    assert torch.isfinite(loss)
    grad = logp.grad
    assert torch.all(torch.isfinite(grad)), grad
    # Token (0, 1): A = 1, r = e^0.1 = 1.105 inside [0.8, 1.28]: d/dlogp (-A r) / n = -r / 5.
    want = torch.zeros(2, 4)
    want[0, 1] = -math.exp(0.1) / 5
    # Token (1, 2): A = 1, r = 1: -1 / 5. Token (1, 3): A = 1, r = 1: -1 / 5.
    want[1, 2] = want[1, 3] = -1 / 5
    # Token (1, 1): A = -1, log r = -90 clamped: 0. Token (0, 0): clamped: 0.
    torch.testing.assert_close(grad, want)
