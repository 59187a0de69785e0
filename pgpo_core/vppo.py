"""VPPO: trajectory advantage shaping and token gradient filtering by visual dependency.

Huang et al., "Spotlight on Token Perception for Multimodal Reinforcement Learning",
arXiv 2510.09285 (ICLR 2026), the PGPO paper's strongest baseline. Written from the
paper's description and the conventions of its public code (``huaixuheqing/VPPO-RL``,
an EasyR1 fork: ``verl/workers/actor/dp_actor.py``, ``verl/trainer/core_algos.py``,
``examples/configs/train_vppo_7b.sh``); no code of it is reused.

For a batch of responses ``o_i`` with token visual dependency ``S_{i,t} >= 0`` (the
tokens where ``response_mask`` is True) and advantages ``A_i``::

    s_i   = (1 / |o_i|) sum_t S_{i,t}                          trajectory dependency
    n_i   = clip((s_i - min_j s_j) / (max_j s_j - min_j s_j), 0, 1)
    f_i   = m + n_i * (1 - m) / (mean_j n_j + eps)             TAS factor, m = scale_min
    k_i   = ceil(p * |o_i|)                                     p = top_p
    K_i   = the k_i tokens of o_i with the largest S            TGF set
    A^_{i,t} = f_i * A_i * [t in K_i]                           VPPO token advantage

``min``, ``max`` and ``mean`` run over the non-empty responses of the batch. ``f_i`` is
the repository's map onto ``[m, M]`` with ``M = m + (1 - m) / mean(n)``, so that the
factors average 1 over the batch (up to ``eps``); ``f_i = 1`` for every response when
``max - min <= range_eps`` (fewer than two non-empty responses included).

Defaults (:data:`DEFAULT_TOP_P`, :data:`DEFAULT_SCALE_MIN`) are the published training
recipe (``train_vppo_7b.sh`` and ``train_vppo_8b.sh``: ``top_p_perception_tokens=0.4``,
``advantage_scaling_min=0.9``); the repository's config classes default to 0.2 / 0.8,
but those are the values of switched-off code paths, not the recipe behind its results.
``range_eps = 1e-6`` and ``eps = 1e-8`` are the repository's constants.

The loss (:func:`pgpo_core.policy_loss`): the repository multiplies the per-token clipped
loss by the 0/1 TGF mask and still divides by *all* response tokens (its token-mean uses
the response mask), which is the same as giving filtered tokens advantage 0 and taking
the token-mean over every response token: pass ``A^`` with the original
``response_mask`` and ``aggregation="token-mean"``. Do not shrink the mask to ``K``; that
divides by fewer tokens and scales the loss up by about ``1 / p``.

Choices made here, where the repository leaves the convention to an implementation
detail:

- Ties at the top-k boundary: the repository sorts with ``torch.sort`` (not stable), so
  which of several equal scores is kept is unspecified. Here the earlier token wins
  (stable order), so exactly ``k_i`` tokens are kept and the result is deterministic on
  every backend.
- ``k_i`` is computed as ``ceil(p * |o_i| - 1e-6)``: ``0.3 * 10`` is ``3.0000000000000004``
  in float64 and a plain ceil would keep 4 tokens instead of 3.
- One batch is one normalisation group. The repository takes ``min``/``max`` over the
  update mini-batch on each device and ``mean(n)`` over each micro-batch; pass
  ``score_range`` (the mini-batch's ``(min, max)``) to reproduce that when the loss is
  accumulated over micro-batches.
- The dependency itself is an input. VPPO's is the k3 estimate between the policy given
  the real image and given one with each 14x14 patch blacked out with probability 0.5,
  clamped to ``[0, 10]``: :func:`pgpo_core.sampled_token_dependency` with
  ``estimator="k3", clip=10.0`` computes the same values (its log-ratio clamp at +-20
  changes nothing once the estimate is clamped at 10).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from array_api_compat import device as _device

from pgpo_core import validation
from pgpo_core.hyperparameters import VPPOHyperparameters, takes
from pgpo_core.weights import _apply_weights

#: ``top_p_perception_tokens`` of the published VPPO recipe (7B and 8B scripts); declared
#: in :class:`pgpo_core.hyperparameters.VPPOHyperparameters`, as are the three below.
DEFAULT_TOP_P = VPPOHyperparameters.top_p
#: ``advantage_scaling_min`` of the published VPPO recipe.
DEFAULT_SCALE_MIN = VPPOHyperparameters.scale_min
#: TAS is off (every factor 1) when ``max s - min s`` is not above this.
DEFAULT_RANGE_EPS = VPPOHyperparameters.range_eps
#: Added to ``mean(n)`` before dividing.
DEFAULT_MEAN_EPS = VPPOHyperparameters.eps
#: Subtracted from ``p * |o|`` before the ceil, against float rounding.
_K_GUARD = 1e-6


class VPPOAdvantages(NamedTuple):
    """Result of :func:`vppo_advantages`."""

    advantages: Any
    """``(B, T)`` ``A^_{i,t} = f_i A_i [t in K_i]``, 0 on padding and on filtered tokens."""
    scale: Any
    """``(B,)`` the TAS factors ``f_i`` (1 where shaping is off or inactive)."""
    token_mask: Any
    """``(B, T)`` boolean, the TGF set ``K`` (the response mask where filtering is off)."""


def _check(xp: Any, dependency: Any, response_mask: Any) -> None:
    validation.check_dependency(xp, dependency, response_mask)


def _trajectory_scale(xp: Any, dependency: Any, response_mask: Any, *, scale_min: float,
                      range_eps: float, eps: float, score_range: Any) -> Any:
    dtype = validation.compute_dtype(xp, dependency.dtype)
    dev = _device(dependency)
    zero = xp.zeros((), dtype=dtype, device=dev)
    one = xp.ones((), dtype=dtype, device=dev)
    dep = xp.where(response_mask, xp.astype(dependency, dtype), zero)
    count = xp.sum(xp.astype(response_mask, dtype), axis=-1)
    valid = count > 0
    score = xp.sum(dep, axis=-1) / xp.maximum(count, one)
    if score_range is None:
        any_valid = xp.any(valid)
        big = xp.asarray(xp.finfo(dtype).max, dtype=dtype, device=dev)
        low = xp.where(any_valid, xp.min(xp.where(valid, score, big)), zero)
        high = xp.where(any_valid, xp.max(xp.where(valid, score, -big)), zero)
    else:
        low = xp.asarray(score_range[0], dtype=dtype, device=dev)
        high = xp.asarray(score_range[1], dtype=dtype, device=dev)
    spread = high - low
    active = spread > range_eps
    normalized = xp.clip((score - low) / xp.where(active, spread, one), 0.0, 1.0)
    normalized = xp.where(valid, normalized, zero)
    n_valid = xp.sum(xp.astype(valid, dtype))
    mean = xp.sum(normalized) / xp.maximum(n_valid, one)
    factor = scale_min + normalized * ((1.0 - scale_min) / (mean + eps))
    return xp.where(valid & active, factor, one)


def _token_mask(xp: Any, dependency: Any, response_mask: Any, *, top_p: float) -> Any:
    dtype = validation.compute_dtype(xp, dependency.dtype)
    dev = _device(dependency)
    # Ascending sort of -S puts the largest S first; padding (key 1 > any -S) sorts last.
    # Padding may hold anything (NaN included): where() replaces it before any arithmetic.
    key = xp.where(response_mask, -xp.astype(dependency, dtype),
                   xp.ones((), dtype=dtype, device=dev))
    order = xp.argsort(key, axis=-1, stable=True)
    rank = xp.astype(xp.argsort(order, axis=-1, stable=True), dtype)
    count = xp.sum(xp.astype(response_mask, dtype), axis=-1, keepdims=True)
    keep = xp.ceil(top_p * count - _K_GUARD)
    return (rank < keep) & response_mask


def _check_score_range(score_range: Any) -> None:
    if score_range is None:
        return
    if not isinstance(score_range, (tuple, list)) or len(score_range) != 2:
        raise ValueError(f"score_range: expected a pair (min, max) or None, got {score_range!r}")
    low, high = score_range
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"score_range: must be finite, got {score_range!r}")
        if low > high:
            raise ValueError(f"score_range: min {low} is above max {high}")


@takes(VPPOHyperparameters, only=("scale_min", "range_eps", "eps"))
def vppo_trajectory_scale(dependency: Any, response_mask: Any, *, hp: VPPOHyperparameters,
                          score_range: Any = None) -> Any:
    """VPPO's Trajectory Advantage Shaping (TAS) factors, one per response.

    ::

        s_i = mean_t S_{i,t}                                   over o_i's tokens
        n_i = clip((s_i - min_j s_j) / (max_j s_j - min_j s_j), 0, 1)
        f_i = m + n_i (1 - m) / (mean_j n_j + eps)             m = scale_min

    ``j`` runs over the non-empty responses of the batch. ``f`` lies in ``[m, M]`` with
    ``M = m + (1 - m) / mean(n)`` and averages 1 over the batch (up to ``eps``): the most
    visually dependent trajectories get the largest share of the advantage, the least
    get ``m`` of theirs. ``M`` is not capped: one response at the top and the rest at the
    bottom gives it ``m + (1 - m) B`` (2.3 for ``B = 14``, ``m = 0.9``).

    Args:
      dependency: ``(B, T)`` token visual dependency ``S >= 0``.
      response_mask: ``(B, T)`` boolean, True on real response tokens.
      scale_min: ``m`` in [0, 1], the factor of the least dependent trajectory (published
        recipe 0.9; 1 turns shaping off).
      range_eps: shaping is off (every ``f = 1``) when ``max s - min s <= range_eps``,
        e.g. with one non-empty response or a constant dependency (>= 0, default 1e-6).
      eps: added to ``mean(n)`` before dividing (> 0, default 1e-8).
      score_range: optional ``(min, max)`` to normalise with instead of the batch's own
        (numbers or 0-d arrays): the mini-batch range when this batch is one micro-batch
        of it, as in the repository. Scores outside it are clipped into [0, 1].

    Returns:
      ``(B,)`` factors ``f_i`` (float32 or better); 1 for an empty response.
    """
    xp = validation.namespace(dependency=dependency, response_mask=response_mask)
    _check_score_range(score_range)
    _check(xp, dependency, response_mask)
    return _trajectory_scale(xp, dependency, response_mask, scale_min=hp.scale_min,
                             range_eps=hp.range_eps, eps=hp.eps, score_range=score_range)


@takes(VPPOHyperparameters, only=("top_p",))
def vppo_token_mask(dependency: Any, response_mask: Any, *, hp: VPPOHyperparameters) -> Any:
    """VPPO's Token Gradient Filtering (TGF) set: the top ``p`` fraction of each response.

    ::

        k_i = ceil(p |o_i|)
        K_i = the k_i tokens of o_i with the largest S (ties: the earlier token first)

    Args:
      dependency: ``(B, T)`` token visual dependency ``S >= 0``.
      response_mask: ``(B, T)`` boolean, True on real response tokens; padding may sit
        anywhere and is never selected.
      top_p: ``p`` in (0, 1] (published recipe 0.4). A response of one token keeps it.

    Returns:
      ``(B, T)`` boolean, True on the kept tokens; exactly ``k_i`` per response.
    """
    xp = validation.namespace(dependency=dependency, response_mask=response_mask)
    _check(xp, dependency, response_mask)
    return _token_mask(xp, dependency, response_mask, top_p=hp.top_p)


@takes(VPPOHyperparameters)
def vppo_advantages(advantages: Any, dependency: Any, response_mask: Any, *,
                    hp: VPPOHyperparameters, score_range: Any = None) -> VPPOAdvantages:
    """VPPO token advantages ``A^_{i,t} = f_i * A_i * [t in K_i]`` (TAS and TGF together).

    ``f`` is :func:`vppo_trajectory_scale`, ``K`` is :func:`vppo_token_mask`. Use the
    result with :func:`policy_loss` and the *original* ``response_mask`` (token-mean over
    all response tokens): that is the repository's loss, which zeroes the filtered
    tokens' loss but keeps them in the divisor.

    Args:
      advantages: ``(B,)`` per-response or ``(B, T)`` per-token advantages (e.g.
        :func:`group_advantages`).
      dependency: ``(B, T)`` token visual dependency ``S >= 0``.
      response_mask: ``(B, T)`` boolean, True on real response tokens.
      top_p: as in :func:`vppo_token_mask`.
      scale_min, range_eps, eps, score_range: as in :func:`vppo_trajectory_scale`.
      trajectory_shaping: apply TAS (``False``: ``f = 1``, the paper's TGF-only ablation).
      token_filtering: apply TGF (``False``: every token kept, the TAS-only ablation).
        Both ``False`` gives ``A`` itself on every token: the base algorithm.

    Returns:
      :class:`VPPOAdvantages` ``(advantages, scale, token_mask)``.
    """
    xp = validation.namespace(advantages=advantages, dependency=dependency,
                              response_mask=response_mask)
    _check_score_range(score_range)
    _check(xp, dependency, response_mask)
    per_token = validation.check_advantages(xp, advantages, response_mask, "dependency",
                                            dependency)
    dtype = validation.compute_dtype(xp, dependency.dtype)
    dev = _device(dependency)
    if hp.trajectory_shaping:
        scale = _trajectory_scale(xp, dependency, response_mask, scale_min=hp.scale_min,
                                  range_eps=hp.range_eps, eps=hp.eps, score_range=score_range)
    else:
        scale = xp.ones((dependency.shape[0],), dtype=dtype, device=dev)
    if hp.token_filtering:
        token_mask = _token_mask(xp, dependency, response_mask, top_p=hp.top_p)
    else:
        token_mask = response_mask
    weights = xp.reshape(scale, (scale.shape[0], 1)) * xp.astype(token_mask, dtype)
    shaped = _apply_weights(xp, per_token, weights, response_mask)
    return VPPOAdvantages(advantages=shaped, scale=scale, token_mask=token_mask)


__all__ = ["DEFAULT_SCALE_MIN", "DEFAULT_TOP_P", "VPPOAdvantages", "vppo_advantages",
           "vppo_token_mask", "vppo_trajectory_scale"]
