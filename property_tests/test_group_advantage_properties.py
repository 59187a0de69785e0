"""Properties of the group-relative advantages (Eq. 2, GRPO) and DAPO's all-equal mask.

- within every group whose rewards are not all equal, the advantages have mean 0
  (and, with the std division, a sample std of ``std / (std + eps)``, i.e. about 1);
- a group whose rewards are all equal (one response included) is flagged and gets
  exactly 0, also for rewards not exact in binary (0.1, 0.3, 1/3: their group mean
  rounds away from them, so ``r - mean`` and the std are not 0) and never for a group
  whose rewards differ by less than eps;
- permuting the responses (group ids travelling with them) permutes every output.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pgpo_strategies import U

# Rewards of magnitude >= 1e-100 (or 0), so that no difference, square or mean of them
# underflows into the subnormal range: XLA on CPU flushes subnormals to zero, which would
# make, say, [0, 5e-324] an all-equal group on jax only (platform arithmetic, not the spec).
REWARDS = st.one_of(st.floats(-1e3, 1e3).map(lambda r: r if abs(r) >= 1e-100 else 0.0),
                    st.sampled_from([0.0, 0.1, 0.9, 1.0, 1e-7, 2e-7]))

#: Values whose repeated sum is not exact in binary, so a group of them has a computed
#: mean != the value and a computed std > 0.
NOT_BINARY_EXACT = st.sampled_from([0.1, 0.3, 0.7, 0.9, 1 / 3, 2 / 3, 0.2, 1e-3, -0.1, 1e6 + 0.1])


@st.composite
def _groups(draw, max_size=12):
    n = draw(st.sampled_from([1, 2, 5, max_size]))  # few shapes: jax compiles per shape
    ids = np.asarray(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.int64)
    rewards = np.asarray(draw(st.lists(REWARDS, min_size=n, max_size=n)), dtype=np.float64)
    return rewards, ids


def _call(pgpo, backend, rewards, ids, **kwargs):
    out = pgpo.group_advantages(backend.asarray(rewards), backend.asarray(ids), **kwargs)
    return [backend.to_numpy(x) for x in out]


@given(problem=_groups(), normalize_std=st.booleans(), correction=st.sampled_from([0, 1]),
       eps=st.sampled_from([1e-6, 1e-4, 1e-12]))
def test_zero_mean_per_group_and_zero_for_all_equal_groups(pgpo, backend, problem,
                                                            normalize_std, correction, eps):
    rewards, ids = problem
    adv, mean, std, all_equal = _call(pgpo, backend, rewards, ids,
                                      normalize_std=normalize_std, correction=correction, eps=eps)
    for g in np.unique(ids):
        members = ids == g
        r = rewards[members]
        n = r.size
        equal = bool(np.all(r == r[0]))
        assert np.all(all_equal[members] == equal)
        if equal:
            np.testing.assert_array_equal(adv[members], 0.0)
            continue
        # The mean carries (n + 1) U max|r| error; n subtractions and the sum add n U each:
        # |sum_i (r_i - mean)| <= 2 n (n + 2) U max|r|, then divided by std + eps.
        scale = std[members][0] + eps if normalize_std else 1.0
        tol = 4 * n * (n + 2) * U * np.max(np.abs(r)) / scale
        assert abs(np.sum(adv[members])) <= tol, (r, adv[members])
        if normalize_std and n - correction > 0:
            # Sample std of the advantages (same correction) is std / (std + eps); the
            # centred rewards carry about n U max|r| absolute error each, hence the bound.
            s = std[members][0]
            got = np.sqrt(np.sum((adv[members] - adv[members].mean()) ** 2) / (n - correction))
            np.testing.assert_allclose(got, s / (s + eps), rtol=0,
                                       atol=64 * n * U * (np.max(np.abs(r)) + s) / (s + eps))


@given(problem=_groups(), normalize_std=st.booleans(), data=st.data())
def test_permuting_samples_permutes_outputs(pgpo, backend, problem, normalize_std, data):
    rewards, ids = problem
    perm = np.asarray(data.draw(st.permutations(range(rewards.size))), dtype=np.int64)
    adv, mean, std, all_equal = _call(pgpo, backend, rewards, ids, normalize_std=normalize_std)
    p_adv, p_mean, p_std, p_equal = _call(pgpo, backend, rewards[perm], ids[perm],
                                          normalize_std=normalize_std)
    np.testing.assert_array_equal(p_equal, all_equal[perm])
    # Only the summation order of each group's mean and variance changes.
    n = rewards.size
    big = np.max(np.abs(rewards))
    np.testing.assert_allclose(p_mean, mean[perm], rtol=0, atol=4 * n * U * big)
    np.testing.assert_allclose(p_std, std[perm], rtol=0, atol=8 * n * U * big)
    # adv = (r - mean) / (std + eps): |d adv| <= (|d mean| + |adv| |d std|) / (std + eps).
    scale = std[perm] + 1e-6 if normalize_std else 1.0
    bound = (4 * n * U * big + np.abs(adv[perm]) * 8 * n * U * big) / scale
    bound = 2 * bound + 4 * U * np.abs(adv[perm])
    assert np.all(np.abs(p_adv - adv[perm]) <= bound), (p_adv, adv[perm], bound)


@given(value=NOT_BINARY_EXACT, size=st.integers(2, 12), data=st.data(),
       normalize_std=st.booleans(), correction=st.sampled_from([0, 1]),
       eps=st.sampled_from([1e-6, 1e-12]))
def test_equal_rewards_not_exact_in_binary_are_flagged_with_zero_advantages(
        pgpo, backend, value, size, data, normalize_std, correction, eps):
    """DAPO's dynamic sampling drops all-equal groups: a flag missed here keeps a group
    with no signal, and an advantage of 1e-11 instead of 0 trains on rounding noise."""
    n = 12
    others = data.draw(st.lists(REWARDS, min_size=n - size, max_size=n - size))
    other_ids = data.draw(st.lists(st.integers(1, 3), min_size=n - size, max_size=n - size))
    rewards = np.asarray([value] * size + others, dtype=np.float64)
    ids = np.asarray([0] * size + other_ids, dtype=np.int64)
    perm = np.asarray(data.draw(st.permutations(range(n))), dtype=np.int64)
    rewards, ids = rewards[perm], ids[perm]
    adv, mean, std, all_equal = _call(pgpo, backend, rewards, ids, normalize_std=normalize_std,
                                      correction=correction, eps=eps)
    members = ids == 0
    assert np.all(all_equal[members])
    np.testing.assert_array_equal(adv[members], 0.0)
    assert np.all(np.isfinite(adv)) and np.all(np.isfinite(std)) and np.all(std >= 0)
