"""Jitted group-relative advantages (GRPO; PGPO Eq. 2), thin over :mod:`pgpo_core`."""

from __future__ import annotations

import functools

import jax

import pgpo_core

from pgpo_jax import _validate


@functools.partial(jax.jit, static_argnames=("normalize_std", "eps", "correction"))
def _group_advantages(rewards, group_ids, **kwargs):
    return pgpo_core.group_advantages(rewards, group_ids, **kwargs)


def group_advantages(
    rewards: jax.Array,
    group_ids: jax.Array,
    *,
    normalize_std: bool = True,
    eps: float = 1e-6,
    correction: int = 1,
) -> pgpo_core.GroupAdvantages:
    """``A_i = (R_i - mean_g R) / (std_g R + eps)`` (Eq. 2): :func:`pgpo_core.group_advantages`
    under ``jax.jit`` with ``normalize_std``, ``eps`` and ``correction`` static.

    Args:
      rewards: ``(N,)`` float rewards.
      group_ids: ``(N,)`` integer prompt ids (groups of any size, any order).

    Returns:
      :class:`pgpo_core.GroupAdvantages` ``(advantages, mean, std, all_equal)``, a pytree
      of ``(N,)`` arrays.
    """
    out = _group_advantages(rewards, group_ids, normalize_std=normalize_std, eps=eps,
                            correction=correction)
    if _validate.concrete(rewards, group_ids):
        _validate.finite("rewards", rewards)
    return out
