"""Unit tests of PGPO's token weights (Eqs. 4-7) on every backend.

The hand example used throughout, with its derivation, is in ``core_hand_example.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from core_hand_example import HAND, LENGTHS, MASK, S_TILDE, expected_rows, other_namespace

NAN = float("nan")
PAD_GARBAGE = -7.0  # padded dependency values are never read: negative on purpose

DEPENDENCY = np.where(MASK, np.expm1(S_TILDE), PAD_GARBAGE)
DEPENDENCY[1, 0] = NAN  # NaN on padding is ignored as well


def _weights(backend, pgpo, dependency=DEPENDENCY, mask=MASK, **kw):
    kw.setdefault("eps", 1e-12)
    out = pgpo.token_weights(backend.asarray(dependency), backend.asarray(mask), **kw)
    assert out.shape == tuple(np.shape(mask))
    return out


def test_hand_example_tau_04_beta_2(backend, pgpo):
    out = _weights(backend, pgpo, tau=0.4, beta=2.0)
    assert out.dtype == backend.xp.float64
    w = backend.to_numpy(out)
    np.testing.assert_allclose(w, HAND, rtol=1e-9, atol=1e-12)
    # Eq. 7 mass: every row sums to its length (the empty row to 0)
    np.testing.assert_allclose(w.sum(1), LENGTHS, rtol=1e-12)
    assert np.all(w[~MASK] == 0.0)


def test_defaults_are_the_papers(backend, pgpo):
    # tau = 0.4, beta = 2.0 and a small eps (1e-6 moves each value by O(1e-6) relative)
    w = backend.to_numpy(pgpo.token_weights(backend.asarray(DEPENDENCY), backend.asarray(MASK)))
    np.testing.assert_allclose(w, HAND, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.sum(1), LENGTHS, rtol=1e-12)


def test_mass_is_conserved_on_randomexpected_rows(backend, pgpo):
    rng = np.random.default_rng(0)
    dep = rng.exponential(size=(5, 12)) * rng.exponential(size=(5, 1))
    mask = rng.random((5, 12)) < 0.5
    mask[0] = True
    w = backend.to_numpy(pgpo.token_weights(backend.asarray(dep), backend.asarray(mask)))
    np.testing.assert_allclose(w.sum(1), mask.sum(1), rtol=1e-12)
    assert np.all(w >= 0) and np.all(w[~mask] == 0)


def test_fallbackexpected_rows(backend, pgpo):
    # constant S (also constant 0 and constant huge), one token, empty row
    dep = np.array([[0.0, 0.0, 0.0], [1e6, 1e6, 1e6], [3.0, 3.0, 3.0], [2.0, 9.0, 9.0],
                    [1.0, 1.0, 1.0]])
    mask = np.array([[True] * 3, [True] * 3, [True, True, False], [True, False, False],
                     [False] * 3])
    w = backend.to_numpy(_weights(backend, pgpo, dependency=dep, mask=mask))
    np.testing.assert_array_equal(w, mask.astype(np.float64))


def test_tau_0_beta_0_is_exactly_one(backend, pgpo):
    # Eq. 6 with tau = 0, beta = 0: every token takes the second branch, w = 1 + 0 = 1;
    # Eq. 7: 1 * |o| / |o| = 1 exactly. PGPO reduces to the base algorithm.
    rng = np.random.default_rng(1)
    dep = rng.exponential(size=(5, 12)) * 5
    mask = rng.random((5, 12)) < 0.7
    for d, m in ((dep, mask), (DEPENDENCY, MASK)):
        w = backend.to_numpy(pgpo.token_weights(backend.asarray(d), backend.asarray(m),
                                                tau=0.0, beta=0.0))
        np.testing.assert_array_equal(w, m.astype(np.float64))


def test_tau_1_suppresses_only(backend, pgpo):
    # tau = 1: I < 1 always (I <= spread / (spread + eps)), so w = I / (1 + eps) = I.
    # row 0: w = [0, .2, .5, 1], sum 1.7 -> w~ = w * 4/1.7 = [0, 8/17, 20/17, 40/17]
    # row 1: w = [0, 1, .5],     sum 1.5 -> w~ = w * 3/1.5 = [0, 2, 1]
    w = backend.to_numpy(_weights(backend, pgpo, tau=1.0, beta=2.0))
    np.testing.assert_allclose(w, expected_rows([0, 8 / 17, 20 / 17, 40 / 17], [0, 2, 1]),
                               rtol=1e-9, atol=1e-12)
    raw = backend.to_numpy(_weights(backend, pgpo, tau=1.0, beta=2.0, conserve_mass=False))
    np.testing.assert_allclose(raw, expected_rows([0, 0.2, 0.5, 1.0], [0, 1.0, 0.5]),
                               rtol=1e-9, atol=1e-12)
    assert np.all(raw[MASK] <= 1.0)  # nothing is boosted before Eq. 7


def test_tau_0_boosts_only(backend, pgpo):
    # tau = 0: I >= 0 always, w = 1 + 2 I.
    # row 0: w = [1, 1.4, 2, 3], sum 7.4 -> w~ = w * 4/7.4 = [20/37, 28/37, 40/37, 60/37]
    # row 1: w = [1, 3, 2],      sum 6   -> w~ = w * 3/6   = [.5, 1.5, 1]
    w = backend.to_numpy(_weights(backend, pgpo, tau=0.0, beta=2.0))
    np.testing.assert_allclose(w, expected_rows([20 / 37, 28 / 37, 40 / 37, 60 / 37], [0.5, 1.5, 1.0]),
                               rtol=1e-9, atol=1e-12)
    raw = backend.to_numpy(_weights(backend, pgpo, tau=0.0, beta=2.0, conserve_mass=False))
    np.testing.assert_allclose(raw, expected_rows([1, 1.4, 2, 3], [1, 3, 2]), rtol=1e-9)
    assert np.all(raw[MASK] >= 1.0)


def test_conserve_mass_false(backend, pgpo):
    # Eq. 6 only: the w column of the module docstring; fallback rows still give 1.
    w = backend.to_numpy(_weights(backend, pgpo, conserve_mass=False))
    np.testing.assert_allclose(w, expected_rows([0, 0.5, 4 / 3, 3], [0, 3, 4 / 3]), rtol=1e-9,
                               atol=1e-12)


def test_low_weight_floor(backend, pgpo):
    # floor 0.1 lifts the raw w = 0 tokens to 0.1:
    # row 0: w = [.1, .5, 4/3, 3], sum 74/15 -> w * 60/74 = [3/37, 15/37, 40/37, 90/37]
    # row 1: w = [.1, 3, 4/3],     sum 133/30 -> w * 90/133 = [9/133, 270/133, 120/133]
    w = backend.to_numpy(_weights(backend, pgpo, low_weight_floor=0.1))
    np.testing.assert_allclose(
        w, expected_rows([3 / 37, 15 / 37, 40 / 37, 90 / 37], [9 / 133, 270 / 133, 120 / 133]),
        rtol=1e-9, atol=1e-12)
    raw = backend.to_numpy(_weights(backend, pgpo, low_weight_floor=0.1, conserve_mass=False))
    np.testing.assert_allclose(raw, expected_rows([0.1, 0.5, 4 / 3, 3], [0.1, 3, 4 / 3]), rtol=1e-9)


def test_quantile_threshold_hand_values(backend, pgpo):
    # row 0, I = [0, .2, .5, 1]: the 0.4-quantile (linear) sits at position 0.4 * 3 = 1.2:
    #   thr = .2 + .2 * (.5 - .2) = .26
    #   w = [0, .2/.26 = 10/13, 1 + 2 (.24)/(.74) = 61/37, 3], sum 2606/481
    #   w~ = w * 4 * 481/2606 = [0, 740/1303, 1586/1303, 2886/1303]
    # row 1, I = [0, 1, .5]: position 0.8 -> thr = 0 + .8 * .5 = .4 (sorted [0, .5, 1])
    #   -> the fixed-threshold weights again: [0, 27/13, 12/13]
    w = backend.to_numpy(_weights(backend, pgpo, threshold="quantile"))
    np.testing.assert_allclose(
        w, expected_rows([0, 740 / 1303, 1586 / 1303, 2886 / 1303], [0, 27 / 13, 12 / 13]),
        rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tau", [0.0, 0.25, 0.4, 0.5, 0.9, 1.0])
def test_quantile_threshold_matches_np_quantile(backend, pgpo, tau):
    # Independent route: I per row in numpy, threshold = np.quantile(I_row, tau), Eq. 6-7.
    rng = np.random.default_rng(2)
    dep = rng.exponential(size=(5, 12)) * 3
    mask = rng.random((5, 12)) < 0.6
    mask[0] = True
    mask[1, :] = False
    mask[1, 4:6] = True  # two tokens
    eps, beta = 1e-6, 2.0
    expected = np.zeros_like(dep)
    for b in range(5):
        idx = np.flatnonzero(mask[b])
        s = np.log1p(dep[b, idx])
        imp = (s - s.min()) / (s.max() - s.min() + eps)
        thr = np.quantile(imp, tau)
        w = np.where(imp < thr, imp / (thr + eps), 1 + beta * (imp - thr) / (1 - thr + eps))
        expected[b, idx] = w * len(idx) / w.sum()
    w = backend.to_numpy(pgpo.token_weights(backend.asarray(dep), backend.asarray(mask),
                                            tau=tau, beta=beta, eps=eps, threshold="quantile"))
    np.testing.assert_allclose(w, expected, rtol=1e-10, atol=1e-12)


def test_padding_position_does_not_matter(backend, pgpo):
    # The same response placed right-padded, left-padded and split by padding gets the same
    # weights on its tokens, whatever the padded values are.
    s = np.array([0.4, 3.0, 0.0, 1.2, 0.7])
    dep = np.full((5, 12), 1e9)
    mask = np.zeros((5, 12), bool)
    positions = [[0, 1, 2, 3, 4], [7, 8, 9, 10, 11], [0, 2, 3, 5, 11], [1, 4, 6, 7, 10],
                 [2, 3, 4, 5, 6]]
    for row, pos in enumerate(positions):
        dep[row, pos] = s
        mask[row, pos] = True
    w = backend.to_numpy(pgpo.token_weights(backend.asarray(dep), backend.asarray(mask)))
    for row, pos in enumerate(positions):
        # equal up to summation order (a few ulp)
        np.testing.assert_allclose(w[row, pos], w[0, positions[0]], rtol=1e-14, atol=0)
        assert np.all(np.delete(w[row], pos) == 0.0)


def test_float32_stays_float32(backend, pgpo):
    # float32 stays float32 (the hand example to float32 precision)
    w = pgpo.token_weights(backend.asarray(DEPENDENCY, dtype=np.float32), backend.asarray(MASK))
    assert w.dtype == backend.xp.float32
    np.testing.assert_allclose(backend.to_numpy(w), HAND, rtol=2e-5, atol=2e-6)


def test_float16_numpy_is_computed_in_float32(pgpo):
    w = pgpo.token_weights(DEPENDENCY.astype(np.float16), MASK)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w.sum(1), LENGTHS, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(tau=-0.1), ValueError, "tau"),
    (dict(tau=1.01), ValueError, "tau"),
    (dict(tau="0.4"), TypeError, "tau"),
    (dict(beta=-0.5), ValueError, "beta"),
    (dict(beta=float("nan")), ValueError, "beta"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=-1e-6), ValueError, "eps"),
    (dict(threshold="median"), ValueError, "threshold"),
    (dict(low_weight_floor=-0.1), ValueError, "low_weight_floor"),
    (dict(low_weight_floor=1.5), ValueError, "low_weight_floor"),
    (dict(conserve_mass=1), TypeError, "conserve_mass"),
])
def test_bad_hyperparameters_raise_naming_them(backend, pgpo, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        pgpo.token_weights(backend.asarray(DEPENDENCY), backend.asarray(MASK), **kwargs)


def test_bad_arrays_raise_naming_them(backend, pgpo):
    f = pgpo.token_weights
    a = backend.asarray
    dep = np.ones((2, 3))
    m = np.ones((2, 3), bool)
    with pytest.raises(TypeError, match="response_mask"):
        f(a(dep), a(m.astype(np.int32)))
    with pytest.raises(TypeError, match="response_mask"):
        f(a(dep), a(m.astype(np.float64)))
    for bad in (np.nan, np.inf, -np.inf):
        d = dep.copy()
        d[1, 1] = bad
        with pytest.raises(ValueError, match="dependency"):
            f(a(d), a(m))
    d = dep.copy()
    d[0, 2] = -1e-3
    with pytest.raises(ValueError, match="dependency"):  # negative KL (e.g. unclamped k1)
        f(a(d), a(m))
    with pytest.raises(ValueError, match="response_mask"):  # shape mismatch, no broadcast
        f(a(dep), a(m[:, :2]))
    with pytest.raises(ValueError, match="response_mask"):
        f(a(dep), a(m[:1]))
    with pytest.raises(ValueError, match="dependency"):  # not (B, T)
        f(a(dep[0]), a(m[0]))
    with pytest.raises(TypeError, match="dependency"):  # integer dependency
        f(a(dep.astype(np.int64)), a(m))
    with pytest.raises(TypeError, match="response_mask"):  # mixed namespaces
        f(a(dep), other_namespace(backend, m))
    with pytest.raises(TypeError, match="dependency"):
        f(dep.tolist(), a(m))
    with pytest.raises(TypeError):  # hyper-parameters are keyword-only
        f(a(dep), a(m), 0.4)


def test_numpy_mask_with_torch_dependency_names_the_mask(pgpo):
    import torch

    with pytest.raises(TypeError, match="^response_mask"):
        pgpo.token_weights(torch.ones(2, 3, dtype=torch.float64), np.ones((2, 3), bool))
    with pytest.raises(TypeError, match="^response_mask"):
        pgpo.token_weights(np.ones((2, 3)), torch.ones(2, 3, dtype=torch.bool))


def test_weighted_advantages_is_eq8_for_given_weights(backend, pgpo):
    # By hand: A = (2, -1) times each row's weights; padding (NaN and 7 there) gives 0.
    weights = np.array([[0.5, 1.5, NAN], [2.0, 0.0, 7.0]])
    mask = np.array([[True, True, False], [True, True, False]])
    adv = np.array([2.0, -1.0])
    got = backend.to_numpy(pgpo.weighted_advantages(backend.asarray(adv), backend.asarray(weights),
                                                    backend.asarray(mask)))
    np.testing.assert_array_equal(got, [[1.0, 3.0, 0.0], [-2.0, 0.0, 0.0]])
    # Per-token advantages are multiplied entry by entry.
    per_token = np.array([[1.0, -1.0, NAN], [0.5, 3.0, 1.0]])
    got = backend.to_numpy(pgpo.weighted_advantages(backend.asarray(per_token),
                                                    backend.asarray(weights),
                                                    backend.asarray(mask)))
    np.testing.assert_array_equal(got, [[0.5, -1.5, 0.0], [1.0, 0.0, 0.0]])


def test_reshape_is_token_weights_then_weighted_advantages(backend, pgpo):
    """reshape_advantages = weighted_advantages(token_weights(...)), bit for bit, and the
    diagnostics given those weights equal the diagnostics that compute them."""
    rng = np.random.default_rng(3)
    dep = rng.exponential(size=(4, 9))
    mask = rng.random((4, 9)) < 0.7
    mask[0] = False
    adv = rng.normal(size=4)
    kw = dict(tau=0.3, beta=1.5, threshold="quantile")
    d, m, a = backend.asarray(dep), backend.asarray(mask), backend.asarray(adv)
    w = pgpo.token_weights(d, m, **kw)
    np.testing.assert_array_equal(backend.to_numpy(pgpo.reshape_advantages(a, d, m, **kw)),
                                  backend.to_numpy(pgpo.weighted_advantages(a, w, m)))
    given = pgpo.weight_diagnostics(d, m, weights=w, **kw)
    computed = pgpo.weight_diagnostics(d, m, **kw)
    assert given.keys() == computed.keys()
    for key in computed:
        np.testing.assert_array_equal(backend.to_numpy(given[key]),
                                      backend.to_numpy(computed[key]), err_msg=key)


def test_given_weights_are_checked_and_named(backend, pgpo):
    mask = backend.asarray(np.array([[True, True]]))
    adv = backend.asarray(np.array([1.0]))
    with pytest.raises(ValueError, match="weights"):
        pgpo.weighted_advantages(adv, backend.asarray(np.array([[1.0, -0.5]])), mask)
    with pytest.raises(ValueError, match="weights"):
        pgpo.weighted_advantages(adv, backend.asarray(np.array([[1.0, NAN]])), mask)
    with pytest.raises(ValueError, match="weights"):
        pgpo.weighted_advantages(adv, backend.asarray(np.array([[1.0, 1.0, 1.0]])), mask)
    with pytest.raises(ValueError, match="weights"):
        pgpo.weight_diagnostics(backend.asarray(np.array([[0.1, 0.2]])), mask,
                                weights=backend.asarray(np.array([[1.0, -1.0]])))
