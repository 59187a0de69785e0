"""The weights' documented fallbacks, on batches that contain them.

The project's choices where the paper is silent (``token_weights``, the method page):

- a response whose ``S`` is constant over its tokens (one token included) gets
  ``w~ = 1`` on every token, exactly (README, latitude), for every hyper-parameter
  setting: fixed or quantile threshold, any ``tau``, ``beta``, ``eps``, floor, with or
  without Eq. 7, whatever the other responses hold;
- a response whose raw weights sum to 0 gets ``w~ = 1`` too. In exact arithmetic that
  happens only for a constant ``S``; in floating point also when ``I_t / (tau + eps)``
  underflows for every token, as it does for a large ``eps`` (any ``eps > 0`` is
  valid). An implementation that keeps the exact-arithmetic weights there is just as
  correct, so the property is the one both satisfy: the weights stay finite and
  non-negative, and with Eq. 7 each response's weights still sum to its length.

A constant response shows only where its raw weights are not all 0 already (with
``tau = 0`` every ``w`` is 1, with a floor every ``w`` is the floor; without Eq. 7 the
floor stays): every batch here holds at least one constant response, and the explicit
examples hold the settings where skipping the fallback shows.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from pgpo_strategies import (MAX_LEN, MAX_ROWS, U, advantage_values, dependency_values,
                             garbage_values, ragged, scatter, scattered_layout, weight_kwargs)

ADVANTAGES = st.lists(advantage_values, min_size=MAX_ROWS, max_size=MAX_ROWS)
constant_rows = st.builds(lambda value, n: [value] * n, dependency_values,
                          st.integers(1, MAX_LEN))


@st.composite
def batches_with_constant_rows(draw):
    """At least one constant response (length 1 to 8), the others constant or anything,
    scattered over 12 columns with one garbage value under the padding."""
    rows = draw(st.lists(st.one_of(constant_rows, st.lists(dependency_values, max_size=MAX_LEN)),
                         max_size=MAX_ROWS - 1))
    rows.insert(draw(st.integers(0, len(rows))), draw(constant_rows))
    width, positions = draw(scattered_layout([len(r) for r in rows]))
    return rows, width, positions, draw(garbage_values)


_PAPER = dict(tau=0.4, beta=2.0, eps=1e-6, threshold="fixed")
# Constant responses of lengths 3 and 1 beside a varying one.
_ROWS = [[2.0, 2.0, 2.0], [0.0, 1.0, 3.0], [7.5]]
_LAYOUT = (12, [np.array([0, 4, 9]), np.array([1, 2, 3]), np.array([11])])


@given(batch=batches_with_constant_rows(), kwargs=weight_kwargs(), advantages=ADVANTAGES)
# The floor without Eq. 7 (as in the authors' reported development variant, with the
# fixed threshold): every raw weight of a constant response is the floor, not 0.
@example(batch=(_ROWS, *_LAYOUT, np.nan),
         kwargs=dict(_PAPER, low_weight_floor=0.1, conserve_mass=False),
         advantages=[1.0, -2.0, 0.5, 0.0])
@example(batch=(_ROWS, *_LAYOUT, 0.0),
         kwargs=dict(_PAPER, low_weight_floor=0.3, conserve_mass=True),
         advantages=[1.0, -2.0, 0.5, 0.0])
def test_constant_responses_get_weight_one(pgpo, backend, batch, kwargs, advantages):
    rows, width, positions, garbage = batch
    values, mask = scatter(rows, width, positions, garbage)
    dep, m = backend.asarray(values), backend.asarray(mask)
    w = backend.to_numpy(pgpo.token_weights(dep, m, **kwargs))
    a = np.asarray(advantages)
    shaped = backend.to_numpy(pgpo.reshape_advantages(backend.asarray(a), dep, m, **kwargs))
    constant = [len(r) > 0 and len(set(r)) == 1 for r in rows]
    for i, row in enumerate(rows):
        if constant[i]:
            np.testing.assert_array_equal(w[i][mask[i]], 1.0, err_msg=f"row {i}: {row}")
            np.testing.assert_array_equal(shaped[i][mask[i]], a[i], err_msg=f"row {i}: {row}")
    if all(c for c, r in zip(constant, rows) if len(r)):
        # Every response constant: the diagnostics see uniform weights of 1.
        out = pgpo.weight_diagnostics(dep, m, **kwargs)
        got = {k: float(backend.to_numpy(out[k])) for k in
               ("weight_min", "weight_max", "weight_mean", "boosted_frac",
                "effective_token_frac")}
        assert got["weight_min"] == got["weight_max"] == 1.0, got
        assert got["boosted_frac"] == 0.0, got
        # Means of n ones: at most n roundings away from 1.
        assert abs(got["weight_mean"] - 1.0) <= 4 * U * width * MAX_ROWS, got
        assert abs(got["effective_token_frac"] - 1.0) <= 4 * U * width * MAX_ROWS, got


# Every I_t / (tau + eps) of order 1 / eps^2 underflows once eps > 1e162 or so. The
# raw weights vanish only below the threshold and without a floor, and a vanishing sum
# matters most to Eq. 7: the draws lean towards those settings (the others stay in).
large_eps = st.one_of(st.sampled_from([1.0, 1e10, 1e200, 1e300]), st.floats(1e170, 1e300))
large_eps_kwargs = st.fixed_dictionaries({
    "tau": st.floats(0.0, 1.0),
    "beta": st.floats(0.0, 10.0),
    "eps": large_eps,
    "threshold": st.sampled_from(["fixed", "fixed", "quantile"]),
    "low_weight_floor": st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.5]),
    "conserve_mass": st.sampled_from([True, True, False]),
})


@given(rows=ragged(dependency_values), kwargs=large_eps_kwargs, advantages=ADVANTAGES)
# I_t / (tau + eps) underflows for every token: the raw weights sum to 0.
@example(rows=[[0.0, 1.0, 3.0], [0.5, 0.5]],
         kwargs=dict(tau=0.4, beta=2.0, eps=1e300, threshold="fixed", low_weight_floor=0.0,
                     conserve_mass=True),
         advantages=[1.0, -1.0, 0.0, 0.0])
def test_weights_stay_finite_and_conserve_mass_for_a_large_eps(pgpo, backend, rows, kwargs,
                                                               advantages):
    width = MAX_LEN
    values = np.zeros((MAX_ROWS, width))
    mask = np.zeros((MAX_ROWS, width), dtype=bool)
    for i, row in enumerate(rows):
        values[i, : len(row)] = row
        mask[i, : len(row)] = True
    dep, m = backend.asarray(values), backend.asarray(mask)
    w = backend.to_numpy(pgpo.token_weights(dep, m, **kwargs))
    assert np.all(np.isfinite(w)) and np.all(w >= 0), (rows, kwargs, w)
    np.testing.assert_array_equal(w[~mask], 0.0)
    if kwargs["conserve_mass"]:
        for i, row in enumerate(rows):
            n = len(row)
            # as test_weight_properties.test_mass_conservation: n (2n + 2) U, times 2
            assert abs(np.sum(w[i]) - n) <= 4 * n * (n + 1) * U, (i, row, w[i])
    shaped = backend.to_numpy(pgpo.reshape_advantages(backend.asarray(np.asarray(advantages)),
                                                      dep, m, **kwargs))
    assert np.all(np.isfinite(shaped)), (rows, kwargs, shaped)
