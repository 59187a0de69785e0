"""From token visual dependency to mass-conserving token weights (PGPO Eqs. 4-8).

For each response ``o_i`` (the tokens where ``response_mask`` is True)::

    S~_t = log(1 + S_t)                                              (4)
    I_t  = (S~_t - min_j S~_j) / (max_j S~_j - min_j S~_j + eps)     (5)
    w_t  = I_t / (tau + eps)                          if I_t <  tau  (6)
           1 + beta * (I_t - tau) / (1 - tau + eps)   if I_t >= tau
    w~_t = w_t * |o_i| / sum_j w_j                                   (7)
    A~_t = A_i * w~_t                                                (8)

Ye et al., "Not All Tokens See Equally: Perception-Grounded Policy Optimization
for Large Vision-Language Models", arXiv 2604.01840 (2026).

Choices the paper leaves open, made here: a response whose ``S`` is constant
(including a response of one token) or whose ``sum_j w_j`` is 0 gets ``w~ = 1``
on every token (the base algorithm); padding gets weight 0 and never enters a
min, max, sum or quantile.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from pgpo_core import validation
from pgpo_core.hyperparameters import WeightingHyperparameters, takes


def _masked_quantile(xp: Any, values: Any, mask: Any, count: Any, q: float) -> Any:
    """Per-row ``q``-quantile (linear interpolation, numpy's default) over masked entries.

    ``values`` lie in [0, 1]; padding is filled with 2 so that it sorts last.
    Returns ``(B, 1)``. Written with sort + comparisons only (no gather), so it
    traces under ``jax.jit``.
    """
    dtype = values.dtype
    dev = _device(values)
    length = values.shape[-1]
    ordered = xp.sort(xp.where(mask, values, xp.asarray(2.0, dtype=dtype, device=dev)), axis=-1)
    position = q * xp.maximum(count - 1, xp.zeros((), dtype=dtype, device=dev))
    lower = xp.floor(position)
    upper = xp.minimum(lower + 1, xp.maximum(count - 1, xp.zeros((), dtype=dtype, device=dev)))
    index = xp.reshape(xp.arange(length, dtype=dtype, device=dev), (1, length))
    zero = xp.zeros((), dtype=dtype, device=dev)
    at_lower = xp.sum(xp.where(index == lower, ordered, zero), axis=-1, keepdims=True)
    at_upper = xp.sum(xp.where(index == upper, ordered, zero), axis=-1, keepdims=True)
    return at_lower + (position - lower) * (at_upper - at_lower)


def _importance(xp: Any, dependency: Any, response_mask: Any, *, eps: float):
    """Eqs. 4-5 per response. Returns ``(I, constant, count, dtype)``.

    ``I`` is ``(B, T)`` in [0, 1), 0 on padding; ``constant`` is ``(B, 1)``, True
    where the response's log-dependency has no spread (one token, all equal, or
    empty); ``count`` is ``(B, 1)``, the response lengths as floats.
    """
    dtype = validation.compute_dtype(xp, dependency.dtype)
    dev = _device(dependency)
    zero = xp.zeros((), dtype=dtype, device=dev)
    log_dep = xp.log1p(xp.where(response_mask, xp.astype(dependency, dtype), zero))
    count = xp.sum(xp.astype(response_mask, dtype), axis=-1, keepdims=True)
    has_tokens = count > 0
    big = xp.asarray(xp.finfo(dtype).max, dtype=dtype, device=dev)
    low = xp.min(xp.where(response_mask, log_dep, big), axis=-1, keepdims=True)
    high = xp.max(xp.where(response_mask, log_dep, -big), axis=-1, keepdims=True)
    low = xp.where(has_tokens, low, zero)
    high = xp.where(has_tokens, high, zero)
    spread = high - low
    importance = xp.where(response_mask, (log_dep - low) / (spread + eps), zero)
    constant = ~(spread > 0)
    return importance, constant, count, dtype


def _threshold(xp: Any, importance: Any, response_mask: Any, count: Any, *, tau: float,
               threshold: str) -> Any:
    if threshold == "quantile":
        return _masked_quantile(xp, importance, response_mask, count, tau)
    return xp.asarray(tau, dtype=importance.dtype, device=_device(importance))


@takes(WeightingHyperparameters)
def token_weights(dependency: Any, response_mask: Any, *, hp: WeightingHyperparameters) -> Any:
    """PGPO token weights ``w~`` from token visual dependency (Eqs. 4-7), per response.

    ::

        S~_t = log(1 + S_t)
        I_t  = (S~_t - min_j S~_j) / (max_j S~_j - min_j S~_j + eps)
        w_t  = I_t / (tau + eps)                          if I_t <  tau
               1 + beta * (I_t - tau) / (1 - tau + eps)   if I_t >= tau
        w~_t = w_t * |o_i| / sum_j w_j

    Tokens below the threshold are suppressed (``w < 1``), tokens above it are
    boosted (``w >= 1``), and Eq. 7 rescales each response so its weights sum to
    its length (mean weight 1): the advantage mass is moved, not created.

    Args:
      dependency: ``(B, T)`` token visual dependency ``S >= 0`` (from
        :func:`token_visual_dependency` or :func:`sampled_token_dependency`).
      response_mask: ``(B, T)`` boolean, True on real response tokens; padding may
        sit anywhere.
      tau: the threshold in [0, 1]. ``tau=1`` suppresses only, ``tau=0`` boosts
        only, ``tau=0, beta=0`` gives ``w~ = 1`` (the base algorithm, exactly).
        With ``threshold="quantile"`` it is the quantile level instead.
      beta: boost strength (>= 0).
      eps: the small constant of Eqs. 5-7 (> 0).
      threshold: ``"fixed"`` (the paper) or ``"quantile"``: threshold each response
        at the ``tau``-quantile of its own ``I`` (linear interpolation).
      low_weight_floor: lift every weight below it to it, in [0, 1] (0 = off).
      conserve_mass: apply Eq. 7. ``False`` is the no-normalisation ablation.

    Returns:
      ``(B, T)`` weights (float32 or better), 0 on padding. A response whose ``S``
      is constant (one token included) or whose raw weights sum to 0 gets 1 on
      every token.
    """
    xp = validation.namespace(dependency=dependency, response_mask=response_mask)
    validation.check_dependency(xp, dependency, response_mask)
    return _weights(xp, dependency, response_mask, hp)


def _weights(xp: Any, dependency: Any, response_mask: Any, hp: WeightingHyperparameters) -> Any:
    beta, eps, low_weight_floor, conserve_mass = (hp.beta, hp.eps, hp.low_weight_floor,
                                                  hp.conserve_mass)
    importance, constant, count, dtype = _importance(xp, dependency, response_mask, eps=eps)
    dev = _device(importance)
    zero = xp.zeros((), dtype=dtype, device=dev)
    one = xp.ones((), dtype=dtype, device=dev)
    thr = _threshold(xp, importance, response_mask, count, tau=hp.tau, threshold=hp.threshold)
    suppressed = importance / (thr + eps)
    boosted = 1 + beta * (importance - thr) / (1 - thr + eps)
    raw = xp.where(importance < thr, suppressed, boosted)
    if low_weight_floor > 0:
        raw = xp.maximum(raw, xp.asarray(low_weight_floor, dtype=dtype, device=dev))
    raw = xp.where(response_mask, raw, zero)
    total = xp.sum(raw, axis=-1, keepdims=True)
    fallback = constant | ~(total > 0)
    if conserve_mass:
        # raw / total <= 1 first: count / total overflows when total is subnormal.
        raw = raw / xp.where(fallback, one, total) * count
    weights = xp.where(fallback, one, raw)
    return xp.where(response_mask, weights, zero)


@takes(WeightingHyperparameters)
def reshape_advantages(advantages: Any, dependency: Any, response_mask: Any, *,
                       hp: WeightingHyperparameters) -> Any:
    """PGPO token-level advantages ``A~_{i,t} = A_i * w~_t`` (Eq. 8).

    The same non-negative weights multiply negative advantages, so a wrong
    answer's most visually dependent tokens are penalised most. With Eq. 7 on,
    ``sum_t A~_{i,t} = |o_i| * A_i``: no extra shift of the group's advantage.

    Args:
      advantages: ``(B,)`` per-response advantages, or ``(B, T)`` per-token ones
        (as some frameworks store them).
      dependency, response_mask, tau, beta, eps, threshold, low_weight_floor, conserve_mass: as
        in :func:`token_weights`.

    Returns:
      ``(B, T)`` token advantages, 0 on padding, in the promoted float dtype.
    """
    xp = validation.namespace(advantages=advantages, dependency=dependency,
                           response_mask=response_mask)
    validation.check_dependency(xp, dependency, response_mask)
    per_token = validation.check_advantages(xp, advantages, response_mask, "dependency",
                                            dependency)
    weights = _weights(xp, dependency, response_mask, hp)
    return _apply_weights(xp, per_token, weights, response_mask)


def weighted_advantages(advantages: Any, weights: Any, response_mask: Any) -> Any:
    """Eq. 8 for weights already at hand: ``A~_{i,t} = A_i * w~_t``, 0 on padding.

    :func:`reshape_advantages` is :func:`token_weights` followed by this product. Call
    the two yourself to keep the weights, e.g. to pass them on to
    :func:`weight_diagnostics` (``weights=``) without computing them again.

    Args:
      advantages: ``(B,)`` per-response advantages, or ``(B, T)`` per-token ones.
      weights: ``(B, T)`` token weights ``w~ >= 0`` (:func:`token_weights`).
      response_mask: ``(B, T)`` boolean, True on real response tokens.

    Returns:
      ``(B, T)`` token advantages, 0 on padding, in the promoted float dtype.
    """
    xp = validation.namespace(advantages=advantages, weights=weights,
                           response_mask=response_mask)
    validation.check_dependency(xp, weights, response_mask, name="weights")
    per_token = validation.check_advantages(xp, advantages, response_mask, "weights", weights)
    return _apply_weights(xp, per_token, weights, response_mask)


def _apply_weights(xp: Any, per_token: Any, weights: Any, response_mask: Any) -> Any:
    """Eq. 8's product, 0 on padding."""
    dtype = xp.result_type(per_token.dtype, weights.dtype)
    zero = xp.zeros((), dtype=dtype, device=_device(weights))
    # Padding may hold anything (NaN included); zero it before the product.
    per_token = xp.where(response_mask, xp.astype(per_token, dtype), zero)
    shaped = per_token * xp.astype(weights, dtype)
    return xp.where(response_mask, shaped, zero)
