"""The clipped surrogate (Eq. 9), its gradient and its metrics against an independent
float64 reference written from the equations, token by token in Python.

For every aggregation, with and without the dual clip, with and without a normalizer
or norm_length, per-token and per-response advantages, log-ratios beyond the clamp
(|log r| > 20), and masks of every kind (holes, empty rows, full rows, length 1, no
token at all) whose padding holds anything (+-inf, NaN, 1e308):

- the loss and every metric equal the reference to rounding; padding never reaches
  them (``ratio_max`` included); with no response token they are 0;
- on a backend with automatic differentiation, the gradient with respect to ``logp``
  is finite and equals the reference's (0 on padding, beyond the clamp, in the clipped
  and dual-clipped branches; ``-A r`` times the aggregation's coefficient elsewhere).

The spec (README, ``policy_loss``)::

    log r = clip(logp - logp_old, -20, 20)          (default bound, as verl; or unbounded)
    l_t   = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))
    l_t   = min(l_t, -A dual_clip)                  where A < 0, if dual_clip is set
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pgpo_strategies import U, assert_float_result, garbage_values

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                "seq-mean-token-sum-norm")
METRICS = ("clip_frac", "clip_frac_low", "clip_frac_high", "dual_clip_frac", "approx_kl",
           "ratio_mean", "ratio_max", "advantage_mean")
LOG_RATIO_CLIP = 20.0
ROWS, COLS = 3, 6

# Advantages away from the subnormal range (XLA on CPU flushes subnormals to zero).
ADVANTAGE = st.one_of(st.just(0.0), st.floats(1e-3, 5.0), st.floats(-5.0, -1e-3))


@st.composite
def loss_problems(draw):
    """Masks drawn cell by cell (so holes, empty rows, full rows and length-1 rows all
    occur), real values from the spec's domain, garbage under the padding."""
    shape = (ROWS, COLS)
    mask = draw(hnp.arrays(np.bool_, shape))
    logp_old = draw(hnp.arrays(np.float64, shape, elements=st.floats(-40.0, 0.0)))
    delta = draw(hnp.arrays(np.float64, shape, elements=st.one_of(
        st.floats(-1.0, 1.0), st.floats(-30.0, 30.0))))
    per_response = draw(st.booleans())
    if per_response:
        adv = draw(hnp.arrays(np.float64, (ROWS,), elements=ADVANTAGE))
    else:
        adv = draw(hnp.arrays(np.float64, shape, elements=ADVANTAGE))
    junk = [draw(hnp.arrays(np.float64, shape, elements=garbage_values)) for _ in range(3)]
    logp = np.where(mask, logp_old + delta, junk[0])
    logp_old = np.where(mask, logp_old, junk[1])
    if not per_response:
        adv = np.where(mask, adv, junk[2])
    return logp, logp_old, adv, mask


loss_kwargs = st.fixed_dictionaries({
    "aggregation": st.sampled_from(AGGREGATIONS),
    "clip_low": st.sampled_from([0.1, 0.2, 0.3]),
    "clip_high": st.sampled_from([0.2, 0.28, 0.5]),
    "dual_clip": st.sampled_from([None, 1.5, 3.0, 10.0]),
    "normalizer": st.sampled_from([None, None, 0.5, 1.0, 3.0, 37.0]),
    "norm_length": st.sampled_from([None, 1, 5, 64]),
    # the default bound, and no bound: padding must stay out of the gradient either way
    "log_ratio_clip": st.sampled_from([LOG_RATIO_CLIP, None]),
})


