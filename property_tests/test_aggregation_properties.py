"""The loss aggregations, ``masked_mean`` and the loss metrics against their documented
formulas, on batches whose responses differ in length.

The spec (``aggregate``, README; ``l`` the per-token loss, ``m`` the mask, ``B`` the
rows, ``T`` the columns, ``|o_i|`` the length of response ``i``)::

    token-mean               sum_{i,t} l / sum_{i,t} m                (DAPO, PGPO)
    seq-mean-token-mean      (1/B) sum_i (sum_t l_i / |o_i|)          (GRPO)
    seq-mean-token-sum       (1/B) sum_i  sum_t l_i
    seq-mean-token-sum-norm  (1/B) sum_i  sum_t l_i / norm_length      (Dr. GRPO; default T)

``normalizer`` replaces the mode's divisor as given (``sum m`` for token-mean, ``B`` for
the seq-mean modes); an empty row counts as 0 and still counts in ``B``. The loss
metrics, ``masked_mean`` and ``weight_diagnostics``' ``dependency_mean`` are means over
the batch's response tokens (every token weighs the same, whatever the length of its
response).

These modes coincide on batches of equal lengths, and Dr. GRPO's default ``T`` coincides
with the longest response when one response fills the row; so every batch here has two
responses of different lengths, and ``T`` (12 columns, padding anywhere) exceeds every
length (at most 8). The explicit examples make that hold in every run, whatever
Hypothesis draws.

``policy_loss`` is checked through an independent route: with ``logp == logp_old`` the
ratio is exactly 1, inside every clip range and below every dual-clip bound, so the
per-token loss is exactly ``-A_t`` and the loss is the aggregation of ``-A``.

References are exact sums (``math.fsum``) of each token's coefficient times its value;
the tolerance is Higham's bound for a sum of at most ``B * T`` terms plus a few
roundings per term (``pgpo_strategies``), times 4.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from pgpo_strategies import MAX_LEN, MAX_ROWS, U, assert_float_result, scatter, scattered_layout

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                "seq-mean-token-sum-norm")
#: Per-token values: exact in binary (k / 8) or any normal float of moderate size.
#: Subnormals are left out: a sum of them rounds differently by the order it is taken in
#: (e.g. ``-(5e-324 + 5e-324) / 4`` is 0 or ``-5e-324``), which no aggregation promises.
VALUES = st.one_of(st.integers(-80, 80).map(lambda k: k / 8),
                   st.floats(-10.0, 10.0, allow_subnormal=False))


@st.composite
def ragged_batches(draw):
    """Rows of per-token values, two of them of different non-zero lengths, the others
    of any length (0 included), scattered over 12 columns (rows past the last are empty).
    Returns ``(rows, width, positions)``."""
    first = draw(st.integers(1, MAX_LEN))
    second = draw(st.integers(1, MAX_LEN - 1))
    second += second >= first  # a length other than the first's
    extra = draw(st.lists(st.integers(0, MAX_LEN), max_size=MAX_ROWS - 2))
    lengths = draw(st.permutations([first, second] + extra))
    rows = [draw(st.lists(VALUES, min_size=n, max_size=n)) for n in lengths]
    width, positions = draw(scattered_layout(lengths))
    assert width > MAX_LEN
    return rows, width, positions


def reference_aggregate(rows, width, aggregation, normalizer=None, norm_length=None):
    """The formula of ``aggregation`` token by token: (exact sum, rounding bound)."""
    n_tokens = sum(len(r) for r in rows)
    terms = []
    for row in rows:
        for value in row:
            if aggregation == "token-mean":
                coef = 1.0 / (normalizer if normalizer is not None else max(n_tokens, 1))
            else:
                seqs = normalizer if normalizer is not None else MAX_ROWS  # B: empty rows count
                coef = {"seq-mean-token-mean": 1.0 / (seqs * len(row)),
                        "seq-mean-token-sum": 1.0 / seqs,
                        "seq-mean-token-sum-norm":
                            1.0 / (seqs * (norm_length if norm_length is not None else width)),
                        }[aggregation]
            terms.append(coef * value)
    terms = np.asarray(terms, dtype=np.float64)
    return math.fsum(terms), 4 * U * (MAX_ROWS * width + 4) * float(np.sum(np.abs(terms)))


def _token_mean(rows, fn=lambda v: v):
    """Exact mean over every token of the batch of ``fn(value)``, and its rounding bound."""
    values = np.asarray([fn(v) for row in rows for v in row], dtype=np.float64)
    n = max(values.size, 1)
    return math.fsum(values) / n, 4 * U * (values.size + 4) * float(np.sum(np.abs(values))) / n


# Lengths 3 and 1 (and an empty row) in 12 columns: token-mean 1.5 / 4 tokens = 0.375,
# the mean of the sequence means (0.5 + 0 + 0 + 0) / 4 = 0.125; Dr. GRPO divides by
# T = 12, not by the longest length 3.
_EXAMPLE = ([[1.0, 2.0, -1.5], [0.0]], 12, [np.array([0, 5, 11]), np.array([3])])


@given(batch=ragged_batches(), normalizer=st.sampled_from([0.5, 3.0, 37.0]),
       norm_length=st.sampled_from([1, 5, 64]), pad=st.floats(-1e3, 1e3))
@example(batch=_EXAMPLE, normalizer=3.0, norm_length=5, pad=7.0)
def test_aggregations_follow_their_formulas(pgpo, backend, batch, normalizer, norm_length,
                                            pad):
    rows, width, positions = batch
    values, mask = scatter(rows, width, positions, pad)
    per_token, m = backend.asarray(values), backend.asarray(mask)
    for aggregation in AGGREGATIONS:
        settings = [{}, {"normalizer": normalizer}]
        if aggregation == "seq-mean-token-sum-norm":
            settings += [{"norm_length": norm_length},
                         {"normalizer": normalizer, "norm_length": norm_length}]
        for kwargs in settings:
            got = backend.to_numpy(pgpo.aggregate(per_token, m, aggregation=aggregation,
                                                  **kwargs))
            assert got.shape == ()
            assert_float_result(got)
            want, tol = reference_aggregate(rows, width, aggregation, **kwargs)
            np.testing.assert_allclose(got, want, rtol=0, atol=tol,
                                       err_msg=f"{aggregation} {kwargs}")
    got = backend.to_numpy(pgpo.masked_mean(per_token, m))
    want, tol = _token_mean(rows)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg="masked_mean")
    # weight_diagnostics' means are over the batch's tokens too (S = |value| >= 0).
    out = pgpo.weight_diagnostics(backend.asarray(np.abs(values)), m)
    want, tol = _token_mean(rows, abs)
    np.testing.assert_allclose(float(backend.to_numpy(out["dependency_mean"])), want, rtol=0,
                               atol=tol, err_msg="dependency_mean")


@given(batch=ragged_batches(), aggregation=st.sampled_from(AGGREGATIONS),
       normalizer=st.sampled_from([None, 3.0]), norm_length=st.sampled_from([None, 5]),
       dual_clip=st.sampled_from([None, 3.0]))
@example(batch=_EXAMPLE, aggregation="token-mean", normalizer=None, norm_length=None,
         dual_clip=None)
def test_policy_loss_at_ratio_one_aggregates_minus_the_advantages(
        pgpo, backend, batch, aggregation, normalizer, norm_length, dual_clip):
    """``logp == logp_old``: ``r = 1`` exactly, so ``loss_t = -A_t`` and the loss is each
    mode's formula applied to ``-A`` (padding holding NaN and inf); the metrics are
    token means: ``advantage_mean`` the mean of ``A``, ``ratio_mean`` 1, ``approx_kl``
    and the clip fractions 0. Then, with ``logp - logp_old = A / 8``, ``ratio_mean``
    and ``approx_kl`` are the token means of ``e^d`` and ``e^d - 1 - d``."""
    rows, width, positions = batch
    adv, mask = scatter(rows, width, positions, np.nan)
    logp, _ = scatter([[-0.25 - abs(v) for v in r] for r in rows], width, positions, -np.inf)
    lp, a, m = backend.asarray(logp), backend.asarray(adv), backend.asarray(mask)
    minus = [[-v for v in r] for r in rows]
    for agg, kwargs in [(mode, {}) for mode in AGGREGATIONS] + [
            (aggregation, {"normalizer": normalizer, "norm_length": norm_length,
                           "dual_clip": dual_clip})]:
        loss, metrics = pgpo.policy_loss(lp, lp, a, m, aggregation=agg, **kwargs)
        kwargs.pop("dual_clip", None)
        want, tol = reference_aggregate(minus, width, agg, **kwargs)
        np.testing.assert_allclose(backend.to_numpy(loss), want, rtol=0, atol=tol,
                                   err_msg=f"{agg} {kwargs}")
    want, tol = _token_mean(rows)
    got = {k: float(backend.to_numpy(v)) for k, v in metrics.items()}
    np.testing.assert_allclose(got["advantage_mean"], want, rtol=0, atol=tol)
    assert got["ratio_mean"] == 1.0 and got["ratio_max"] == 1.0, got
    assert got["approx_kl"] == 0.0 and got["clip_frac"] == 0.0, got
    # A non-trivial ratio: d = A / 8 in [-1.25, 1.25] (exact in binary for grid values).
    logp_old, _ = scatter([[-0.25 - abs(v) - v / 8 for v in r] for r in rows], width,
                          positions, np.inf)
    _, metrics = pgpo.policy_loss(lp, backend.asarray(logp_old), a, m)
    deltas = [[(-0.25 - abs(v)) - (-0.25 - abs(v) - v / 8) for v in r] for r in rows]
    for key, fn in (("ratio_mean", math.exp), ("approx_kl", lambda d: math.expm1(d) - d)):
        want, tol = _token_mean(deltas, fn)
        # exp of a log-ratio rounded once: a few ulp of e^1.25 per term on top of the sum.
        np.testing.assert_allclose(float(backend.to_numpy(metrics[key])), want, rtol=0,
                                   atol=tol + 40 * U * math.exp(1.25), err_msg=key)
