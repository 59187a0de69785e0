"""Per-batch PGPO and VPPO statistics worth logging next to the loss."""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from pgpo_core import validation
from pgpo_core.hyperparameters import WeightingHyperparameters, takes
from pgpo_core.weights import _importance, _threshold, _weights


@takes(WeightingHyperparameters)
def weight_diagnostics(dependency: Any, response_mask: Any, *, hp: WeightingHyperparameters,
                       weights: Any = None) -> dict[str, Any]:
    """Statistics of the dependency and of the weights :func:`token_weights` gives for it.

    ``weights``: those weights when the caller already has them (``token_weights`` with
    the same hyper-parameters), so they are not computed a second time; None computes
    them here.

    Returns a dict of 0-d arrays (no host sync, safe under ``jax.jit``), all over
    response tokens of the batch:

    - ``dependency_mean``, ``dependency_max``: of ``S``.
    - ``frac_above_tau``: fraction of tokens with ``I_t >= tau`` (the boosted branch
      of Eq. 6; against the per-response threshold when ``threshold="quantile"``).
    - ``weight_mean``, ``weight_max``, ``weight_min``: of ``w~`` (mean 1 with Eq. 7).
    - ``boosted_frac``: fraction of tokens with ``w~ > 1``.
    - ``boosted_tokens``: mean number of tokens per response with ``w~ > 1``.
    - ``effective_token_frac``: mean over responses of ``(sum w~)^2 / (|o| sum w~^2)``,
      the effective number of tokens carrying the advantage as a fraction of the
      length (1 = uniform weights as in GRPO/DAPO, small = mass on few tokens).
    """
    arrays = dict(dependency=dependency, response_mask=response_mask)
    xp = validation.namespace(**arrays, **({} if weights is None else {"weights": weights}))
    validation.check_dependency(xp, dependency, response_mask)
    if weights is None:
        weights = _weights(xp, dependency, response_mask, hp)
    else:
        validation.check_dependency(xp, weights, response_mask, name="weights")
        weights = xp.where(response_mask, weights, xp.zeros_like(weights))  # padding: 0
    tau = hp.tau
    importance, _, count, dtype = _importance(xp, dependency, response_mask, eps=hp.eps)
    thr = _threshold(xp, importance, response_mask, count, tau=tau, threshold=hp.threshold)
    dev = _device(weights)
    zero = xp.zeros((), dtype=dtype, device=dev)
    one = xp.ones((), dtype=dtype, device=dev)
    big = xp.asarray(xp.finfo(dtype).max, dtype=dtype, device=dev)
    dep = xp.astype(dependency, dtype)
    n_tokens = xp.maximum(xp.sum(xp.astype(response_mask, dtype)), one)
    has_tokens = count[:, 0] > 0
    n_rows = xp.maximum(xp.sum(xp.astype(has_tokens, dtype)), one)

    def token_mean(values: Any) -> Any:
        return xp.sum(xp.where(response_mask, values, zero)) / n_tokens

    boosted = xp.astype(response_mask & (weights > 1), dtype)
    w_sum = xp.sum(weights, axis=-1)
    w_sq = xp.sum(weights * weights, axis=-1)
    ess = xp.where(has_tokens, w_sum * w_sum / xp.maximum(count[:, 0] * w_sq, one * 1e-30),
                   zero)
    any_token = xp.any(response_mask)
    return {
        "dependency_mean": token_mean(dep),
        "dependency_max": xp.where(any_token, xp.max(xp.where(response_mask, dep, -big)), zero),
        "frac_above_tau": token_mean(xp.astype(importance >= thr, dtype)),
        "weight_mean": token_mean(weights),
        "weight_max": xp.where(any_token, xp.max(xp.where(response_mask, weights, -big)), zero),
        "weight_min": xp.where(any_token, xp.min(xp.where(response_mask, weights, big)), zero),
        "boosted_frac": token_mean(boosted),
        "boosted_tokens": xp.sum(boosted) / n_rows,
        "effective_token_frac": xp.sum(ess) / n_rows,
    }


def vppo_diagnostics(dependency: Any, response_mask: Any, *, scale: Any,
                     token_mask: Any) -> dict[str, Any]:
    """Statistics of a :func:`vppo_advantages` result (its ``scale`` and ``token_mask``)
    for the dependency it was computed from.

    Returns a dict of 0-d arrays (no host sync), over the response tokens of the batch
    and its non-empty responses ``i``::

        dependency_mean, dependency_max    of S
        scale_mean, scale_min, scale_max   of the TAS factors f_i (mean 1 up to eps)
        kept_frac                          |K| / |o|, summed over the batch (about top_p)
        kept_tokens                        mean_i |K_i|
        kept_dependency_frac               sum_{t in K} S_t / sum_t S_t (0 when S = 0)

    ``kept_dependency_frac`` says how concentrated the dependency is where the filter
    acts: ``top_p``'s share of the tokens holding most of ``S`` gives a value near 1, a
    dependency spread evenly gives about ``top_p``.
    """
    xp = validation.namespace(dependency=dependency, response_mask=response_mask,
                              scale=scale, token_mask=token_mask)
    validation.check_dependency(xp, dependency, response_mask)
    validation.check_bool("token_mask", xp, token_mask)
    validation.check_same_shape("token_mask", token_mask, "dependency", dependency)
    validation.check_floating("scale", xp, scale)
    validation.check_ndim("scale", scale, 1)
    if scale.shape[0] != dependency.shape[0]:
        raise ValueError(f"scale: {scale.shape[0]} responses, but dependency has "
                         f"{dependency.shape[0]} rows")
    outside = validation.concrete_bool(xp.any(token_mask & ~response_mask))
    if outside:
        raise ValueError("token_mask: keeps tokens outside response_mask (pass the "
                         "token_mask that vppo_advantages returned for this batch)")
    dtype = validation.compute_dtype(xp, dependency.dtype)
    dev = _device(dependency)
    zero = xp.zeros((), dtype=dtype, device=dev)
    one = xp.ones((), dtype=dtype, device=dev)
    big = xp.asarray(xp.finfo(dtype).max, dtype=dtype, device=dev)
    dep = xp.where(response_mask, xp.astype(dependency, dtype), zero)
    f = xp.astype(scale, dtype)
    valid = xp.any(response_mask, axis=-1)
    validation.check_finite("scale", xp, f, valid)
    n_tokens = xp.sum(xp.astype(response_mask, dtype))
    n_rows = xp.sum(xp.astype(valid, dtype))
    n_kept = xp.sum(xp.astype(token_mask, dtype))
    total = xp.sum(dep)
    kept = xp.sum(xp.where(token_mask, dep, zero))
    any_row = n_rows > 0
    return {
        "dependency_mean": total / xp.maximum(n_tokens, one),
        # dep is 0 on padding and S >= 0 on response tokens (checked): its max is theirs
        "dependency_max": xp.where(any_row, xp.max(dep), zero),
        "scale_mean": xp.sum(xp.where(valid, f, zero)) / xp.maximum(n_rows, one),
        "scale_min": xp.where(any_row, xp.min(xp.where(valid, f, big)), zero),
        "scale_max": xp.where(any_row, xp.max(xp.where(valid, f, -big)), zero),
        "kept_frac": n_kept / xp.maximum(n_tokens, one),
        "kept_tokens": n_kept / xp.maximum(n_rows, one),
        "kept_dependency_frac": xp.where(total > 0, kept / xp.where(total > 0, total, one),
                                         zero),
    }
