"""Group-relative advantages (GRPO, Shao et al. 2024; PGPO Eq. 2) and DAPO's group filter."""

from __future__ import annotations

from typing import Any, NamedTuple

from array_api_compat import device as _device

from pgpo_core import validation


class GroupAdvantages(NamedTuple):
    """Result of :func:`group_advantages`; every field is ``(N,)``, one entry per response."""

    advantages: Any
    """``(R_i - mean_g R) / (std_g R + eps)`` (or without the division)."""
    mean: Any
    """The mean reward of the response's group."""
    std: Any
    """The standard deviation of the rewards of the response's group."""
    all_equal: Any
    """Boolean: every reward in the response's group is equal, so every advantage in it is
    0 and the group carries no learning signal. DAPO's dynamic sampling drops these groups
    (keep ``~all_equal``)."""


def group_advantages(
    rewards: Any,
    group_ids: Any,
    *,
    normalize_std: bool = True,
    eps: float = 1e-6,
    correction: int = 1,
) -> GroupAdvantages:
    """Group-relative advantages, Eq. 2 of the PGPO paper (GRPO's outcome advantage)::

        A_i = (R_i - mean_g R) / (std_g R + eps)

    where ``g`` is the group of responses sampled for the same prompt.

    Args:
      rewards: ``(N,)`` float rewards, one per response.
      group_ids: ``(N,)`` integer ids; responses with equal ids share a prompt.
        Groups may have different sizes and need not be contiguous.
      normalize_std: divide by the group std (GRPO, DAPO, PGPO). ``False`` gives
        the mean-centred advantage of Dr. GRPO.
      eps: added to the std before dividing (> 0).
      correction: degrees-of-freedom correction of the std: 1 (unbiased, as
        ``torch.std`` in TRL and verl) or 0 (population). A group too small for
        it (one response with ``correction=1``) has std 0 and advantage 0.

    Returns:
      :class:`GroupAdvantages` ``(advantages, mean, std, all_equal)``.

    Cost: ``O(N^2)`` comparisons (a same-group matrix), which keeps the function
    free of data-dependent shapes, so it runs under ``jax.jit``.
    """
    xp = validation.namespace(rewards=rewards, group_ids=group_ids)
    validation.check_ndim("rewards", rewards, 1)
    validation.check_floating("rewards", xp, rewards)
    validation.check_ndim("group_ids", group_ids, 1)
    if not xp.isdtype(group_ids.dtype, "integral"):
        raise TypeError(f"group_ids: expected an integer dtype, got {group_ids.dtype}")
    validation.check_same_shape("group_ids", group_ids, "rewards", rewards)
    validation.check_positive("eps", eps)
    if correction not in (0, 1) or isinstance(correction, bool):
        raise ValueError(f"correction: must be 0 or 1, got {correction!r}")
    if not isinstance(normalize_std, bool):
        raise TypeError(f"normalize_std: expected a bool, got {type(normalize_std).__name__}")
    validation.check_finite("rewards", xp, rewards)

    n = rewards.shape[0]
    dtype = validation.compute_dtype(xp, rewards.dtype)
    dev = _device(rewards)
    zero = xp.zeros((), dtype=dtype, device=dev)
    r = xp.astype(rewards, dtype)
    same = xp.reshape(group_ids, (n, 1)) == xp.reshape(group_ids, (1, n))
    row = xp.reshape(r, (1, n))
    count = xp.sum(xp.astype(same, dtype), axis=1)
    mean = xp.sum(xp.where(same, row, zero), axis=1) / count
    centred = row - xp.reshape(mean, (n, 1))
    sq = xp.sum(xp.where(same, centred * centred, zero), axis=1)
    dof = count - correction
    var = xp.where(dof > 0, sq / xp.maximum(dof, xp.ones((), dtype=dtype, device=dev)), zero)
    std = xp.sqrt(var)
    big = xp.asarray(xp.finfo(dtype).max, dtype=dtype, device=dev)
    group_max = xp.max(xp.where(same, row, -big), axis=1)
    group_min = xp.min(xp.where(same, row, big), axis=1)
    all_equal = group_max == group_min
    advantages = r - mean
    if normalize_std:
        advantages = advantages / (std + eps)
    advantages = xp.where(all_equal, zero, advantages)
    return GroupAdvantages(advantages=advantages, mean=mean, std=std, all_equal=all_equal)
