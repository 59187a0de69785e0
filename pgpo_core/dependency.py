"""Token visual dependency: how much the image changes each next-token distribution.

PGPO (Ye et al., 2026, arXiv 2604.01840, Eq. 1) scores the t-th generated token
by the forward KL divergence between the policy's next-token distribution with
the image (``pi_I``, the "visual pass") and without it (``pi_0``, the "blind
pass")::

    S_t = KL(pi_I || pi_0) = sum_x pi_I(x) * (log pi_I(x) - log pi_0(x))

:func:`token_visual_dependency` computes it exactly over the whole vocabulary
from the two passes' logits; :func:`sampled_token_dependency` estimates it from
the log-probabilities of the generated token alone (the paper trains with the
k3 estimator, Schulman 2020).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from pgpo_core import validation
from pgpo_core.validation import check_logits

ESTIMATORS = ("k1", "k2", "k3")


def _kl_rows(xp: Any, z_visual: Any, z_blind: Any, dtype: Any, temperature: float) -> Any:
    """KL(softmax(z_visual) || softmax(z_blind)) for each row of two (N, V) arrays.

    With the max-shifted logits ``a = z_visual - max z_visual``, ``b = z_blind - max z_blind``
    and ``Z_a = sum e^a``, ``Z_b = sum e^b``, the log-softmaxes are ``a - log Z_a`` and
    ``b - log Z_b``, and since ``sum_x pi_I(x) = 1``::

        KL = sum_x pi_I(x) (a(x) - b(x)) - log Z_a + log Z_b,   pi_I = e^a / Z_a

    The same stable log-softmax math without materialising the two (N, V) log-prob
    arrays: two exponentials per entry instead of three, and fewer temporaries.
    """
    if z_visual.dtype != dtype:
        z_visual = xp.astype(z_visual, dtype)
        z_blind = xp.astype(z_blind, dtype)
    if temperature != 1.0:
        z_visual = z_visual / temperature
        z_blind = z_blind / temperature
    a = z_visual - xp.max(z_visual, axis=-1, keepdims=True)
    exp_a = xp.exp(a)
    sum_a = xp.sum(exp_a, axis=-1)
    b = z_blind - xp.max(z_blind, axis=-1, keepdims=True)
    sum_b = xp.sum(xp.exp(b), axis=-1)
    cross = xp.sum(exp_a * (a - b), axis=-1) / sum_a
    return cross - xp.log(sum_a) + xp.log(sum_b)


def token_visual_dependency(
    logits_visual: Any,
    logits_blind: Any,
    response_mask: Any,
    *,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> Any:
    """Exact token visual dependency ``S_t = KL(pi_I || pi_0)`` over the full vocabulary.

    Eq. 1 of Ye et al. (2026)::

        pi_I = softmax(logits_visual / temperature),  pi_0 = softmax(logits_blind / temperature)
        S_t  = sum_x pi_I(x) * (log pi_I(x) - log pi_0(x))

    Computed with a stable log-softmax in float32 (float64 stays float64) whatever
    the input dtype, clamped at 0 against rounding, and set to 0 on padding.

    Args:
      logits_visual: ``(B, T, V)`` next-token logits of the pass that sees the image,
        aligned so that ``[b, t]`` predicts response token ``t``.
      logits_blind: ``(B, T, V)`` logits of the blind pass, aligned the same way.
      response_mask: ``(B, T)`` boolean, True on real response tokens.
      temperature: the sampling temperature the distributions are taken at (> 0).
      chunk_size: if given, process at most this many tokens at a time, so the
        working memory is ``O(chunk_size * V)`` instead of ``O(B * T * V)``; the
        result is the same. A Python int, static under ``jax.jit``.

    Returns:
      ``(B, T)`` float array (float32 or float64) of dependencies, >= 0, 0 on padding.
      Differentiable with respect to both logits (torch autograd, jax.grad).

    Raises:
      TypeError, ValueError: naming the argument, on a namespace, dtype or shape
        mismatch, a non-boolean mask, a bad hyper-parameter, or logits that give a
        non-finite KL on a response token (NaN or inf in the logits).
    """
    xp = validation.namespace(
        logits_visual=logits_visual, logits_blind=logits_blind, response_mask=response_mask
    )
    check_logits(xp, logits_visual, logits_blind, response_mask)
    validation.check_positive("temperature", temperature)
    validation.check_chunk_size(chunk_size, allow_none=True)

    batch, length, vocab = logits_visual.shape
    dtype = validation.compute_dtype(xp, logits_visual.dtype)
    n = batch * length
    z_visual = xp.reshape(logits_visual, (n, vocab))
    z_blind = xp.reshape(logits_blind, (n, vocab))
    if chunk_size is None or chunk_size >= n:
        kl = _kl_rows(xp, z_visual, z_blind, dtype, temperature)
    else:
        parts = [
            # the array API leaves out-of-bounds slice stops unspecified: stop at n
            _kl_rows(xp, z_visual[i : min(i + chunk_size, n), ...],
                     z_blind[i : min(i + chunk_size, n), ...], dtype, temperature)
            for i in range(0, n, chunk_size)
        ]
        kl = xp.concat(parts, axis=0)
    kl = xp.reshape(kl, (batch, length))
    validation.check_kl_finite("logits_visual/logits_blind", xp, kl, response_mask)
    zero = xp.zeros((), dtype=dtype, device=_device(kl))
    return xp.where(response_mask, xp.maximum(kl, zero), zero)


def sampled_token_dependency(
    logp_visual: Any,
    logp_blind: Any,
    response_mask: Any,
    *,
    estimator: str = "k3",
    clip: float | None = None,
) -> Any:
    """Single-sample estimate of ``KL(pi_I || pi_0)`` at the generated token ``x_t ~ pi_I``.

    With the log-ratio ``log r = log pi_0(x_t) - log pi_I(x_t)`` (Schulman, 2020)::

        k1 = -log r                    unbiased, can be negative
        k2 = (log r)^2 / 2             biased, >= 0
        k3 = (r - 1) - log r           unbiased, >= 0   (the estimator PGPO trains with)

    Args:
      logp_visual: ``(B, T)`` log pi_I of the generated tokens.
      logp_blind: ``(B, T)`` log pi_0 of the same tokens.
      response_mask: ``(B, T)`` boolean, True on real response tokens.
      estimator: ``"k1"``, ``"k2"`` or ``"k3"``.
      clip: optional upper bound (> 0) on the estimate; k3 grows like ``r`` when the
        blind pass is far more confident than the visual one.

    Returns:
      ``(B, T)`` float array (float32 or better), 0 on padding. Feed k1 to
      :func:`pgpo_core.token_weights` only after clamping it at 0.
    """
    xp = validation.namespace(
        logp_visual=logp_visual, logp_blind=logp_blind, response_mask=response_mask
    )
    validation.check_ndim("logp_visual", logp_visual, 2)
    validation.check_same_shape("logp_blind", logp_blind, "logp_visual", logp_visual)
    validation.check_same_shape("response_mask", response_mask, "logp_visual", logp_visual)
    validation.check_floating("logp_visual", xp, logp_visual)
    validation.check_floating("logp_blind", xp, logp_blind)
    validation.check_bool("response_mask", xp, response_mask)
    validation.check_choice("estimator", estimator, ESTIMATORS)
    if clip is not None:
        validation.check_positive("clip", clip)
    validation.check_finite("logp_visual", xp, logp_visual, response_mask)
    validation.check_finite("logp_blind", xp, logp_blind, response_mask)

    dtype = validation.compute_dtype(xp, xp.result_type(logp_visual.dtype, logp_blind.dtype))
    zero = xp.zeros((), dtype=dtype, device=_device(logp_visual))
    log_r = xp.astype(logp_blind, dtype) - xp.astype(logp_visual, dtype)
    log_r = xp.where(response_mask, log_r, zero)
    if estimator == "k1":
        estimate = -log_r
    elif estimator == "k2":
        estimate = 0.5 * log_r**2
    else:
        estimate = xp.maximum(xp.expm1(log_r) - log_r, zero)
    if clip is not None:
        estimate = xp.minimum(estimate, xp.asarray(clip, dtype=dtype, device=_device(estimate)))
    return xp.where(response_mask, estimate, zero)
