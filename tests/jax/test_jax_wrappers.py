"""pgpo_jax's jitted wrappers give pgpo_core's numbers (numpy and torch), under jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax_test_data import ragged_mask

import pgpo_core
import pgpo_jax

B, T = 4, 9
RTOL, ATOL = 2e-5, 2e-6  # float32 (the jax side) against float64 references


def _inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    mask = ragged_mask(rng, B, T)
    dependency = np.where(mask, rng.exponential(0.3, size=(B, T)), 0.0)
    advantages = rng.normal(size=B)
    logp_old = np.where(mask, -rng.exponential(1.0, size=(B, T)), 0.0)
    logp = np.where(mask, logp_old + rng.normal(0.0, 0.3, size=(B, T)), 0.0)
    return dependency, mask, advantages, logp, logp_old


def _j(a, dtype=jnp.float32):
    return jnp.asarray(np.asarray(a), dtype=dtype)


def _torch(a):
    return torch.asarray(np.asarray(a))


PAPER = pgpo_core.PGPOConfig()
VARIANT = pgpo_core.PGPOConfig.ablation("dev_variant", tau=0.3, beta=1.0, clip_high=0.2,
                                        dual_clip=3.0, aggregation="seq-mean-token-mean")


# Each setting compiles afresh (about 0.5 s here), so the two configs split the two modes.
@pytest.mark.parametrize("config,x64", [(PAPER, False), (VARIANT, True)],
                         ids=["paper-x32", "dev_variant-x64"])
def test_numbers_match_core_on_numpy_and_torch(config, x64, set_x64):
    set_x64(x64)
    dep, mask, adv, logp, logp_old = _inputs()
    wk, lk = config.weight_kwargs(), config.loss_kwargs()
    jmask = jnp.asarray(mask)
    for ref_args, convert in (((dep, mask), np.asarray), ((_torch(dep), _torch(mask)), _torch)):
        ref_w = np.asarray(pgpo_core.token_weights(*ref_args, **wk))
        ref_a = np.asarray(pgpo_core.reshape_advantages(convert(adv), *ref_args, **wk))
        ref_loss, ref_metrics = pgpo_core.policy_loss(
            convert(logp), convert(logp_old), convert(ref_a), ref_args[1], **lk)

        w = pgpo_jax.token_weights(_j(dep), jmask, **wk)
        a = pgpo_jax.reshape_advantages(_j(adv), _j(dep), jmask, **wk)
        loss, metrics = pgpo_jax.pgpo_loss(_j(logp), _j(logp_old), a, jmask, config)
        assert w.dtype == a.dtype == loss.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(w), ref_w, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(np.asarray(a), ref_a, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(float(loss), float(ref_loss), rtol=RTOL, atol=ATOL)
        assert set(metrics) == set(ref_metrics)
        for name, value in metrics.items():
            np.testing.assert_allclose(float(value), float(ref_metrics[name]), rtol=RTOL,
                                       atol=ATOL, err_msg=name)
    # Eq. 7 on, so each response's advantages sum to |o_i| A_i (mass conservation).
    if config.conserve_mass:
        np.testing.assert_allclose(np.asarray(a).sum(axis=1), mask.sum(axis=1) * adv,
                                   rtol=1e-4, atol=1e-5)


def test_group_advantages_match_core_and_hand_values():
    rewards = np.array([1.0, 0.0, 0.0, 0.5, 0.5, 1.0, 0.2])
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    out = pgpo_jax.group_advantages(_j(rewards), jnp.asarray(groups, dtype=jnp.int32))
    ref = pgpo_core.group_advantages(_torch(rewards), _torch(groups))
    for got, want in zip(out, ref):
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=RTOL, atol=ATOL)
    # By hand: group 0 = (1, 0, 0), mean 1/3, unbiased std sqrt(1/3); group 1 all equal -> 0.
    s = np.sqrt(1 / 3)
    np.testing.assert_allclose(np.asarray(out.advantages[:5]),
                               [(2 / 3) / s, -(1 / 3) / s, -(1 / 3) / s, 0.0, 0.0], rtol=1e-5)
    assert np.asarray(out.all_equal).tolist() == [False] * 3 + [True] * 2 + [False] * 2


def test_wrappers_trace_under_an_outer_jit():
    dep, mask, adv, logp, logp_old = _inputs(1)
    config = PAPER

    def pipeline(dep, mask, adv, logp, logp_old):
        a = pgpo_jax.reshape_advantages(adv, dep, mask, **config.weight_kwargs())
        return pgpo_jax.pgpo_loss(logp, logp_old, a, mask, config)

    args = (_j(dep), jnp.asarray(mask), _j(adv), _j(logp), _j(logp_old))
    jitted = jax.jit(pipeline)(*args)
    eager = pipeline(*args)
    assert jax.tree.structure(jitted) == jax.tree.structure(eager)
    for x, y in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    # The config itself is a valid static argument (frozen and hashable).
    static = jax.jit(pgpo_jax.pgpo_loss, static_argnames="config")
    shaped = pgpo_jax.reshape_advantages(args[2], args[0], args[1])
    loss, _ = static(args[3], args[4], shaped, args[1], config=config)
    np.testing.assert_allclose(float(loss), float(eager[0]), rtol=1e-6)


def test_vmap_over_stacked_batches_equals_a_loop():
    k = 3
    batches = [_inputs(seed) for seed in range(k)]
    stack = lambda i, dtype=jnp.float32: jnp.stack([_j(b[i], dtype) for b in batches])  # noqa: E731
    dep, mask, adv, logp, logp_old = (stack(0), stack(1, bool), stack(2), stack(3), stack(4))
    groups = jnp.tile(jnp.asarray([0, 0, 1, 1], dtype=jnp.int32), (k, 1))
    wk = VARIANT.weight_kwargs()

    def pipeline(rewards, groups, dep, mask, logp, logp_old):
        grouped = pgpo_jax.group_advantages(rewards, groups)
        weights = pgpo_jax.token_weights(dep, mask, **wk)
        shaped = pgpo_jax.reshape_advantages(grouped.advantages, dep, mask, **wk)
        return grouped, weights, shaped, pgpo_jax.pgpo_loss(logp, logp_old, shaped, mask, VARIANT)

    args = (adv, groups, dep, mask, logp, logp_old)
    batched = jax.jit(jax.vmap(pipeline))(*args)
    one = jax.jit(pipeline)
    for i in range(k):
        looped = one(*(a[i] for a in args))
        assert jax.tree.structure(looped) == jax.tree.structure(batched)
        for x, y in zip(jax.tree.leaves(batched), jax.tree.leaves(looped)):
            np.testing.assert_allclose(np.asarray(x[i]), np.asarray(y), rtol=1e-6, atol=1e-7)
    # The batch is not degenerate: the stacked batches give different losses.
    assert len({float(x) for x in batched[3][0]}) == k


def test_eager_calls_keep_the_cores_value_checks():
    dep, mask, adv, logp, logp_old = _inputs()
    jmask = jnp.asarray(mask)
    with pytest.raises(ValueError, match="^dependency: contains NaN"):
        pgpo_jax.token_weights(_j(dep).at[0, 0].set(jnp.nan), jmask)
    with pytest.raises(ValueError, match="^dependency: must be >= 0"):
        pgpo_jax.reshape_advantages(_j(adv), _j(dep).at[0, 1].set(-1.0), jmask)
    with pytest.raises(ValueError, match="^advantages: contains NaN"):
        pgpo_jax.reshape_advantages(_j(adv).at[2].set(jnp.inf), _j(dep), jmask)
    with pytest.raises(ValueError, match="^rewards: contains NaN"):
        pgpo_jax.group_advantages(_j(adv).at[1].set(jnp.nan), jnp.zeros(B, dtype=jnp.int32))
    with pytest.raises(ValueError, match="^advantages: contains NaN"):
        pgpo_jax.policy_loss(_j(logp), _j(logp_old), _j(adv).at[0].set(jnp.nan), jmask)
    with pytest.raises(ValueError, match="^logp: contains NaN"):
        pgpo_jax.policy_loss(_j(logp).at[0, 0].set(jnp.nan), _j(logp_old), _j(adv), jmask)
    # NaN on padding is not an error: it never enters the result.
    pad = np.argwhere(~mask)[0]
    w = pgpo_jax.token_weights(_j(dep).at[tuple(pad)].set(jnp.nan), jmask)
    assert np.isfinite(np.asarray(w)).all()
    # Static checks (shapes, dtypes, hyper-parameters) name the argument, eager or traced.
    with pytest.raises(ValueError, match="^response_mask: shape"):
        jax.jit(pgpo_jax.token_weights)(_j(dep), jmask[:, :-1])
    with pytest.raises(TypeError, match="^response_mask: expected a boolean"):
        pgpo_jax.token_weights(_j(dep), jnp.asarray(mask, dtype=jnp.int32))
    with pytest.raises(ValueError, match="^tau: must lie in"):
        pgpo_jax.token_weights(_j(dep), jmask, tau=1.5)
    with pytest.raises(TypeError, match="^config: expected a pgpo_core.PGPOConfig"):
        pgpo_jax.pgpo_loss(_j(logp), _j(logp_old), _j(adv), jmask, {"clip_low": 0.2})


def test_bf16_inputs_are_computed_in_float32():
    dep, mask, adv, logp, logp_old = _inputs(2)
    jmask = jnp.asarray(mask)
    dep16 = _j(dep, jnp.bfloat16)
    w = pgpo_jax.token_weights(dep16, jmask)
    assert w.dtype == jnp.float32
    ref = pgpo_core.token_weights(np.asarray(dep16.astype(jnp.float32), dtype=np.float64), mask)
    np.testing.assert_allclose(np.asarray(w), ref, rtol=RTOL, atol=ATOL)
    loss, metrics = pgpo_jax.policy_loss(_j(logp, jnp.bfloat16), _j(logp_old, jnp.bfloat16),
                                         _j(adv, jnp.bfloat16), jmask)
    assert loss.dtype == metrics["ratio_mean"].dtype == jnp.float32
