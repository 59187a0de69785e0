"""Agreement across backends, and with the paper's equations evaluated independently.

The same float64 inputs must give the same outputs on every backend as on numpy, to
float64 rounding, for every public function; and numpy's must match the equations
written out directly (``pgpo_strategies.reference_weights``, ``reference_kl``).

Weights are a piecewise function of ratios of log-dependency differences, so their
rounding error is the backends' ``log1p`` error (a few ulp) times the problem's
condition number, unbounded as two dependencies get arbitrarily close or a token
sits on the threshold. The inputs are therefore drawn from a grid: S = k / 4 for
k in 0..40 (distinct log1p values at least 0.023 apart, so the min-max spread and
every nonzero importance are at least 0.0095) and thresholds whose quantile
positions are exact in binary (tau in {0, 1/4, 1/2, 3/4, 1}, and 0.4 for the
fixed threshold). Then the slopes of Eqs. 5-7 are below about 1e3 and the weights
agree to about 1e-12; ``WEIGHT_RTOL = 1e-9`` leaves margin for that estimate while
staying six orders of magnitude below any change of formula (which moves weights by
1e-3 or more).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pgpo_strategies import (MAX_ROWS, U, assert_float_result, kl_tolerance, logits_pairs,
                             pack_left, pack_logits, ragged, reference_kl, reference_weights)



class NUMPY:
    """The reference backend: plain numpy arrays."""

    asarray = staticmethod(np.asarray)
    to_numpy = staticmethod(np.asarray)


WEIGHT_RTOL = 1e-9

grid_dependency = st.integers(0, 40).map(lambda k: k / 4)
grid_kwargs = st.fixed_dictionaries({
    "tau": st.sampled_from([0.0, 0.25, 0.4, 0.5, 0.75, 1.0]),
    "beta": st.sampled_from([0.0, 0.5, 2.0, 5.0]),
    "eps": st.sampled_from([1e-6, 1e-3]),
    "threshold": st.sampled_from(["fixed", "quantile"]),
    "low_weight_floor": st.sampled_from([0.0, 0.1, 0.5]),
    "conserve_mass": st.booleans(),
})


def _both(backend, fn, *arrays, **kwargs):
    """fn on numpy and on ``backend``, both results as numpy (pytrees of arrays too)."""
    ref = fn(*[NUMPY.asarray(a) for a in arrays], **kwargs)
    got = fn(*[backend.asarray(a) for a in arrays], **kwargs)
    return ref, got


@given(rows=ragged(grid_dependency), kwargs=grid_kwargs,
       advantages=st.lists(st.floats(-10.0, 10.0), min_size=MAX_ROWS, max_size=MAX_ROWS))
def test_weights_and_advantages_agree(pgpo, backend, rows, kwargs, advantages):
    if kwargs["threshold"] == "quantile" and kwargs["tau"] == 0.4:
        kwargs = {**kwargs, "tau": 0.5}  # 0.4 * (n - 1) is not exact in binary
    values, mask = pack_left(rows)
    a = np.asarray(advantages)
    ref, got = _both(backend, pgpo.token_weights, values, mask, **kwargs)
    ref, got = NUMPY.to_numpy(ref), backend.to_numpy(got)
    expected = np.zeros_like(values)
    for i, row in enumerate(rows):
        expected[i, : len(row)] = reference_weights(row, **kwargs)
    np.testing.assert_allclose(ref, expected, rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL)
    np.testing.assert_allclose(got, ref, rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL)
    assert_float_result(got)
    ref_a, got_a = _both(backend, pgpo.reshape_advantages, a, values, mask, **kwargs)
    np.testing.assert_allclose(backend.to_numpy(got_a), NUMPY.to_numpy(ref_a),
                               rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL * 10)
    np.testing.assert_allclose(NUMPY.to_numpy(ref_a), a[:, None] * expected,
                               rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL * 10)


@given(problem=logits_pairs(magnitude=8.0), temperature=st.sampled_from([1.0, 0.7]),
       chunk=st.sampled_from([None, 1, 4]))
def test_exact_kl_agrees(pgpo, backend, problem, temperature, chunk):
    vocab, visual_rows, blind_rows = problem
    visual, mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    ref, got = _both(backend, pgpo.token_visual_dependency, visual, blind, mask,
                     temperature=temperature, chunk_size=chunk)
    tol = kl_tolerance(visual, blind, temperature)
    np.testing.assert_allclose(backend.to_numpy(got), NUMPY.to_numpy(ref), rtol=0, atol=tol)
    expected = np.where(mask, reference_kl(visual, blind, temperature), 0.0)
    np.testing.assert_allclose(NUMPY.to_numpy(ref), np.maximum(expected, 0), rtol=0, atol=tol)


@given(rows=st.lists(st.lists(st.tuples(st.floats(-20.0, 0.0), st.floats(-20.0, 0.0)),
                              max_size=6), min_size=1, max_size=3),
       estimator=st.sampled_from(["k1", "k2", "k3"]),
       clip=st.one_of(st.none(), st.floats(0.01, 100.0)))
def test_sampled_estimators_agree(pgpo, backend, rows, estimator, clip):
    logp_v, mask = pack_left([[p[0] for p in r] for r in rows])
    logp_b, _ = pack_left([[p[1] for p in r] for r in rows])
    ref, got = _both(backend, pgpo.sampled_token_dependency, logp_v, logp_b, mask,
                     estimator=estimator, clip=clip)
    ref = NUMPY.to_numpy(ref)
    # One log-ratio (exact difference of the inputs up to one rounding), then expm1 or a
    # square: a few ulp of the largest term, |log r| <= 20 so e^|log r| <= 5e8.
    log_r = np.where(mask, logp_b - logp_v, 0.0)
    scale = np.exp(np.abs(log_r)) + log_r**2 + 1
    np.testing.assert_array_less(np.abs(backend.to_numpy(got) - ref), 8 * U * scale + 1e-300)
    want = {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": np.expm1(log_r) - log_r}[estimator]
    if clip is not None:
        want = np.minimum(want, clip)
    np.testing.assert_array_less(np.abs(ref - np.where(mask, want, 0.0)),
                                 8 * U * scale + 1e-300)


@given(n=st.sampled_from([1, 2, 5, 12]), data=st.data(), normalize_std=st.booleans())
def test_group_advantages_agree(pgpo, backend, n, data, normalize_std):
    ids = np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
                     dtype=np.int64)
    rewards = np.asarray(data.draw(st.lists(st.integers(0, 10), min_size=n, max_size=n)),
                         dtype=np.float64) / 10  # accuracy/format-style rewards in [0, 1]
    ref, got = _both(backend, pgpo.group_advantages, rewards, ids,
                     normalize_std=normalize_std)
    for name, r, g in zip(("advantages", "mean", "std", "all_equal"), ref, got):
        r, g = NUMPY.to_numpy(r), backend.to_numpy(g)
        if name == "all_equal":
            np.testing.assert_array_equal(g, r)
        else:
            # Sums of n terms of magnitude <= 1, divided by std + eps >= 1e-6 when not 0.
            np.testing.assert_allclose(g, r, rtol=16 * n * U, atol=16 * n * U / 1e-6,
                                       err_msg=name)
    # Independent: per group, (r - mean) / (std + eps) with numpy's own mean and std.
    adv = NUMPY.to_numpy(ref[0])
    for g in np.unique(ids):
        r = rewards[ids == g]
        if np.all(r == r[0]):
            want = np.zeros_like(r)
        else:
            want = r - r.mean()
            if normalize_std:
                want = want / (r.std(ddof=1) + 1e-6)
        np.testing.assert_allclose(adv[ids == g], want, rtol=16 * n * U, atol=16 * n * U / 1e-6)


# Advantages away from 0 or exactly 0: XLA on CPU flushes subnormals to zero, and the
# clip fractions are comparisons, so a product that underflows differently would flip them.
ADVANTAGE = st.one_of(st.just(0.0), st.floats(1e-3, 3.0), st.floats(-3.0, -1e-3))


@given(rows=st.lists(st.lists(st.tuples(st.floats(-5.0, 0.0), st.floats(-5.0, 0.0), ADVANTAGE),
                              min_size=1, max_size=6),
                     min_size=1, max_size=3),
       aggregation=st.sampled_from(["token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                                    "seq-mean-token-sum-norm"]),
       dual_clip=st.one_of(st.none(), st.just(3.0)))
def test_policy_loss_agrees(pgpo, backend, rows, aggregation, dual_clip):
    logp, mask = pack_left([[t[0] for t in r] for r in rows])
    logp_old, _ = pack_left([[t[1] for t in r] for r in rows])
    adv, _ = pack_left([[t[2] for t in r] for r in rows])
    (ref_loss, ref_m), (got_loss, got_m) = _both(
        backend, pgpo.policy_loss, logp, logp_old, adv, mask, aggregation=aggregation,
        dual_clip=dual_clip)
    # Terms |A r| <= 3 e^5 ~ 450, at most 18 of them: 64 n U times that magnitude.
    tol = 64 * mask.size * U * 450
    np.testing.assert_allclose(backend.to_numpy(got_loss), NUMPY.to_numpy(ref_loss),
                               rtol=0, atol=tol)
    assert set(got_m) == set(ref_m)
    for key in ref_m:
        np.testing.assert_allclose(backend.to_numpy(got_m[key]), NUMPY.to_numpy(ref_m[key]),
                                   rtol=0, atol=tol, err_msg=key)
