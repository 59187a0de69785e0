"""Properties of the token visual dependency (Eq. 1) and its single-sample estimators.

- the exact KL is >= 0 (also for equal and near-identical logits, where rounding
  alone decides the sign of an unclamped sum), unchanged by a constant shift of
  either pass's logits, equal to its definition (an independent float64 evaluation),
  the same chunked and unchunked, exactly 0 on padding, and unchanged by padding
  anywhere (whatever the logits under it, NaN included) or by the order of the rows,
  all to float64 rounding (``kl_tolerance``);
- it is finite for finite logits, even of magnitude 1e30;
- k1 and k3 are unbiased for the exact KL under x ~ pi_I (checked statistically with
  a fixed seed), k2 and k3 are >= 0, k1 is the plain log-ratio.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgpo_strategies import (LOGIT_LEN, LOGIT_ROWS, U, assert_float_result, garbage_values,
                             kl_tolerance, logits_pairs, pack_left, pack_logits, real_tokens,
                             reference_kl, scatter, scattered_layout)

TEMPERATURES = st.sampled_from([1.0, 0.5, 0.7, 2.0])


def _kl(pgpo, backend, visual, blind, mask, **kwargs):
    out = pgpo.token_visual_dependency(backend.asarray(visual), backend.asarray(blind),
                                       backend.asarray(mask), **kwargs)
    return backend.to_numpy(out)


@given(problem=logits_pairs(), temperature=TEMPERATURES, shift=st.floats(-100.0, 100.0))
def test_exact_kl_is_nonnegative_zero_for_equal_logits_and_shift_invariant(
        pgpo, backend, problem, temperature, shift):
    vocab, visual_rows, blind_rows = problem
    visual, mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    kl = _kl(pgpo, backend, visual, blind, mask, temperature=temperature)
    assert_float_result(kl)
    assert np.all(kl >= 0), kl
    np.testing.assert_array_equal(kl[~mask], 0.0)
    # Equal logits: KL = 0 up to rounding, and never below 0.
    same = _kl(pgpo, backend, visual, visual, mask, temperature=temperature)
    assert np.all(same >= 0) and np.all(same <= kl_tolerance(visual, visual, temperature)), same
    # softmax(z + c) = softmax(z): only rounding of z + c (magnitudes up to |z| + |c|) remains.
    shifted = _kl(pgpo, backend, visual, visual + shift, mask, temperature=temperature)
    assert np.all(shifted <= kl_tolerance(visual, visual + shift, temperature)), shifted


@given(problem=logits_pairs(), temperature=TEMPERATURES)
def test_exact_kl_matches_its_definition(pgpo, backend, problem, temperature):
    vocab, visual_rows, blind_rows = problem
    visual, mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    kl = _kl(pgpo, backend, visual, blind, mask, temperature=temperature)
    expected = np.where(mask, np.maximum(reference_kl(visual, blind, temperature), 0.0), 0.0)
    np.testing.assert_allclose(kl, expected, rtol=0,
                               atol=kl_tolerance(visual, blind, temperature))


@given(problem=logits_pairs(), chunk=st.sampled_from([1, 2, 4, 7, 15, 16]))
def test_chunked_equals_unchunked(pgpo, backend, problem, chunk):
    """Chunking changes nothing beyond rounding (the spec does not promise bit equality)."""
    vocab, visual_rows, blind_rows = problem
    visual, mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    whole = _kl(pgpo, backend, visual, blind, mask)
    np.testing.assert_allclose(_kl(pgpo, backend, visual, blind, mask, chunk_size=chunk),
                               whole, rtol=0, atol=kl_tolerance(visual, blind))


@st.composite
def _padded_logits(draw):
    vocab, visual_rows, blind_rows = draw(logits_pairs())
    width, positions = draw(scattered_layout([len(r) for r in visual_rows],
                                             width=LOGIT_LEN + 3))
    size = LOGIT_ROWS * width * vocab
    garbage = st.lists(garbage_values, min_size=size, max_size=size)
    shape = (LOGIT_ROWS, width, vocab)
    g_visual = np.asarray(draw(garbage)).reshape(shape)
    g_blind = np.asarray(draw(garbage)).reshape(shape)
    return vocab, visual_rows, blind_rows, width, positions, g_visual, g_blind


@given(problem=_padded_logits(), chunk=st.sampled_from([None, 1, 4]))
def test_padding_invariance(pgpo, backend, problem, chunk):
    """Padding anywhere, with any logits under it (NaN, inf), changes nothing on real tokens."""
    vocab, visual_rows, blind_rows, width, positions, g_visual, g_blind = problem
    visual, compact_mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    expected = real_tokens(_kl(pgpo, backend, visual, blind, compact_mask), compact_mask)
    s_visual, mask = scatter(visual_rows, width, positions, g_visual, tail=(vocab,), height=LOGIT_ROWS)
    s_blind, _ = scatter(blind_rows, width, positions, g_blind, tail=(vocab,), height=LOGIT_ROWS)
    kl = _kl(pgpo, backend, s_visual, s_blind, mask, chunk_size=chunk)
    np.testing.assert_array_equal(kl[~mask], 0.0)
    tol = kl_tolerance(visual, blind)
    for got, want in zip(real_tokens(kl, mask), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@given(problem=logits_pairs(min_len=1), data=st.data())
def test_batch_order_invariance(pgpo, backend, problem, data):
    vocab, visual_rows, blind_rows = problem
    visual, mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    perm = np.asarray(data.draw(st.permutations(range(LOGIT_ROWS))), dtype=np.int64)
    kl = _kl(pgpo, backend, visual, blind, mask)
    np.testing.assert_allclose(_kl(pgpo, backend, visual[perm], blind[perm], mask[perm]),
                               kl[perm], rtol=0, atol=kl_tolerance(visual, blind))


@given(problem=logits_pairs(magnitude=1e30), temperature=TEMPERATURES,
       dtype=st.sampled_from(["float64", "float32"]))
def test_finite_for_finite_logits(pgpo, backend, problem, temperature, dtype):
    vocab, visual_rows, blind_rows = problem
    visual, mask = pack_logits(vocab, visual_rows)
    blind, _ = pack_logits(vocab, blind_rows)
    out = pgpo.token_visual_dependency(backend.asarray(visual, dtype=dtype),
                                       backend.asarray(blind, dtype=dtype),
                                       backend.asarray(mask), temperature=temperature)
    kl = backend.to_numpy(out)
    assert_float_result(kl, dtype)  # float32 or better, never below the input
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0), kl


@given(problem=logits_pairs(min_len=1), temperature=TEMPERATURES,
       scale=st.sampled_from([1e-16, 1e-14, 1e-12, 1e-9]), seed=st.integers(0, 2**32 - 1))
def test_near_identical_logits_give_a_valid_dependency(pgpo, backend, problem, temperature,
                                                       scale, seed):
    """Logits that differ by rounding-sized amounts (text tokens, where the image changes
    nothing) give a KL of about 0 that is >= 0, so it feeds straight into token_weights."""
    vocab, visual_rows, _ = problem
    visual, mask = pack_logits(vocab, visual_rows)
    noise = np.random.default_rng(seed).uniform(-1.0, 1.0, size=visual.shape)
    blind = visual + scale * noise * (1.0 + np.abs(visual))
    kl = pgpo.token_visual_dependency(backend.asarray(visual), backend.asarray(blind),
                                      backend.asarray(mask), temperature=temperature)
    got = backend.to_numpy(kl)
    assert np.all(got >= 0), got
    want = np.where(mask, reference_kl(visual, blind, temperature), 0.0)
    np.testing.assert_allclose(got, np.maximum(want, 0.0), rtol=0,
                               atol=kl_tolerance(visual, blind, temperature))
    w = backend.to_numpy(pgpo.token_weights(kl, backend.asarray(mask)))
    assert np.all(np.isfinite(w)) and np.all(w[~mask] == 0.0)


# ------------------------------------------------------------- single-sample estimators

# Log-probabilities in [-60, 0], those within 1e-100 of 0 set to 0: a difference of two
# log-probs then never lands in the subnormal range, which XLA on CPU flushes to zero.
LOGP = st.floats(-60.0, 0.0).map(lambda x: x if x <= -1e-100 else 0.0)


@given(rows=st.lists(st.lists(st.tuples(LOGP, LOGP), max_size=6), min_size=1, max_size=3),
       clip=st.one_of(st.none(), st.floats(1e-3, 1e3)))
def test_estimators_signs_and_definitions(pgpo, backend, rows, clip):
    logp_visual, mask = pack_left([[p[0] for p in r] for r in rows])
    logp_blind, _ = pack_left([[p[1] for p in r] for r in rows])
    args = (backend.asarray(logp_visual), backend.asarray(logp_blind), backend.asarray(mask))
    k1, k2, k3 = (backend.to_numpy(pgpo.sampled_token_dependency(*args, estimator=e, clip=clip))
                  for e in ("k1", "k2", "k3"))
    for k in (k1, k2, k3):
        assert np.all(np.isfinite(k))
        np.testing.assert_array_equal(k[~mask], 0.0)
    assert np.all(k2 >= 0) and np.all(k3 >= 0)
    if clip is None:
        # k1 = -log r = log pi_I - log pi_0: one subtraction, exact up to its own rounding.
        # (atol: XLA on CPU flushes a difference below the smallest normal float to 0.)
        np.testing.assert_allclose(k1, np.where(mask, logp_visual - logp_blind, 0.0),
                                   rtol=2 * U, atol=np.finfo(np.float64).tiny)
    else:
        assert np.all(k1 <= clip) and np.all(k2 <= clip) and np.all(k3 <= clip)


@given(rows=st.lists(st.lists(st.tuples(st.floats(-1e300, 0.0), st.floats(-1e300, 0.0)),
                              max_size=5), min_size=1, max_size=3),
       clip=st.floats(1e-3, 1e3))
def test_clipped_estimates_are_finite_for_any_finite_log_probs(pgpo, backend, rows, clip):
    logp_visual, mask = pack_left([[p[0] for p in r] for r in rows])
    logp_blind, _ = pack_left([[p[1] for p in r] for r in rows])
    args = (backend.asarray(logp_visual), backend.asarray(logp_blind), backend.asarray(mask))
    for estimator in ("k2", "k3"):
        k = backend.to_numpy(pgpo.sampled_token_dependency(*args, estimator=estimator,
                                                           clip=clip))
        assert np.all(np.isfinite(k)) and np.all((k >= 0) & (k <= clip)), (estimator, k)


def _sampled_problem(seed=20260401, rows=12, vocab=40, samples=20_000):
    """Distributions with KLs from about 0.005 to 1.5 and tokens drawn from pi_I."""
    rng = np.random.default_rng(seed)
    visual = rng.normal(0.0, 1.5, size=(rows, vocab))
    scale = np.linspace(0.1, 1.5, rows)[:, None]
    blind = visual + scale * rng.normal(0.0, 1.0, size=(rows, vocab))
    logp_v = visual - np.logaddexp.reduce(visual, axis=-1, keepdims=True)
    logp_b = blind - np.logaddexp.reduce(blind, axis=-1, keepdims=True)
    tokens = np.stack([rng.choice(vocab, size=samples, p=np.exp(lp)) for lp in logp_v])
    take = np.take_along_axis
    return (visual, blind, take(logp_v, tokens, axis=1), take(logp_b, tokens, axis=1))


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_estimator_is_unbiased_for_the_exact_kl(pgpo, backend, estimator):
    """E_{x ~ pi_I}[k(x)] = KL(pi_I || pi_0) for k1 and k3.

    12 distributions x 20,000 tokens sampled from pi_I (fixed seed). For each, the
    sample mean of the estimate is within 5 standard errors of the exact KL: under
    unbiasedness and the CLT a miss has probability below 6e-7 per distribution
    (7e-6 for the 12), while a biased estimator misses by far more (k2's bias here
    is tens of standard errors at the larger KLs).
    """
    visual, blind, logp_v, logp_b = _sampled_problem()
    mask = np.ones(logp_v.shape, dtype=bool)
    estimate = backend.to_numpy(pgpo.sampled_token_dependency(
        backend.asarray(logp_v), backend.asarray(logp_b), backend.asarray(mask),
        estimator=estimator))
    exact = backend.to_numpy(pgpo.token_visual_dependency(
        backend.asarray(visual[None]), backend.asarray(blind[None]),
        backend.asarray(np.ones((1, visual.shape[0]), dtype=bool))))[0]
    np.testing.assert_allclose(exact, reference_kl(visual, blind), rtol=0,
                               atol=kl_tolerance(visual, blind))
    assert np.all(exact > 4e-3)
    mean = estimate.mean(axis=1)
    stderr = estimate.std(axis=1, ddof=1) / np.sqrt(estimate.shape[1])
    assert np.all(np.abs(mean - exact) <= 5 * stderr), (mean, exact, stderr)


def test_k2_is_biased_so_the_unbiasedness_check_has_power(pgpo, backend):
    """The same check rejects k2 (biased), so passing it for k1/k3 means something."""
    visual, blind, logp_v, logp_b = _sampled_problem()
    mask = np.ones(logp_v.shape, dtype=bool)
    k2 = backend.to_numpy(pgpo.sampled_token_dependency(
        backend.asarray(logp_v), backend.asarray(logp_b), backend.asarray(mask),
        estimator="k2"))
    exact = reference_kl(visual, blind)
    stderr = k2.std(axis=1, ddof=1) / np.sqrt(k2.shape[1])
    assert np.any(np.abs(k2.mean(axis=1) - exact) > 5 * stderr)
