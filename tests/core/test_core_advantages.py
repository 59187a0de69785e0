"""Unit tests of Eq. 8 (reshape_advantages) and Eq. 2 (group_advantages) on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_hand_example import HAND, MASK, S_TILDE, other_namespace

# The hand example of core_hand_example.py; HAND is its w~ (tau = 0.4, beta = 2).
DEPENDENCY = np.where(MASK, np.expm1(S_TILDE), 0.0)


# ---------------------------------------------------------------------------------------
# reshape_advantages (Eq. 8)
# ---------------------------------------------------------------------------------------

def test_reshape_per_response_advantages(backend, pgpo):
    # A = [2, -1, 0.5, 3, 7] -> A~ = A_i * w~_t, e.g. row 0: [0, 24/29, 64/29, 144/29, 0],
    # row 1 (negative A): [0, 0, 0, -27/13, -12/13] at the real positions 1, 3, 4.
    adv = np.array([2.0, -1.0, 0.5, 3.0, 7.0])
    out = pgpo.reshape_advantages(backend.asarray(adv), backend.asarray(DEPENDENCY),
                                  backend.asarray(MASK), tau=0.4, beta=2.0, eps=1e-12)
    assert out.shape == (5, 5) and out.dtype == backend.xp.float64
    got = backend.to_numpy(out)
    np.testing.assert_allclose(got, adv[:, None] * HAND, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[0, :4], [0, 24 / 29, 64 / 29, 144 / 29], rtol=1e-9)
    # mass: sum_t A~_{i,t} = |o_i| A_i  ->  [8, -3, 1.5, 3, 0]
    np.testing.assert_allclose(got.sum(1), [8.0, -3.0, 1.5, 3.0, 0.0], rtol=1e-12, atol=1e-12)
    assert np.all(got[~MASK] == 0.0)


def test_reshape_per_token_advantages(backend, pgpo):
    rng = np.random.default_rng(0)
    adv = rng.normal(size=(5, 5))
    adv[~MASK] = np.nan  # padded advantages are never read
    out = backend.to_numpy(pgpo.reshape_advantages(
        backend.asarray(adv), backend.asarray(DEPENDENCY), backend.asarray(MASK), eps=1e-12))
    np.testing.assert_allclose(out, np.where(MASK, adv, 0.0) * HAND, rtol=1e-9, atol=1e-12)
    # a per-token advantage constant along each row gives the per-response result
    const = np.repeat(np.array([2.0, -1.0, 0.5, 3.0, 7.0])[:, None], 5, axis=1)
    out = backend.to_numpy(pgpo.reshape_advantages(
        backend.asarray(const), backend.asarray(DEPENDENCY), backend.asarray(MASK)))
    np.testing.assert_allclose(out.sum(1), [8.0, -3.0, 1.5, 3.0, 0.0], rtol=1e-12, atol=1e-12)


def test_reshape_passes_the_weight_hyperparameters(backend, pgpo):
    # conserve_mass=False with A = 1 gives the raw Eq. 6 weights: row 0 [0, .5, 4/3, 3];
    # tau = 0, beta = 0 gives A~ = A exactly.
    adv = np.ones(5)
    args = (backend.asarray(adv), backend.asarray(DEPENDENCY), backend.asarray(MASK))
    out = backend.to_numpy(pgpo.reshape_advantages(*args, conserve_mass=False, eps=1e-12))
    np.testing.assert_allclose(out[0, :4], [0, 0.5, 4 / 3, 3], rtol=1e-9, atol=1e-12)
    out = backend.to_numpy(pgpo.reshape_advantages(*args, tau=0.0, beta=0.0))
    np.testing.assert_array_equal(out, MASK.astype(np.float64))
    out = backend.to_numpy(pgpo.reshape_advantages(*args, threshold="quantile", eps=1e-12))
    np.testing.assert_allclose(out[0, :4], [0, 740 / 1303, 1586 / 1303, 2886 / 1303], rtol=1e-9,
                               atol=1e-12)


def test_reshape_dtype_promotion(backend, pgpo):
    # float32 advantages with float64 dependency -> float64 result
    out = pgpo.reshape_advantages(backend.asarray(np.ones(5), dtype=np.float32),
                                  backend.asarray(DEPENDENCY), backend.asarray(MASK))
    assert out.dtype == backend.xp.float64


def test_reshape_errors_name_the_argument(backend, pgpo):
    f = pgpo.reshape_advantages
    a = backend.asarray
    dep, m = a(DEPENDENCY), a(MASK)
    with pytest.raises(ValueError, match="advantages"):  # (B+1,)
        f(a(np.ones(6)), dep, m)
    with pytest.raises(ValueError, match="advantages"):  # (B, T+1): not broadcast
        f(a(np.ones((5, 6))), dep, m)
    with pytest.raises(ValueError, match="advantages"):  # (B, 1): not broadcast either
        f(a(np.ones((5, 1))), dep, m)
    with pytest.raises(ValueError, match="advantages"):  # 3-D
        f(a(np.ones((5, 5, 1))), dep, m)
    with pytest.raises(TypeError, match="advantages"):  # integer advantages
        f(a(np.ones(5, dtype=np.int64)), dep, m)
    for bad in (np.nan, np.inf):
        x = np.ones(5)
        x[2] = bad
        with pytest.raises(ValueError, match="advantages"):
            f(a(x), dep, m)
        x = np.ones((5, 5))
        x[0, 1] = bad
        with pytest.raises(ValueError, match="advantages"):
            f(a(x), dep, m)
    with pytest.raises(TypeError, match="advantages"):  # mixed namespaces
        f(other_namespace(backend, np.ones(5)), dep, m)
    with pytest.raises(ValueError, match="tau"):
        f(a(np.ones(5)), dep, m, tau=2.0)
    with pytest.raises(ValueError, match="beta"):
        f(a(np.ones(5)), dep, m, beta=-1.0)
    neg = DEPENDENCY.copy()
    neg[0, 0] = -1.0
    with pytest.raises(ValueError, match="dependency"):
        f(a(np.ones(5)), a(neg), m)
    with pytest.raises(TypeError, match="response_mask"):
        f(a(np.ones(5)), dep, a(MASK.astype(np.int32)))


# ---------------------------------------------------------------------------------------
# group_advantages (Eq. 2)
# ---------------------------------------------------------------------------------------

# Uneven, non-contiguous groups:
#   id 3 at 0, 2, 5: R = [1, 3, 2]  mean 2, std (ddof 1) = sqrt((1 + 1 + 0) / 2) = 1
#                                   A = [-1, 1, 0] / (1 + eps)
#   id 1 at 1, 4:    R = [0, 1]     mean .5, std = sqrt((.25 + .25) / 1) = sqrt(.5)
#                                   A = [-.5, .5] / sqrt(.5) = [-sqrt(.5), sqrt(.5)]
#   id 7 at 3, 6:    R = [.5, .5]   all equal: mean .5, std 0, A = 0
#   id 4 at 7:       R = [7]        one response: mean 7, std 0 (no dof left), A = 0
REWARDS = np.array([1.0, 0.0, 3.0, 0.5, 1.0, 2.0, 0.5, 7.0])
GROUP_IDS = np.array([3, 1, 3, 7, 1, 3, 7, 4])
RT5 = math.sqrt(0.5)


def _numpy_groups(rewards, ids, *, ddof, normalize_std, eps):
    """Independent route: a Python loop over the distinct ids with numpy mean/std."""
    adv, mean, std, equal = (np.zeros(len(rewards)) for _ in range(4))
    for g in np.unique(ids):
        idx = ids == g
        r = rewards[idx]
        m = r.mean()
        s = r.std(ddof=ddof) if len(r) > ddof else 0.0
        mean[idx], std[idx], equal[idx] = m, s, float(np.all(r == r[0]))
        adv[idx] = (r - m) / (s + eps) if normalize_std else r - m
    adv[equal == 1] = 0.0
    return adv, mean, std, equal.astype(bool)


def test_group_advantages_hand_values(backend, pgpo):
    out = pgpo.group_advantages(backend.asarray(REWARDS), backend.asarray(GROUP_IDS), eps=1e-12)
    adv, mean, std, equal = (backend.to_numpy(x) for x in out)
    np.testing.assert_allclose(adv, [-1, -RT5, 1, 0, RT5, 0, 0, 0], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(mean, [2, 0.5, 2, 0.5, 0.5, 2, 0.5, 7], rtol=1e-15)
    np.testing.assert_allclose(std, [1, RT5, 1, 0, RT5, 1, 0, 0], rtol=1e-15)
    np.testing.assert_array_equal(equal, [False, False, False, True, False, False, True, True])
    assert out.all_equal.dtype == backend.xp.bool
    assert out.advantages.dtype == backend.xp.float64
    # the named fields are the tuple's entries
    np.testing.assert_array_equal(backend.to_numpy(out.advantages), adv)


@pytest.mark.parametrize("correction", [0, 1])
@pytest.mark.parametrize("normalize_std", [True, False])
def test_group_advantages_match_numpy_loop(backend, pgpo, correction, normalize_std):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, size=16)
    ids[[1, 6, 11]] = 2
    rewards = rng.normal(size=16)
    rewards[ids == 2] = 0.25  # an all-equal group ...
    ids[-1] = 9  # ... and a group of one
    eps = 1e-6
    out = pgpo.group_advantages(backend.asarray(rewards), backend.asarray(ids), eps=eps,
                                correction=correction, normalize_std=normalize_std)
    expected = _numpy_groups(rewards, ids, ddof=correction, normalize_std=normalize_std, eps=eps)
    for got, want in zip(out, expected):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=1e-14)


def test_group_advantages_population_std_hand_values(backend, pgpo):
    # correction=0: id 3 std = sqrt(2/3); id 1 std = .5; the group of one has std 0.
    out = pgpo.group_advantages(backend.asarray(REWARDS), backend.asarray(GROUP_IDS),
                                correction=0, eps=1e-12)
    s3 = math.sqrt(2 / 3)
    np.testing.assert_allclose(backend.to_numpy(out.std), [s3, .5, s3, 0, .5, s3, 0, 0],
                               rtol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(out.advantages),
                               [-1 / s3, -1, 1 / s3, 0, 1, 0, 0, 0], rtol=1e-10, atol=1e-15)


def test_group_advantages_without_std(backend, pgpo):
    # normalize_std=False (Dr. GRPO): A = R - mean = [-1, -.5, 1, 0, .5, 0, 0, 0]
    out = pgpo.group_advantages(backend.asarray(REWARDS), backend.asarray(GROUP_IDS),
                                normalize_std=False)
    np.testing.assert_allclose(backend.to_numpy(out.advantages),
                               [-1, -.5, 1, 0, .5, 0, 0, 0], rtol=1e-15)


def test_group_advantages_float32_and_sum_to_zero(backend, pgpo):
    out = pgpo.group_advantages(backend.asarray(REWARDS, dtype=np.float32),
                                backend.asarray(GROUP_IDS.astype(np.int32)))
    assert out.advantages.dtype == backend.xp.float32
    adv = backend.to_numpy(out.advantages)
    for g in np.unique(GROUP_IDS):  # advantages of each group sum to 0
        assert abs(adv[GROUP_IDS == g].sum()) < 1e-6


def test_group_advantages_errors_name_the_argument(backend, pgpo):
    f = pgpo.group_advantages
    a = backend.asarray
    r, g = a(REWARDS), a(GROUP_IDS)
    with pytest.raises(ValueError, match="rewards"):
        f(a(REWARDS[None]), g)
    with pytest.raises(TypeError, match="rewards"):
        f(a(REWARDS.astype(np.int64)), g)
    with pytest.raises(TypeError, match="group_ids"):
        f(r, a(GROUP_IDS.astype(np.float64)))
    with pytest.raises(ValueError, match="group_ids"):
        f(r, a(GROUP_IDS[:-1]))
    with pytest.raises(ValueError, match="group_ids"):
        f(r, a(GROUP_IDS[None]))
    x = REWARDS.copy()
    x[3] = np.nan
    with pytest.raises(ValueError, match="rewards"):
        f(a(x), g)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="eps"):
            f(r, g, eps=bad)
    for bad in (2, -1, True):
        with pytest.raises(ValueError, match="correction"):
            f(r, g, correction=bad)
    with pytest.raises(TypeError, match="normalize_std"):
        f(r, g, normalize_std=1)
    with pytest.raises(TypeError, match="group_ids"):
        f(r, other_namespace(backend, GROUP_IDS))
