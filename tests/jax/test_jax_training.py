"""A pure-jax PGPO training step with optax: gradients flow, and are exactly 0 where w~ = 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import pgpo_core
import pgpo_jax

VOCAB, FEATURES = 5, 3
CONFIG = pgpo_core.PGPOConfig()  # tau = 0.4 > 0: a response's least dependent token gets w = 0

# Two responses of one prompt. Row 0: token 1 has the smallest dependency; row 1: token 2,
# and token 3 is padding. I = 0 < tau there, so w = 0 / (tau + eps) = 0 and A~ = 0.
DEPENDENCY = np.array([[0.5, 0.0, 2.0, 1.0], [0.3, 0.8, 0.1, 0.0]])
MASK = np.array([[True, True, True, True], [True, True, True, False]])
ZERO_WEIGHT = [(0, 1), (1, 2)]
PADDING = [(1, 3)]
REWARDS = np.array([1.0, 0.0])


def _setup():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 4, FEATURES))
    tokens = rng.integers(0, VOCAB, size=(2, 4))
    params = {"shared": jnp.asarray(rng.normal(0.0, 0.5, size=(FEATURES, VOCAB)),
                                    dtype=jnp.float32),
              "per_token": jnp.zeros((2, 4, VOCAB), dtype=jnp.float32)}
    return features, tokens, params


def _policy_logp(params, features, tokens):
    """Toy policy: logits = x W + b_t (a linear map plus a bias owned by each position)."""
    logits = jnp.asarray(features, dtype=jnp.float32) @ params["shared"] + params["per_token"]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, jnp.asarray(tokens)[..., None], axis=-1)[..., 0]


def _advantages():
    groups = pgpo_jax.group_advantages(jnp.asarray(REWARDS, dtype=jnp.float32),
                                       jnp.zeros(2, dtype=jnp.int32))
    return pgpo_jax.reshape_advantages(groups.advantages,
                                       jnp.asarray(DEPENDENCY, dtype=jnp.float32),
                                       jnp.asarray(MASK), **CONFIG.weight_kwargs())


def test_gradient_matches_the_hand_derivation_and_is_zero_where_weights_are_zero():
    features, tokens, params = _setup()
    token_adv = _advantages()
    for b, t in ZERO_WEIGHT + PADDING:
        assert float(token_adv[b, t]) == 0.0
    logp_old = jax.lax.stop_gradient(_policy_logp(params, features, tokens))
    mask = jnp.asarray(MASK)

    def loss_fn(p):
        return pgpo_jax.pgpo_loss(_policy_logp(p, features, tokens), logp_old, token_adv, mask,
                                  CONFIG)

    (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)

    # Independent route (numpy, float64): at the rollout policy r = 1, nothing is clipped,
    # so d loss / d logp_t = -A~_t / n_tokens (token-mean), and
    # d logp_t / d logits_t = onehot(y_t) - softmax(logits_t).
    adv = pgpo_core.reshape_advantages(
        pgpo_core.group_advantages(REWARDS, np.zeros(2, dtype=np.int64)).advantages,
        DEPENDENCY, MASK, **CONFIG.weight_kwargs())
    logits = features @ np.asarray(params["shared"], dtype=np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    d_logits = (-adv / MASK.sum())[..., None] * (np.eye(VOCAB)[tokens] - probs)
    np.testing.assert_allclose(np.asarray(grads["per_token"]), d_logits, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grads["shared"]),
                               np.einsum("btf,btv->fv", features, d_logits), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(float(loss), -adv.sum() / MASK.sum(), rtol=1e-5)
    assert float(metrics["ratio_mean"]) == 1.0 and float(metrics["clip_frac"]) == 0.0

    per_token = np.asarray(grads["per_token"])
    for b, t in ZERO_WEIGHT + PADDING:
        assert (per_token[b, t] == 0.0).all()  # exactly, not approximately
    for b, t in zip(*np.nonzero(MASK)):
        if (b, t) not in ZERO_WEIGHT:
            assert np.abs(per_token[b, t]).max() > 1e-4
    assert np.abs(np.asarray(grads["shared"])).max() > 1e-4


def test_optax_adam_steps_move_only_the_weighted_tokens():
    features, tokens, params = _setup()
    token_adv = _advantages()
    mask = jnp.asarray(MASK)
    logp_old = _policy_logp(params, features, tokens)
    optimizer = optax.adam(5e-2)

    @jax.jit
    def step(params, opt_state):
        def loss_fn(p):
            return pgpo_jax.pgpo_loss(_policy_logp(p, features, tokens), logp_old, token_adv,
                                      mask, CONFIG)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    start = params
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(15):
        params, opt_state, loss, metrics = step(params, opt_state)
        losses.append(float(loss))

    moved = np.asarray(params["per_token"]) - np.asarray(start["per_token"])
    for b, t in ZERO_WEIGHT + PADDING:
        assert (moved[b, t] == 0.0).all()  # Adam's update of a zero gradient is exactly 0
    for b, t in zip(*np.nonzero(MASK)):
        if (b, t) not in ZERO_WEIGHT:
            assert np.abs(moved[b, t]).max() > 1e-2
    assert losses[-1] < losses[0] - 0.05
    # The better answer's weighted tokens became more likely, the worse answer's less.
    delta = np.asarray(_policy_logp(params, features, tokens) - logp_old)
    assert (delta[0, [0, 2, 3]] > 0).all() and (delta[1, [0, 1]] < 0).all()
    assert float(metrics["clip_frac"]) > 0  # the clip range was reached: DAPO's clipping acts