def reference(logp, logp_old, adv, mask, *, aggregation, clip_low, clip_high, dual_clip,
              normalizer, norm_length, log_ratio_clip=LOG_RATIO_CLIP):
    """Loss, d loss / d logp and metrics, token by token from the equations (float64).

    Also returns a flag: True when a token sits within 1e-9 of a branch boundary (clip
    edge, clamp edge, dual-clip edge), where the branch taken is decided by rounding.
    """
    rows, cols = mask.shape
    adv = np.broadcast_to(adv[:, None], mask.shape) if adv.ndim == 1 else adv
    lo, hi = 1.0 - clip_low, 1.0 + clip_high
    losses, grads, coef = np.zeros(mask.shape), np.zeros(mask.shape), np.zeros(mask.shape)
    tokens = []  # (r, log r, A, clipped_low, clipped_high, dual_active)
    edge = False
    divisor = normalizer if normalizer is not None else None
    for i in range(rows):
        n_i = int(mask[i].sum())
        for t in range(cols):
            if not mask[i, t]:
                continue
            raw = logp[i, t] - logp_old[i, t]
            bound = math.inf if log_ratio_clip is None else log_ratio_clip
            log_r = min(max(raw, -bound), bound)
            r = math.exp(log_r)
            a = adv[i, t]
            unclipped = -a * r
            clipped = -a * min(max(r, lo), hi)
            loss = max(unclipped, clipped)
            dual = False
            if dual_clip is not None and a < 0 and loss > -a * dual_clip:
                loss, dual = -a * dual_clip, True
            grad = 0.0 if (abs(raw) > bound or dual or unclipped < clipped) else -a * r
            edge |= abs(abs(raw) - bound) < 1e-9
            edge |= min(abs(r / lo - 1), abs(r / hi - 1)) < 1e-9
            if dual_clip is not None and a < 0:
                edge |= abs(max(unclipped, clipped) / (-a * dual_clip) - 1) < 1e-9
            losses[i, t], grads[i, t] = loss, grad
            if aggregation == "token-mean":
                coef[i, t] = 1.0 / (divisor if divisor is not None else max(mask.sum(), 1))
            else:
                d = divisor if divisor is not None else max(rows, 1)
                if aggregation == "seq-mean-token-mean":
                    coef[i, t] = 1.0 / (d * n_i)
                elif aggregation == "seq-mean-token-sum":
                    coef[i, t] = 1.0 / d
                else:
                    coef[i, t] = 1.0 / (d * (norm_length if norm_length is not None else cols))
            tokens.append((r, log_r, a, r < lo and a < 0, r > hi and a > 0, dual))
    t = np.asarray(tokens, dtype=np.float64).reshape(-1, 6)
    n = max(len(tokens), 1)
    metrics = {
        "clip_frac": np.sum(np.maximum(t[:, 3], t[:, 4])) / n,
        "clip_frac_low": np.sum(t[:, 3]) / n,
        "clip_frac_high": np.sum(t[:, 4]) / n,
        "dual_clip_frac": np.sum(t[:, 5]) / n,
        "approx_kl": np.sum(np.expm1(t[:, 1]) - t[:, 1]) / n,
        "ratio_mean": np.sum(t[:, 0]) / n,
        "ratio_max": np.max(t[:, 0], initial=0.0),
        "advantage_mean": np.sum(t[:, 2]) / n,
    }
    return np.sum(losses * coef), grads * coef, metrics, losses * coef, t, edge


def _call(pgpo, backend, logp, logp_old, adv, mask, kwargs):
    return pgpo.policy_loss(backend.asarray(logp), backend.asarray(logp_old),
                            backend.asarray(adv), backend.asarray(mask), **kwargs)


def _tolerances(weighted, t, n):
    """Each term: log r rounded once then exp (a few ulp, times |log r| <= 30), one
    product and the clip; the sum of ``n`` terms adds ``n U`` relative to the sum of
    magnitudes (Higham 4.2). Factor 4 for two independent evaluations."""
    loss_tol = 4 * U * (34 + 2 * n) * np.sum(np.abs(weighted)) + 1e-300
    r, log_r = t[:, 0], t[:, 1]
    ratio_tol = 4 * U * (34 + 2 * n) * (np.max(r, initial=0.0) + 1)
    kl_tol = 4 * U * (34 + 2 * n) * (np.max(r + np.abs(log_r), initial=0.0) + 1)
    frac_tol = 4 * U
    adv_tol = 4 * U * (2 + n) * (np.max(np.abs(t[:, 2]), initial=0.0))
    return loss_tol, {"clip_frac": frac_tol, "clip_frac_low": frac_tol,
                      "clip_frac_high": frac_tol, "dual_clip_frac": frac_tol,
                      "approx_kl": kl_tol, "ratio_mean": ratio_tol, "ratio_max": ratio_tol,
                      "advantage_mean": adv_tol}


