"""jax-only checks of pgpo_core: every public function traces under jax.jit (and vmap),
gives the eager result, and jax.grad flows through the dependency and the loss.

These tests do not use the ``backend`` fixture; they always run (jax is a test dependency).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)  # as the backend fixture does

# The hand example of test_core_weights.py (tau = 0.4, beta = 2): rows 0 and 1.
S_TILDE = np.array([[0.3, 0.5, 0.8, 1.3, 0.0], [0.0, 0.1, 0.0, 0.6, 0.35]])
MASK = np.array([[True, True, True, True, False], [False, True, False, True, True]])
DEPENDENCY = np.where(MASK, np.expm1(S_TILDE), 0.0)
W = np.array([[0, 12 / 29, 32 / 29, 72 / 29, 0], [0, 0, 0, 27 / 13, 12 / 13]])


def _tree_close(a, b, rtol=1e-12, atol=1e-14):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_jit_token_visual_dependency(pgpo):
    rng = np.random.default_rng(0)
    zv = jnp.asarray(rng.normal(size=(2, 5, 7)))
    zb = jnp.asarray(rng.normal(size=(2, 5, 7)))
    mask = jnp.asarray(MASK)
    f = jax.jit(lambda a, b, m: pgpo.token_visual_dependency(a, b, m, chunk_size=3,
                                                             temperature=0.9))
    out = f(zv, zb, mask)
    _tree_close(out, pgpo.token_visual_dependency(zv, zb, mask, temperature=0.9))
    # hand value inside jit: (1/2, 1/2) || (1/4, 3/4) = 1/2 log(4/3)
    one = f(jnp.asarray([[[0.0, 0.0]]]), jnp.asarray([[[0.0, math.log(3.0) * 0.9]]]),
            jnp.asarray([[True]]))
    np.testing.assert_allclose(np.asarray(one), [[0.5 * math.log(4 / 3)]], rtol=1e-12)


def test_jit_sampled_token_dependency(pgpo):
    lv = jnp.asarray([[math.log(0.5), math.log(0.25), -1.0]])
    lb = jnp.asarray([[math.log(0.25), math.log(0.5), -1.0]])
    mask = jnp.asarray([[True, True, False]])
    for estimator, expected in (("k1", [math.log(2), -math.log(2), 0]),
                                ("k2", [math.log(2) ** 2 / 2] * 2 + [0]),
                                ("k3", [math.log(2) - 0.5, 1 - math.log(2), 0])):
        f = jax.jit(lambda a, b, m: pgpo.sampled_token_dependency(a, b, m, estimator=estimator))
        np.testing.assert_allclose(np.asarray(f(lv, lb, mask)), [expected], rtol=1e-12)
    f = jax.jit(lambda a, b, m: pgpo.sampled_token_dependency(a, b, m, clip=0.25))
    np.testing.assert_allclose(np.asarray(f(lv, lb, mask)), [[math.log(2) - 0.5, 0.25, 0]],
                               rtol=1e-12)


@pytest.mark.parametrize("threshold", ["fixed", "quantile"])
def test_jit_token_weights_and_reshape(pgpo, threshold):
    dep, mask = jnp.asarray(DEPENDENCY), jnp.asarray(MASK)
    f = jax.jit(lambda d, m: pgpo.token_weights(d, m, eps=1e-12, threshold=threshold))
    w = np.asarray(f(dep, mask))
    expected = W.copy()
    if threshold == "quantile":  # row 0 threshold .26, row 1 .4 (see test_core_weights.py)
        expected[0, :4] = [0, 740 / 1303, 1586 / 1303, 2886 / 1303]
    np.testing.assert_allclose(w, expected, rtol=1e-9, atol=1e-12)
    g = jax.jit(lambda a, d, m: pgpo.reshape_advantages(a, d, m, eps=1e-12,
                                                        threshold=threshold))
    out = np.asarray(g(jnp.asarray([2.0, -1.0]), dep, mask))
    np.testing.assert_allclose(out, expected * np.array([[2.0], [-1.0]]), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(out.sum(1), [8.0, -3.0], rtol=1e-12)


def test_vmap_token_weights(pgpo):
    # vmap over a leading axis of (K, B, T) gives the per-slice results
    dep = jnp.stack([jnp.asarray(DEPENDENCY), jnp.asarray(DEPENDENCY[::-1])])
    mask = jnp.stack([jnp.asarray(MASK), jnp.asarray(MASK[::-1])])
    out = jax.jit(jax.vmap(lambda d, m: pgpo.token_weights(d, m, eps=1e-12)))(dep, mask)
    np.testing.assert_allclose(np.asarray(out[0]), W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out[1]), W[::-1], rtol=1e-9, atol=1e-12)


def test_jit_group_advantages(pgpo):
    rewards = jnp.asarray([1.0, 0.0, 3.0, 0.5, 1.0, 2.0, 0.5, 7.0])
    ids = jnp.asarray([3, 1, 3, 7, 1, 3, 7, 4])
    out = jax.jit(lambda r, g: pgpo.group_advantages(r, g, eps=1e-12))(rewards, ids)
    rt5 = math.sqrt(0.5)
    np.testing.assert_allclose(np.asarray(out.advantages), [-1, -rt5, 1, 0, rt5, 0, 0, 0],
                               rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(np.asarray(out.all_equal),
                                  [False, False, False, True, False, False, True, True])


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean",
                                         "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_jit_policy_loss_and_aggregate(pgpo, aggregation):
    # the hand example of test_core_loss.py: per-token losses [-1.28, .8, 1.5, .6 | -.5, -2]
    ratio = np.array([[1.5, 0.5, 1.5, 1.2], [0.5, 1.0, 1.0, 1.0]])
    adv = jnp.asarray([[1.0, -1.0, -1.0, -0.5], [1.0, 2.0, 0.0, 0.0]])
    mask = jnp.asarray([[True, True, True, True], [True, True, False, False]])
    logp_old = jnp.asarray(-np.ones((2, 4)))
    logp = logp_old + jnp.asarray(np.log(ratio))
    f = jax.jit(lambda *a: pgpo.policy_loss(*a, aggregation=aggregation, dual_clip=3.0))
    loss, metrics = f(logp, logp_old, adv, mask)
    expected = {"token-mean": -0.88 / 6, "seq-mean-token-mean": (0.405 - 1.25) / 2,
                "seq-mean-token-sum": -0.44, "seq-mean-token-sum-norm": -0.11}[aggregation]
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert float(metrics["clip_frac"]) == pytest.approx(2 / 6)
    assert float(metrics["clip_frac_low"]) == pytest.approx(1 / 6)
    assert float(metrics["dual_clip_frac"]) == 0.0
    assert float(metrics["ratio_max"]) == pytest.approx(1.5, rel=1e-12)
    per_token = jnp.asarray([[-1.28, 0.8, 1.5, 0.6], [-0.5, -2.0, 5.0, 5.0]])
    agg = jax.jit(lambda x, m: pgpo.aggregate(x, m, aggregation=aggregation))(per_token, mask)
    assert float(agg) == pytest.approx(expected, rel=1e-12)
    mm = jax.jit(lambda x, m: pgpo.masked_mean(x, m, axis=-1))(per_token, mask)
    np.testing.assert_allclose(np.asarray(mm), [1.62 / 4, -1.25], rtol=1e-12)


def test_jit_weight_diagnostics(pgpo):
    dep, mask = jnp.asarray(DEPENDENCY), jnp.asarray(MASK)
    f = jax.jit(lambda d, m: pgpo.weight_diagnostics(d, m, eps=1e-12))
    d = f(dep, mask)
    # hand values of test_core_diagnostics_config.py (the same two rows)
    assert float(d["weight_mean"]) == pytest.approx(1.0, rel=1e-12)
    assert float(d["weight_max"]) == pytest.approx(72 / 29, rel=1e-9)
    assert float(d["frac_above_tau"]) == pytest.approx(4 / 7, rel=1e-12)
    assert float(d["boosted_tokens"]) == pytest.approx(1.5, rel=1e-12)
    assert float(d["effective_token_frac"]) == pytest.approx((841 / 1588 + 169 / 291) / 2,
                                                             rel=1e-9)


def test_grad_of_exact_kl_matches_closed_form(pgpo):
    # d KL(p || q) / d z_visual = p (log p - log q - KL);  d KL / d z_blind = q - p
    rng = np.random.default_rng(1)
    zv = rng.normal(size=(2, 5, 7))
    zb = rng.normal(size=(2, 5, 7))
    mask = jnp.asarray(MASK)

    def total(a, b):
        return jnp.sum(pgpo.token_visual_dependency(a, b, mask, chunk_size=4))

    gv, gb = jax.jit(jax.grad(total, argnums=(0, 1)))(jnp.asarray(zv), jnp.asarray(zb))
    lp = np.log(np.exp(zv) / np.exp(zv).sum(-1, keepdims=True))
    lq = np.log(np.exp(zb) / np.exp(zb).sum(-1, keepdims=True))
    kl = np.sum(np.exp(lp) * (lp - lq), -1, keepdims=True)
    m = MASK[..., None]
    np.testing.assert_allclose(np.asarray(gv), np.where(m, np.exp(lp) * (lp - lq - kl), 0.0),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gb), np.where(m, np.exp(lq) - np.exp(lp), 0.0),
                               rtol=1e-10, atol=1e-14)


def test_grad_of_policy_loss_unclipped_region(pgpo):
    # all ratios inside the clip range: d loss / d logp_t = -A_t r_t / N
    logp_old = jnp.asarray([[-1.0, -2.0, -0.5], [-1.5, -0.7, -3.0]])
    delta = np.array([[0.1, -0.15, 0.05], [0.0, 0.2, 0.0]])
    adv = jnp.asarray([[1.0, -2.0, 0.5], [3.0, -1.0, 9.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    grad = jax.jit(jax.grad(lambda x: pgpo.policy_loss(x, logp_old, adv, jnp.asarray(mask))[0]))(
        logp_old + jnp.asarray(delta))
    expected = np.where(mask, -np.asarray(adv) * np.exp(delta) / 5, 0.0)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-12, atol=0)


def test_bfloat16_logits_are_computed_in_float32(pgpo):
    rng = np.random.default_rng(2)
    zv = jnp.asarray(rng.normal(size=(2, 5, 64)) * 4, dtype=jnp.bfloat16)
    zb = jnp.asarray(rng.normal(size=(2, 5, 64)) * 4, dtype=jnp.bfloat16)
    mask = jnp.asarray(MASK)
    out = pgpo.token_visual_dependency(zv, zb, mask)
    assert out.dtype == jnp.float32
    jitted = jax.jit(lambda a, b, m: pgpo.token_visual_dependency(a, b, m, chunk_size=4))
    assert jitted(zv, zb, mask).dtype == jnp.float32
    # reference: the rounded bfloat16 values in float64
    a = np.asarray(zv.astype(jnp.float64))
    b = np.asarray(zb.astype(jnp.float64))
    lp = a - np.log(np.exp(a).sum(-1, keepdims=True))
    lq = b - np.log(np.exp(b).sum(-1, keepdims=True))
    ref = np.where(MASK, np.sum(np.exp(lp) * (lp - lq), -1), 0.0)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jitted(zv, zb, mask)), ref, rtol=1e-5, atol=1e-6)
