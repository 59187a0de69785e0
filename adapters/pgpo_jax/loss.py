"""Jitted clipped policy loss (DAPO recipe; PGPO Eq. 9) for optax training loops.

Both functions return ``(loss, metrics)``: a scalar and a dict of 0-d arrays, so
``jax.value_and_grad(f, has_aux=True)`` gives the gradient for any optax optimiser.
"""

from __future__ import annotations

import functools

import jax

import pgpo_core

from pgpo_jax import _validate

_LOSS_ARGS = ("clip_low", "clip_high", "dual_clip", "aggregation", "normalizer", "norm_length")


@functools.partial(jax.jit, static_argnames=_LOSS_ARGS)
def _policy_loss(logp, logp_old, advantages, response_mask, **kwargs):
    return pgpo_core.policy_loss(logp, logp_old, advantages, response_mask, **kwargs)


def policy_loss(
    logp: jax.Array,
    logp_old: jax.Array,
    advantages: jax.Array,
    response_mask: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
    aggregation: str = "token-mean",
    normalizer: float | None = None,
    norm_length: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped surrogate :func:`pgpo_core.policy_loss` under ``jax.jit``, hyper-parameters static.

    ``r = exp(logp - logp_old)``, ``l = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``,
    aggregated over response tokens (``token-mean`` = DAPO/PGPO).

    Returns:
      ``(loss, metrics)``; ``metrics`` holds ``clip_frac``, ``clip_frac_low``,
      ``clip_frac_high``, ``dual_clip_frac``, ``approx_kl``, ``ratio_mean``,
      ``ratio_max``, ``advantage_mean`` (0-d arrays).
    """
    out = _policy_loss(logp, logp_old, advantages, response_mask, clip_low=clip_low,
                       clip_high=clip_high, dual_clip=dual_clip, aggregation=aggregation,
                       normalizer=normalizer, norm_length=norm_length)
    if _validate.concrete(logp, logp_old, advantages, response_mask):
        _validate.finite("logp", logp, response_mask)
        _validate.finite("logp_old", logp_old, response_mask)
        _validate.advantages(advantages, response_mask, "logp", logp)
    return out


def pgpo_loss(
    logp: jax.Array,
    logp_old: jax.Array,
    token_advantages: jax.Array,
    response_mask: jax.Array,
    config: pgpo_core.PGPOConfig | None = None,
    *,
    normalizer: float | None = None,
    norm_length: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PGPO's policy loss (Eq. 9): the clipped surrogate with the reshaped advantages ``A~``.

    ``logp_old`` and ``token_advantages`` are constants of the update (wrapped in
    ``jax.lax.stop_gradient``); the gradient flows only through ``logp``, and it is
    exactly 0 on tokens whose advantage ``A~ = A * w~`` is 0. An ordinary scalar
    function of the parameters::

        (loss, metrics), grads = jax.value_and_grad(
            lambda p: pgpo_loss(logp_fn(p), logp_old, adv, mask, config), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)   # any optax optimiser

    Args:
      logp: ``(B, T)`` log-probs of the response tokens under the policy being trained.
      logp_old: ``(B, T)`` log-probs under the rollout policy.
      token_advantages: ``(B, T)`` from :func:`pgpo_jax.reshape_advantages` (or ``(B,)``).
      response_mask: ``(B, T)`` boolean.
      config: a :class:`pgpo_core.PGPOConfig` (frozen, hashable: a static argument);
        its ``clip_low``, ``clip_high``, ``dual_clip`` and ``aggregation`` are used.
        ``None`` means the paper's defaults.
      normalizer, norm_length: see :func:`pgpo_core.aggregate` (static).

    Returns:
      ``(loss, metrics)`` as :func:`policy_loss`.
    """
    if config is None:
        config = pgpo_core.PGPOConfig()
    if not isinstance(config, pgpo_core.PGPOConfig):
        raise TypeError(f"config: expected a pgpo_core.PGPOConfig, got {type(config).__name__}")
    return policy_loss(logp, jax.lax.stop_gradient(logp_old),
                       jax.lax.stop_gradient(token_advantages), response_mask,
                       **config.loss_kwargs(), normalizer=normalizer, norm_length=norm_length)
