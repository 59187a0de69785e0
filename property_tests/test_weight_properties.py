"""Properties of PGPO's token weights and token advantages (Eqs. 4-8), on every backend.

The spec, as the paper states it (App. F-H) and as the project's method page fixes
the cases the paper leaves open:

- mass: with Eq. 7, the weights of a response sum to its length, so its token
  advantages sum to ``length * A``;
- ranking: within a response, ``S_a >= S_b`` implies ``w_a >= w_b`` (fixed and
  quantile thresholds, with or without the floor, with or without Eq. 7);
- ``tau = 0, beta = 0`` is the base algorithm: every weight is exactly 1;
- padding (anywhere, whatever values sit under it) and the order of the rows
  change nothing on real tokens beyond the rounding of ``sum_j w_j``; padding gets
  exactly 0;
- finite, non-negative weights for any finite S >= 0, including 0, subnormals,
  1e300 and a tiny eps.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from pgpo_strategies import (MAX_ROWS, U, advantage_values, dependency_values, garbage_values,
                             pack_left, ragged, real_tokens, scatter, scattered_layout,
                             weight_kwargs)

ADVANTAGES = st.lists(advantage_values, min_size=MAX_ROWS, max_size=MAX_ROWS)


def _weights(pgpo, backend, values, mask, kwargs):
    out = pgpo.token_weights(backend.asarray(values), backend.asarray(mask), **kwargs)
    return backend.to_numpy(out)


def _reshape(pgpo, backend, advantages, values, mask, kwargs):
    out = pgpo.reshape_advantages(backend.asarray(advantages), backend.asarray(values),
                                  backend.asarray(mask), **kwargs)
    return backend.to_numpy(out)


def _mass_tolerance(n: int) -> float:
    # total = sum(raw) and sum(w~) each carry (n - 1) U relative error, the scaling
    # w~ = raw * n / total two roundings more: |sum w~ - n| <= n (2n + 2) U, times 2.
    return 4 * n * (n + 1) * U


@given(rows=ragged(dependency_values), kwargs=weight_kwargs(conserve_mass=True),
       advantages=ADVANTAGES)
def test_mass_conservation(pgpo, backend, rows, kwargs, advantages):
    values, mask = pack_left(rows)
    w = _weights(pgpo, backend, values, mask, kwargs)
    a = np.asarray(advantages)
    shaped = _reshape(pgpo, backend, a, values, mask, kwargs)
    for i, row in enumerate(rows):
        n = len(row)
        assert abs(np.sum(w[i]) - n) <= _mass_tolerance(n), (i, w[i])
        # sum_t A~ = sum_t A w~_t: the mass error times |A|, plus n products and a sum of n.
        tol = abs(a[i]) * (_mass_tolerance(n) + 2 * n * (n + 1) * U)
        assert abs(np.sum(shaped[i]) - n * a[i]) <= tol, (i, shaped[i])
    np.testing.assert_array_equal(w[~mask], 0.0)
    np.testing.assert_array_equal(shaped[~mask], 0.0)
    # Per-response (B,) and per-token (B, T) advantages holding the same value agree
    # (one product A * w~ each, so to a couple of roundings).
    per_token = np.where(mask, a[:, None], 0.0)
    np.testing.assert_allclose(_reshape(pgpo, backend, per_token, values, mask, kwargs), shaped,
                               rtol=4 * U, atol=0)


@given(rows=ragged(dependency_values, max_rows=3), kwargs=weight_kwargs())
def test_rank_preservation(pgpo, backend, rows, kwargs):
    """S_a >= S_b implies w~_a >= w~_b, exactly (every step is a monotone rounded operation)."""
    values, mask = pack_left(rows)
    w = _weights(pgpo, backend, values, mask, kwargs)
    for i, row in enumerate(rows):
        s = np.asarray(row, dtype=np.float64)
        wi = w[i, : len(row)]
        order = np.argsort(s, kind="stable")
        # Sorted by S, the weights must be non-decreasing (ties in S: equal weights).
        assert np.all(np.diff(wi[order]) >= 0), (s[order], wi[order])
        for a in range(len(row)):
            same = s == s[a]
            assert np.all(wi[same] == wi[a]), (s, wi)


@given(rows=ragged(dependency_values), kwargs=weight_kwargs(tau=0.0, beta=0.0),
       advantages=ADVANTAGES)
def test_tau0_beta0_is_the_base_algorithm(pgpo, backend, rows, kwargs, advantages):
    values, mask = pack_left(rows)
    w = _weights(pgpo, backend, values, mask, kwargs)
    np.testing.assert_array_equal(w, np.where(mask, 1.0, 0.0))
    a = np.asarray(advantages)
    shaped = _reshape(pgpo, backend, a, values, mask, kwargs)
    np.testing.assert_array_equal(shaped, np.where(mask, a[:, None], 0.0))


@st.composite
def _padded_problem(draw):
    rows = draw(ragged(dependency_values))
    width, positions = draw(scattered_layout([len(r) for r in rows]))
    garbage = np.asarray(draw(st.lists(garbage_values, min_size=MAX_ROWS * width,
                                       max_size=MAX_ROWS * width))).reshape(MAX_ROWS, width)
    return rows, width, positions, garbage


@given(problem=_padded_problem(), kwargs=weight_kwargs(),
       advantages=ADVANTAGES)
def test_padding_invariance(pgpo, backend, problem, kwargs, advantages):
    """Padding anywhere, holding anything (NaN, inf, negatives), changes nothing on real tokens."""
    rows, width, positions, garbage = problem
    compact, compact_mask = pack_left(rows)
    scattered, mask = scatter(rows, width, positions, garbage)
    a = np.asarray(advantages)
    w_ref = real_tokens(_weights(pgpo, backend, compact, compact_mask, kwargs), compact_mask)
    w = _weights(pgpo, backend, scattered, mask, kwargs)
    per_token = np.where(mask, a[:, None], garbage)  # garbage advantages under padding too
    shaped = _reshape(pgpo, backend, per_token, scattered, mask, kwargs)
    np.testing.assert_array_equal(w[~mask], 0.0)
    np.testing.assert_array_equal(shaped[~mask], 0.0)
    for i, got in enumerate(real_tokens(w, mask)):
        # Only the order of the terms of sum_j w_j can change: (n - 1) U relative each way.
        n = got.size
        np.testing.assert_allclose(got, w_ref[i], rtol=4 * (n + 1) * U, atol=0)
        # A~ = A w~ below the smallest normal float is flushed to 0 by XLA on CPU (jax):
        # hence atol = that number (2.2e-308), never more (a hypothesis find:
        # A = 1.2e-81, w~ = 5.2e-231).
        np.testing.assert_allclose(shaped[i][mask[i]], a[i] * w_ref[i],
                                   rtol=4 * (n + 2) * U, atol=np.finfo(np.float64).tiny)


@given(rows=ragged(dependency_values), kwargs=weight_kwargs(), data=st.data())
def test_batch_order_invariance(pgpo, backend, rows, kwargs, data):
    """Permuting the responses permutes the weights and token advantages: every response
    is computed from its own row alone (up to the rounding of its sum)."""
    values, mask = pack_left(rows)
    perm = np.asarray(data.draw(st.permutations(range(MAX_ROWS))), dtype=np.int64)
    a = np.asarray(data.draw(ADVANTAGES))
    w = _weights(pgpo, backend, values, mask, kwargs)
    w_perm = _weights(pgpo, backend, values[perm], mask[perm], kwargs)
    rtol = 4 * (values.shape[1] + 2) * U
    np.testing.assert_allclose(w_perm, w[perm], rtol=rtol, atol=0)
    shaped = _reshape(pgpo, backend, a, values, mask, kwargs)
    shaped_perm = _reshape(pgpo, backend, a[perm], values[perm], mask[perm], kwargs)
    np.testing.assert_allclose(shaped_perm, shaped[perm], rtol=rtol, atol=0)


@given(rows=ragged(dependency_values), kwargs=weight_kwargs(),
       advantages=ADVANTAGES)
# A subnormal spread: the raw weights' sum is subnormal and length / sum overflows.
@example(rows=[[0.0, 5e-324], [0.0, 1e-318, 3e-319]],
         kwargs=dict(tau=0.4, beta=2.0, eps=1e-6, threshold="fixed", low_weight_floor=0.0,
                     conserve_mass=True),
         advantages=[1.0, -1.0, 0.0, 0.0])
def test_finite_nonnegative_outputs(pgpo, backend, rows, kwargs, advantages):
    values, mask = pack_left(rows)
    w = _weights(pgpo, backend, values, mask, kwargs)
    assert np.all(np.isfinite(w)), (values, w)
    assert np.all(w >= 0), w
    shaped = _reshape(pgpo, backend, np.asarray(advantages), values, mask, kwargs)
    assert np.all(np.isfinite(shaped)), (values, shaped)