_NO_TOKEN = (np.full((ROWS, COLS), np.nan), np.full((ROWS, COLS), np.inf),
             np.full((ROWS, COLS), -np.inf), np.zeros((ROWS, COLS), dtype=bool))
_FULL = (np.log(np.linspace(0.5, 1.5, ROWS * COLS)).reshape(ROWS, COLS),
         np.zeros((ROWS, COLS)), np.array([1.0, -1.0, 0.5]), np.ones((ROWS, COLS), dtype=bool))
_EDGE_KWARGS = dict(aggregation="seq-mean-token-mean", clip_low=0.2, clip_high=0.28,
                    dual_clip=3.0, normalizer=None, norm_length=None, log_ratio_clip=None)


@given(problem=loss_problems(), kwargs=loss_kwargs)
@example(problem=_NO_TOKEN, kwargs=_EDGE_KWARGS)
@example(problem=_FULL, kwargs=_EDGE_KWARGS)
def test_loss_and_metrics_match_the_reference(pgpo, backend, problem, kwargs):
    logp, logp_old, adv, mask = problem
    want, _, want_m, weighted, t, edge = reference(logp, logp_old, adv, mask, **kwargs)
    assume(not edge)
    loss, metrics = _call(pgpo, backend, logp, logp_old, adv, mask, kwargs)
    got = backend.to_numpy(loss)
    assert got.shape == ()
    assert_float_result(got)
    loss_tol, metric_tol = _tolerances(weighted, t, int(mask.sum()))
    np.testing.assert_allclose(got, want, rtol=0, atol=loss_tol)
    assert set(METRICS) <= set(metrics), sorted(metrics)  # extra keys are allowed
    for key in METRICS:
        value = backend.to_numpy(metrics[key])
        assert value.shape == (), key
        np.testing.assert_allclose(value, want_m[key], rtol=0, atol=metric_tol[key],
                                   err_msg=key)


def _value_and_grad(pgpo, backend, logp, logp_old, adv, mask, kwargs):
    if backend.library == "torch":
        x = backend.asarray(logp).requires_grad_(True)
        loss, _ = pgpo.policy_loss(x, backend.asarray(logp_old), backend.asarray(adv),
                                   backend.asarray(mask), **kwargs)
        loss.backward()
        return float(loss.detach()), backend.to_numpy(x.grad)
    if backend.library == "jax":
        import jax

        def f(x):
            return pgpo.policy_loss(x, backend.asarray(logp_old), backend.asarray(adv),
                                    backend.asarray(mask), **kwargs)[0]

        value, grad = jax.value_and_grad(f)(backend.asarray(logp))
        return float(value), np.asarray(grad)
    raise AssertionError(backend.name)


@pytest.fixture
def autograd_backend(backend):
    """The backend, for the gradient properties: torch and jax; numpy and
    array-api-strict have no automatic differentiation (a platform limit)."""
    if backend.library not in ("torch", "jax"):
        pytest.skip(f"{backend.name} has no automatic differentiation; the gradient "
                    "properties run on torch and jax")
    return backend


@given(problem=loss_problems(), kwargs=loss_kwargs)
@example(problem=_NO_TOKEN, kwargs=_EDGE_KWARGS)
@example(problem=_FULL, kwargs=_EDGE_KWARGS)
def test_gradient_is_finite_and_matches_the_reference(pgpo, autograd_backend, problem, kwargs):
    """Padding holding +-inf or NaN, and log-ratios beyond the clamp, must not turn the
    gradient into NaN (0 * inf in a backward pass)."""
    logp, logp_old, adv, mask = problem
    _, want, _, _, t, edge = reference(logp, logp_old, adv, mask, **kwargs)
    assume(not edge)
    _, grad = _value_and_grad(pgpo, autograd_backend, logp, logp_old, adv, mask, kwargs)
    assert np.all(np.isfinite(grad)), grad
    np.testing.assert_array_equal(grad[~mask], 0.0)
    # Each entry is one product -A r times a coefficient: a few roundings of itself.
    np.testing.assert_allclose(grad, want, rtol=4 * U * 30, atol=1e-300)
