"""Clipped policy-gradient surrogate with token-level advantages (PPO / DAPO style).

PGPO trains with the DAPO recipe (Yu et al., 2025) with its token-level
advantages ``A~`` in place of ``A`` (Eq. 9 of the PGPO paper)::

    r_t    = exp(logp_t - logp_old_t)
    loss_t = max(-A~_t * r_t, -A~_t * clip(r_t, 1 - clip_low, 1 + clip_high))

aggregated over response tokens with one of the modes RL frameworks use.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from pgpo_core import validation

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                "seq-mean-token-sum-norm")

#: Default bound on ``|logp - logp_old|`` before ``exp`` (verl clamps at 20 too): the
#: ratio stays within ``[e^-20, e^20]``, finite in float32, and the gradient beyond
#: the bound is 0 instead of NaN.
LOG_RATIO_CLIP = 20.0


def masked_mean(values: Any, mask: Any, *, axis: int | None = None) -> Any:
    """Mean of ``values`` over the entries where the boolean ``mask`` is True (0 if none)."""
    xp = validation.namespace(values=values, mask=mask)
    validation.check_bool("mask", xp, mask)
    validation.check_same_shape("mask", mask, "values", values)
    return _masked_mean(xp, values, mask, axis=axis)


def _masked_mean(xp: Any, values: Any, mask: Any, *, axis: int | None = None) -> Any:
    dev = _device(values)
    zero = xp.zeros((), dtype=values.dtype, device=dev)
    total = xp.sum(xp.where(mask, values, zero), axis=axis)
    count = xp.sum(xp.astype(mask, values.dtype), axis=axis)
    return total / xp.maximum(count, xp.ones((), dtype=values.dtype, device=dev))


def aggregate(
    per_token: Any,
    response_mask: Any,
    *,
    aggregation: str = "token-mean",
    normalizer: float | None = None,
    norm_length: int | None = None,
) -> Any:
    """Reduce a ``(B, T)`` per-token loss to a scalar.

    Modes (``l`` the per-token loss, ``m`` the mask, ``B`` the rows, ``T`` the columns)::

        token-mean               sum_{i,t} l / sum_{i,t} m                (DAPO, PGPO)
        seq-mean-token-mean      (1/B) sum_i (sum_t l_i / |o_i|)          (GRPO)
        seq-mean-token-sum       (1/B) sum_i  sum_t l_i
        seq-mean-token-sum-norm  (1/B) sum_i  sum_t l_i / norm_length      (Dr. GRPO)

    The names are verl's, and the first three are verl's modes. TRL's loss types map
    as: ``dapo``/``bnpo`` = ``token-mean``, ``grpo`` = ``seq-mean-token-mean``,
    ``dr_grpo`` = ``seq-mean-token-sum-norm`` with ``norm_length`` = TRL's
    ``max_completion_length``. verl's own ``seq-mean-token-sum-norm`` has no ``1/B``
    (it divides the batch sum by ``T`` only): pass ``normalizer=1`` for it.

    An empty row counts as 0 in the ``seq-mean`` modes; an all-padding batch gives 0.

    Args:
      per_token: ``(B, T)`` per-token losses.
      response_mask: ``(B, T)`` boolean.
      aggregation: one of the modes above.
      normalizer: replaces the divisor of the mode, as given: the token count
        ``sum m`` for ``token-mean``, the sequence count ``B`` for the ``seq-mean``
        modes. Pass the global count when accumulating gradients over micro-batches
        or ranks.
      norm_length: the length divisor of ``seq-mean-token-sum-norm`` (default ``T``).
    """
    xp = validation.namespace(per_token=per_token, response_mask=response_mask)
    validation.check_ndim("per_token", per_token, 2)
    validation.check_bool("response_mask", xp, response_mask)
    validation.check_same_shape("response_mask", response_mask, "per_token", per_token)
    validation.check_choice("aggregation", aggregation, AGGREGATIONS)
    if normalizer is not None:
        validation.check_positive("normalizer", normalizer)
    if norm_length is not None:
        validation.check_positive("norm_length", norm_length)
    return _aggregate(xp, per_token, response_mask, aggregation=aggregation,
                      normalizer=normalizer, norm_length=norm_length)


def _aggregate(xp: Any, per_token: Any, mask: Any, *, aggregation: str,
               normalizer: float | None, norm_length: int | None) -> Any:
    dtype = per_token.dtype
    dev = _device(per_token)
    zero = xp.zeros((), dtype=dtype, device=dev)
    one = xp.ones((), dtype=dtype, device=dev)
    masked = xp.where(mask, per_token, zero)
    if aggregation == "token-mean":
        if normalizer is not None:
            return xp.sum(masked) / normalizer
        return xp.sum(masked) / xp.maximum(xp.sum(xp.astype(mask, dtype)), one)
    seq_sum = xp.sum(masked, axis=-1)
    if aggregation == "seq-mean-token-mean":
        seq = seq_sum / xp.maximum(xp.sum(xp.astype(mask, dtype), axis=-1), one)
    elif aggregation == "seq-mean-token-sum":
        seq = seq_sum
    else:
        seq = seq_sum / (per_token.shape[-1] if norm_length is None else norm_length)
    if normalizer is not None:
        return xp.sum(seq) / normalizer
    return xp.sum(seq) / max(per_token.shape[0], 1)


def policy_loss(
    logp: Any,
    logp_old: Any,
    advantages: Any,
    response_mask: Any,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = None,
    aggregation: str = "token-mean",
    normalizer: float | None = None,
    norm_length: int | None = None,
    log_ratio_clip: float | None = LOG_RATIO_CLIP,
) -> tuple[Any, dict[str, Any]]:
    """Clipped surrogate loss with token-level advantages (DAPO's clip-higher by default).

    ::

        r_t    = exp(clip(logp_t - logp_old_t, -log_ratio_clip, log_ratio_clip))
        loss_t = max(-A_t r_t, -A_t clip(r_t, 1 - clip_low, 1 + clip_high))
        loss_t = min(loss_t, -A_t * dual_clip)          where A_t < 0, if dual_clip is set

    Padding (``response_mask`` False) may hold anything, NaN and inf included: it is
    replaced before any arithmetic, so the loss, its gradient and the metrics are
    finite and do not depend on it.

    Args:
      logp: ``(B, T)`` log-probs of the response tokens under the policy being
        trained (carries the gradient).
      logp_old: ``(B, T)`` log-probs under the rollout policy (no gradient needed).
      advantages: ``(B, T)`` token advantages (e.g. :func:`reshape_advantages`) or
        ``(B,)`` per-response ones.
      response_mask: ``(B, T)`` boolean.
      clip_low, clip_high: the clip range ``[1 - clip_low, 1 + clip_high]``; DAPO
        and the PGPO paper use 0.2 / 0.28, PPO/GRPO 0.2 / 0.2.
      dual_clip: optional bound ``c > 1`` on the loss of negative advantages
        (dual-clip PPO, Ye et al. 2020), as verl's ``clip_ratio_c``.
      aggregation, normalizer, norm_length: see :func:`aggregate`.
      log_ratio_clip: bound (> 0) on ``|logp - logp_old|`` before ``exp``, default 20
        as in verl; ``None`` turns it off. Ratios beyond ``e^20`` only arise from
        broken log-probs; without the bound they overflow (float32 past ``e^88``)
        and the gradient becomes NaN.

    Returns:
      ``(loss, metrics)``: the scalar loss and a dict of 0-d arrays over response
      tokens: ``clip_frac`` (the clipped branch is active), ``clip_frac_low``,
      ``clip_frac_high``, ``dual_clip_frac``, ``approx_kl`` (k3 estimate of
      KL(pi_old || pi)), ``ratio_mean``, ``ratio_max``, ``advantage_mean``.
      Metrics carry no gradient only if the caller detaches them.
    """
    xp = validation.namespace(logp=logp, logp_old=logp_old, advantages=advantages,
                           response_mask=response_mask)
    validation.check_ndim("logp", logp, 2)
    validation.check_floating("logp", xp, logp)
    validation.check_floating("logp_old", xp, logp_old)
    validation.check_same_shape("logp_old", logp_old, "logp", logp)
    validation.check_same_shape("response_mask", response_mask, "logp", logp)
    validation.check_bool("response_mask", xp, response_mask)
    validation.check_in_range("clip_low", clip_low, 0.0, 1.0)
    validation.check_positive("clip_high", clip_high, allow_zero=True)
    if dual_clip is not None:
        validation.check_positive("dual_clip", dual_clip)
        if dual_clip <= 1:
            raise ValueError(f"dual_clip: must be > 1, got {dual_clip}")
    validation.check_choice("aggregation", aggregation, AGGREGATIONS)
    if normalizer is not None:
        validation.check_positive("normalizer", normalizer)
    if norm_length is not None:
        validation.check_positive("norm_length", norm_length)
    if log_ratio_clip is not None:
        validation.check_positive("log_ratio_clip", log_ratio_clip)
    validation.check_finite("logp", xp, logp, response_mask)
    validation.check_finite("logp_old", xp, logp_old, response_mask)
    advantages = validation.check_advantages(xp, advantages, response_mask, "logp", logp)

    dtype = validation.compute_dtype(xp, xp.result_type(logp.dtype, logp_old.dtype,
                                                     advantages.dtype))
    dev = _device(logp)
    zero = xp.zeros((), dtype=dtype, device=dev)
    # Padding is replaced before any arithmetic, so nothing under it reaches a value or
    # a gradient (where() passes 0 gradient to the branch it drops).
    log_ratio = xp.where(response_mask,
                         xp.astype(logp, dtype) - xp.astype(logp_old, dtype), zero)
    if log_ratio_clip is not None:
        log_ratio = xp.clip(log_ratio, -log_ratio_clip, log_ratio_clip)
    adv = xp.where(response_mask, xp.astype(advantages, dtype), zero)
    ratio = xp.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * xp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = xp.maximum(unclipped, clipped)
    dual_active = xp.zeros(logp.shape, dtype=xp.bool, device=dev)
    if dual_clip is not None:
        bound = -adv * dual_clip
        dual_active = (adv < 0) & (per_token > bound)
        per_token = xp.where(dual_active, bound, per_token)
    loss = _aggregate(xp, per_token, response_mask, aggregation=aggregation,
                      normalizer=normalizer, norm_length=norm_length)

    adv_full = adv * xp.ones(logp.shape, dtype=dtype, device=dev)
    clipped_low = (ratio < 1.0 - clip_low) & (adv_full < 0)
    clipped_high = (ratio > 1.0 + clip_high) & (adv_full > 0)
    as_float = lambda b: xp.astype(b, dtype)  # noqa: E731
    metrics = {
        "clip_frac": _masked_mean(xp, as_float(clipped_low | clipped_high), response_mask),
        "clip_frac_low": _masked_mean(xp, as_float(clipped_low), response_mask),
        "clip_frac_high": _masked_mean(xp, as_float(clipped_high), response_mask),
        "dual_clip_frac": _masked_mean(xp, as_float(dual_active), response_mask),
        # k3 with x ~ pi_old and r = pi / pi_old: (r - 1) - log r
        "approx_kl": _masked_mean(xp, xp.expm1(log_ratio) - log_ratio, response_mask),
        "ratio_mean": _masked_mean(xp, ratio, response_mask),
        "ratio_max": xp.max(xp.where(response_mask, ratio, zero)),
        "advantage_mean": _masked_mean(xp, adv_full, response_mask),
    }
    return loss, metrics
