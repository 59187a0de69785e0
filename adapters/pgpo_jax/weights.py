"""Jitted PGPO token weights and reshaped advantages (Eqs. 4-8), thin over :mod:`pgpo_core`.

Hyper-parameters are static arguments of ``jax.jit`` (Python numbers and strings),
so each setting compiles once per input shape; bind them with
``functools.partial`` (or ``**config.weight_kwargs()``) before ``jax.vmap``.
"""

from __future__ import annotations

import functools

import jax

import pgpo_core
from pgpo_core.hyperparameters import WeightingHyperparameters, takes

from pgpo_jax import _validate


@functools.partial(jax.jit, static_argnames=("hp",))
def _token_weights(dependency, response_mask, hp):
    return pgpo_core.token_weights(dependency, response_mask, **hp.weight_kwargs())


@functools.partial(jax.jit, static_argnames=("hp",))
def _reshape_advantages(advantages, dependency, response_mask, hp):
    return pgpo_core.reshape_advantages(advantages, dependency, response_mask,
                                        **hp.weight_kwargs())


@takes(WeightingHyperparameters)
def token_weights(dependency: jax.Array, response_mask: jax.Array, *,
                  hp: WeightingHyperparameters) -> jax.Array:
    """PGPO token weights ``w~`` (Ye et al. 2026, Eqs. 4-7): :func:`pgpo_core.token_weights`
    under ``jax.jit`` with the hyper-parameters static.

    ``S~ = log(1 + S)``, ``I = (S~ - min S~) / (max S~ - min S~ + eps)``, suppress
    below ``tau`` / boost above it, rescale each response to mean weight 1.

    Args:
      dependency: ``(B, T)`` token visual dependency ``S >= 0``.
      response_mask: ``(B, T)`` boolean, True on response tokens.
      tau, beta, eps, threshold, low_weight_floor, conserve_mass: static; see the core.

    Returns:
      ``(B, T)`` weights (float32, or float64 for float64 input), 0 on padding.
    """
    out = _token_weights(dependency, response_mask, hp)
    if _validate.concrete(dependency, response_mask):
        _validate.dependency(dependency, response_mask)
    return out


@takes(WeightingHyperparameters)
def reshape_advantages(advantages: jax.Array, dependency: jax.Array, response_mask: jax.Array,
                       *, hp: WeightingHyperparameters) -> jax.Array:
    """PGPO token advantages ``A~_{i,t} = A_i * w~_t`` (Eq. 8):
    :func:`pgpo_core.reshape_advantages` under ``jax.jit`` with static hyper-parameters.

    Args:
      advantages: ``(B,)`` per-response or ``(B, T)`` per-token advantages.
      dependency, response_mask, tau, ...: as in :func:`token_weights`.

    Returns:
      ``(B, T)`` token advantages, 0 on padding.
    """
    out = _reshape_advantages(advantages, dependency, response_mask, hp)
    if _validate.concrete(advantages, dependency, response_mask):
        _validate.dependency(dependency, response_mask)
        _validate.advantages(advantages, response_mask, "dependency", dependency)
    return out
