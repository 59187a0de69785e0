"""Unit tests of VPPO's trajectory advantage shaping and token gradient filtering (every backend).

Hand example (T = 5, ``.`` = padding, which holds garbage on purpose), A = [1, -2, 0.5, 3]:

  row 0  S = [0.2, 0.8, .,   0.4, 0.6]   |o| = 4   padding in the middle
  row 1  S = [0.3, 0.0, 0.3, 0.3, 0.1]   |o| = 5   three-way tie at the top-k boundary
  row 2  S = [.,   .,   1.1, .,   .  ]   |o| = 1   one token
  row 3  all padding                      |o| = 0   empty response

TAS (m = 0.9):
  s = [(0.2 + 0.8 + 0.4 + 0.6) / 4, (0.3 + 0 + 0.3 + 0.3 + 0.1) / 5, 1.1 / 1]
    = [2.0 / 4, 1.0 / 5, 1.1] = [0.5, 0.2, 1.1]                    (row 3 empty: no score)
  min 0.2, max 1.1, spread 0.9
  n = [(0.5 - 0.2) / 0.9, 0, 1] = [1/3, 0, 1];  mean n = (4/3) / 3 = 4/9
  (1 - m) / mean n = 0.1 * 9/4 = 0.225
  f = 0.9 + 0.225 n = [0.9 + 0.075, 0.9, 0.9 + 0.225] = [0.975, 0.9, 1.125];  row 3: 1
  check: mean f over rows 0-2 = (0.975 + 0.9 + 1.125) / 3 = 3.0 / 3 = 1
TGF (p = 0.4), k = ceil(0.4 |o|):
  row 0: k = ceil(1.6) = 2 -> the two largest of {t0: 0.2, t1: 0.8, t3: 0.4, t4: 0.6} = t1, t4
  row 1: k = ceil(2.0) = 2 -> 0.3 at t0, t2, t3 tie: the earlier two, t0 and t2
  row 2: k = ceil(0.4) = 1 -> t2 (a one-token response keeps its token)
  row 3: k = 0
A^ = f A [t in K]:
  row 0: 0.975 * 1  = 0.975   at t1, t4
  row 1: 0.9 * -2   = -1.8    at t0, t2
  row 2: 1.125 * .5 = 0.5625  at t2
  row 3: 0

``eps=1e-15`` keeps eps's effect on f (n (1 - m) eps / mean(n)^2 <= 0.51 eps, here 5e-16)
far below the 1e-12 tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_hand_example import other_namespace

NAN = float("nan")
S = np.array([
    [0.2, 0.8, NAN, 0.4, 0.6],
    [0.3, 0.0, 0.3, 0.3, 0.1],
    [-5.0, 7.0, 1.1, NAN, 99.0],
    [NAN, -1.0, 50.0, 0.0, 0.0],
])
MASK = np.array([
    [True, True, False, True, True],
    [True, True, True, True, True],
    [False, False, True, False, False],
    [False] * 5,
])
A = np.array([1.0, -2.0, 0.5, 3.0])

SCALE = np.array([0.975, 0.9, 1.125, 1.0])
KEEP = np.array([
    [False, True, False, False, True],
    [True, False, True, False, False],
    [False, False, True, False, False],
    [False] * 5,
])
SHAPED = np.zeros((4, 5))
SHAPED[0, [1, 4]] = 0.975
SHAPED[1, [0, 2]] = -1.8
SHAPED[2, 2] = 0.5625


def _arrays(backend, *arrays):
    return [backend.asarray(a) for a in arrays]


def test_hand_example(backend, pgpo):
    adv, dep, mask = _arrays(backend, A, S, MASK)
    out = pgpo.vppo_advantages(adv, dep, mask, top_p=0.4, scale_min=0.9, eps=1e-15)
    assert out.advantages.dtype == backend.xp.float64
    np.testing.assert_allclose(backend.to_numpy(out.scale), SCALE, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(backend.to_numpy(out.token_mask), KEEP)
    np.testing.assert_allclose(backend.to_numpy(out.advantages), SHAPED, rtol=0, atol=1e-12)
    # the two parts on their own give the same pieces
    np.testing.assert_allclose(
        backend.to_numpy(pgpo.vppo_trajectory_scale(dep, mask, scale_min=0.9, eps=1e-15)),
        SCALE, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(backend.to_numpy(pgpo.vppo_token_mask(dep, mask, top_p=0.4)),
                                  KEEP)


def test_defaults_are_the_published_recipe(backend, pgpo):
    # top_p = 0.4, scale_min = 0.9 (train_vppo_7b.sh), eps = 1e-8: moves f by < 1e-8
    adv, dep, mask = _arrays(backend, A, S, MASK)
    out = pgpo.vppo_advantages(adv, dep, mask)
    np.testing.assert_allclose(backend.to_numpy(out.advantages), SHAPED, rtol=0, atol=1e-7)
    cfg = pgpo.VPPOConfig()
    assert (cfg.top_p, cfg.scale_min, cfg.range_eps, cfg.eps) == (0.4, 0.9, 1e-6, 1e-8)
    same = pgpo.vppo_advantages(adv, dep, mask, **cfg.advantage_kwargs())
    np.testing.assert_array_equal(backend.to_numpy(same.advantages),
                                  backend.to_numpy(out.advantages))


def test_per_token_advantages_are_accepted(backend, pgpo):
    # (B, T) advantages as frameworks store them: the same result, padding garbage ignored
    per_token = np.where(MASK, A[:, None], NAN)
    adv, dep, mask = _arrays(backend, per_token, S, MASK)
    out = pgpo.vppo_advantages(adv, dep, mask, eps=1e-15)
    np.testing.assert_allclose(backend.to_numpy(out.advantages), SHAPED, rtol=0, atol=1e-12)


def test_smaller_top_p_and_float_rounding_of_k(backend, pgpo):
    # p = 0.2 (the repository's config-class default): row 0 k = ceil(0.8) = 1 -> t1;
    # row 1 k = ceil(1.0) = 1 -> t0 (first of the tie); row 2 k = ceil(0.2) = 1 -> t2
    dep, mask = _arrays(backend, S, MASK)
    keep = backend.to_numpy(pgpo.vppo_token_mask(dep, mask, top_p=0.2))
    want = np.zeros((4, 5), bool)
    want[0, 1] = want[1, 0] = want[2, 2] = True
    np.testing.assert_array_equal(keep, want)
    # 0.3 * 10 = 3.0000000000000004 in float64: k must be 3, not 4; 0.35 * 10 -> 4
    ten = np.arange(10, 0, -1, dtype=np.float64)[None, :]  # strictly decreasing
    full = np.ones((1, 10), bool)
    for p, k in ((0.3, 3), (0.35, 4), (0.7, 7), (1.0, 10), (0.05, 1)):
        got = backend.to_numpy(pgpo.vppo_token_mask(backend.asarray(ten),
                                                    backend.asarray(full), top_p=p))
        np.testing.assert_array_equal(got[0], np.arange(10) < k, err_msg=f"p={p}")


def test_ties_keep_the_earlier_tokens_and_exactly_k(backend, pgpo):
    # all-zero dependency: every token ties, so the first k tokens are kept; TAS has
    # no spread (max s = min s = 0) and every factor is 1
    dep = np.zeros((3, 6))
    mask = np.array([[True] * 6, [False, True, False, True, True, False],
                     [False, False, False, False, False, True]])
    out = pgpo.vppo_advantages(*_arrays(backend, np.array([1.0, 2.0, -1.0]), dep, mask),
                               top_p=0.5)
    keep = backend.to_numpy(out.token_mask)
    # k = ceil(0.5 * [6, 3, 1]) = [3, 2, 1]
    want = np.zeros((3, 6), bool)
    want[0, :3] = True
    want[1, [1, 3]] = True
    want[2, 5] = True
    np.testing.assert_array_equal(keep, want)
    np.testing.assert_array_equal(backend.to_numpy(out.scale), np.ones(3))
    np.testing.assert_array_equal(backend.to_numpy(out.advantages),
                                  want * np.array([[1.0], [2.0], [-1.0]]))


def test_single_token_responses(backend, pgpo):
    # each response one token: TGF keeps it; TAS still ranks the trajectories.
    # s = [0, 1, 3], n = [0, 1/3, 1], mean 4/9, f = 0.9 + 0.225 n = [0.9, 0.975, 1.125]
    dep = np.array([[0.0, 9.0], [1.0, 9.0], [3.0, 9.0]])
    mask = np.array([[True, False]] * 3)
    out = pgpo.vppo_advantages(*_arrays(backend, np.ones(3), dep, mask), eps=1e-15)
    np.testing.assert_array_equal(backend.to_numpy(out.token_mask), mask)
    np.testing.assert_allclose(backend.to_numpy(out.scale), [0.9, 0.975, 1.125],
                               rtol=0, atol=1e-12)


def test_no_spread_turns_shaping_off(backend, pgpo):
    # one non-empty response, or scores within range_eps of each other: f = 1
    dep = np.array([[0.3, 0.3], [0.3, 0.3 + 1e-6]])  # s = [0.3, 0.3 + 5e-7]
    mask = np.ones((2, 2), bool)
    f = backend.to_numpy(pgpo.vppo_trajectory_scale(*_arrays(backend, dep, mask)))
    np.testing.assert_array_equal(f, [1.0, 1.0])
    f = backend.to_numpy(pgpo.vppo_trajectory_scale(*_arrays(backend, dep, mask),
                                                    range_eps=1e-7, eps=1e-15))
    np.testing.assert_allclose(f, [0.9, 1.1], rtol=0, atol=1e-9)  # n = [0, 1], mean 1/2
    one = np.array([[True, True], [False, False]])
    f = backend.to_numpy(pgpo.vppo_trajectory_scale(*_arrays(backend, dep, one)))
    np.testing.assert_array_equal(f, [1.0, 1.0])


def test_score_range_from_a_larger_batch(backend, pgpo):
    # normalise with the mini-batch range (0.2, 0.8) instead of the batch's (0.2, 1.1):
    # n = clip([0.3, 0, 0.9] / 0.6, 0, 1) = [0.5, 0, 1], mean 0.5, f = 0.9 + 0.2 n
    dep, mask = _arrays(backend, S, MASK)
    f = backend.to_numpy(pgpo.vppo_trajectory_scale(dep, mask, score_range=(0.2, 0.8),
                                                    eps=1e-15))
    np.testing.assert_allclose(f, [1.0, 0.9, 1.1, 1.0], rtol=0, atol=1e-12)
    xp = backend.xp
    lo, hi = xp.asarray(0.2, dtype=xp.float64), xp.asarray(0.8, dtype=xp.float64)
    f2 = backend.to_numpy(pgpo.vppo_trajectory_scale(dep, mask, score_range=(lo, hi),
                                                     eps=1e-15))
    np.testing.assert_array_equal(f2, f)


def test_ablations_and_the_base_algorithm(backend, pgpo):
    adv, dep, mask = _arrays(backend, A, S, MASK)
    base = pgpo.vppo_advantages(adv, dep, mask, **pgpo.VPPOConfig.ablation("base")
                                .advantage_kwargs())
    np.testing.assert_array_equal(backend.to_numpy(base.advantages),
                                  np.where(MASK, A[:, None], 0.0))
    tas = pgpo.vppo_advantages(adv, dep, mask, token_filtering=False, eps=1e-15)
    np.testing.assert_allclose(backend.to_numpy(tas.advantages),
                               np.where(MASK, (SCALE * A)[:, None], 0.0), rtol=0, atol=1e-12)
    tgf = pgpo.vppo_advantages(adv, dep, mask, trajectory_shaping=False)
    np.testing.assert_array_equal(backend.to_numpy(tgf.advantages),
                                  np.where(KEEP, A[:, None], 0.0))
    # scale_min = 1: M = 1 + 0 / mean n, every factor 1
    f = backend.to_numpy(pgpo.vppo_trajectory_scale(dep, mask, scale_min=1.0))
    np.testing.assert_array_equal(f, np.ones(4))


def test_random_batches_keep_exactly_k_largest_and_average_one(backend, pgpo):
    rng = np.random.default_rng(0)
    for trial in range(5):
        dep = np.round(rng.exponential(size=(6, 13)), 1)  # rounding makes ties
        mask = rng.random((6, 13)) < 0.6
        mask[0] = True
        mask[1] = False
        p = [0.2, 0.4, 0.5, 0.75, 1.0][trial]
        out = pgpo.vppo_advantages(*_arrays(backend, np.ones(6), dep, mask), top_p=p)
        keep = backend.to_numpy(out.token_mask)
        n = mask.sum(1)
        np.testing.assert_array_equal(keep.sum(1), np.ceil(np.round(p * n, 9)).astype(int))
        assert not np.any(keep & ~mask)
        for i in range(6):
            kept, dropped = dep[i][keep[i]], dep[i][mask[i] & ~keep[i]]
            if kept.size and dropped.size:
                assert kept.min() >= dropped.max()
        f = backend.to_numpy(out.scale)
        s = (dep * mask).sum(1) / np.maximum(n, 1)
        valid = n > 0
        # independent route: the repository's map written out with numpy
        lo, hi = s[valid].min(), s[valid].max()
        nn = (s - lo) / (hi - lo)
        target_max = 0.9 + (1 - 0.9) / (nn[valid].mean() + 1e-8)
        want = np.where(valid, 0.9 + nn * (target_max - 0.9), 1.0)
        np.testing.assert_allclose(f, want, rtol=1e-12)
        assert f[valid].mean() == pytest.approx(1.0, abs=1e-7)
        assert f[valid].min() == pytest.approx(0.9, abs=1e-12)


def test_loss_divides_by_all_response_tokens(backend, pgpo):
    # The repository's loss: clipped loss x TGF mask, token-mean over *all* response
    # tokens. With ratios inside the clip range the per-token loss is -A^ r, so the loss
    # is -sum_{kept} f A r / (number of response tokens), here 4 + 5 + 1 = 10 tokens.
    rng = np.random.default_rng(1)
    logp_old = np.log(rng.uniform(0.2, 0.9, size=(4, 5)))
    logp = logp_old + rng.uniform(-0.05, 0.05, size=(4, 5))
    ratio = np.exp(logp - logp_old)
    want = -(SHAPED * ratio)[MASK].sum() / 10
    adv, dep, mask = _arrays(backend, A, S, MASK)
    shaped = pgpo.vppo_advantages(adv, dep, mask, eps=1e-15).advantages
    loss, _ = pgpo.policy_loss(backend.asarray(logp), backend.asarray(logp_old), shaped, mask,
                               **pgpo.VPPOConfig().loss_kwargs())
    assert float(backend.to_numpy(loss)) == pytest.approx(want, rel=1e-10)


def test_dependency_estimate_matches_vppos(backend, pgpo):
    # VPPO's dependency: d = clip(log pi_aug - log pi_old, -20, 20), k3 = e^d - d - 1,
    # clamped to [0, 10]. sampled_token_dependency(k3, clip=10) with the real-image
    # log-probs first and the perturbed ones second gives the same values.
    old = np.array([[-1.0, -0.5, -3.0, -0.1, -30.0]])
    aug = np.array([[-1.0, -2.0, -0.2, -26.0, -0.01]])
    d = np.clip(aug - old, -20, 20)
    want = np.clip(np.exp(d) - d - 1, 0, 10)
    # by hand: d = [0, -1.5, 2.8, -25.9 -> -20, 29.99 -> 20]
    #   k3 = [0, e^-1.5 + 0.5 = 0.7231, e^2.8 - 3.8 = 12.64 -> 10, 19 -> 10, big -> 10]
    np.testing.assert_allclose(want, [[0.0, math.exp(-1.5) + 0.5, 10, 10, 10]], rtol=1e-12)
    got = pgpo.sampled_token_dependency(backend.asarray(old), backend.asarray(aug),
                                        backend.asarray(np.ones((1, 5), bool)),
                                        **pgpo.VPPOConfig().dependency_kwargs())
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs, match", [
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(scale_min=-0.1), "scale_min"),
    (dict(scale_min=1.2), "scale_min"),
    (dict(eps=0.0), "eps"),
    (dict(range_eps=-1.0), "range_eps"),
    (dict(score_range=(0.8, 0.2)), "score_range"),
    (dict(score_range=(0.0, float("inf"))), "score_range"),
    (dict(score_range=0.5), "score_range"),
])
def test_bad_hyperparameters(backend, pgpo, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pgpo.vppo_advantages(*_arrays(backend, A, S, MASK), **kwargs)


def test_bad_arrays(backend, pgpo):
    adv, dep, mask = _arrays(backend, A, S, MASK)
    with pytest.raises(TypeError, match="trajectory_shaping"):
        pgpo.vppo_advantages(adv, dep, mask, trajectory_shaping=1)
    with pytest.raises(TypeError, match="response_mask"):
        pgpo.vppo_advantages(adv, dep, backend.asarray(MASK.astype(np.float64)))
    bad = S.copy()
    bad[0, 0] = -0.1  # negative on a response token (a KL must be >= 0)
    with pytest.raises(ValueError, match="dependency"):
        pgpo.vppo_token_mask(backend.asarray(bad), mask)
    bad[0, 0] = NAN
    with pytest.raises(ValueError, match="dependency"):
        pgpo.vppo_trajectory_scale(backend.asarray(bad), mask)
    with pytest.raises(ValueError, match="advantages"):
        pgpo.vppo_advantages(backend.asarray(A[:3]), dep, mask)
    with pytest.raises(ValueError, match="response_mask"):
        pgpo.vppo_advantages(adv, dep, backend.asarray(MASK[:, :4]))
    with pytest.raises(ValueError, match="dependency"):
        pgpo.vppo_advantages(adv, backend.asarray(S[0]), mask)
    with pytest.raises(TypeError, match="dependency"):
        pgpo.vppo_advantages(adv, other_namespace(backend, S), mask)


def test_config_validates_and_routes(pgpo):
    cfg = pgpo.VPPOConfig()
    assert cfg.loss_kwargs() == dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0,
                                     aggregation="token-mean")
    assert cfg.dependency_kwargs() == dict(estimator="k3", clip=10.0)
    assert pgpo.VPPOConfig.ablation("tgf_only").trajectory_shaping is False
    assert pgpo.VPPOConfig.ablation("tas_only").token_filtering is False
    assert cfg.replace(top_p=0.2).top_p == 0.2
    for kwargs, match in ((dict(top_p=0), "top_p"), (dict(scale_min=2), "scale_min"),
                          (dict(estimator="exact"), "estimator"),
                          (dict(patch_size=0), "patch_size"),
                          (dict(patch_drop_prob=1.5), "patch_drop_prob"),
                          (dict(dual_clip=1.0), "dual_clip")):
        with pytest.raises(ValueError, match=match):
            pgpo.VPPOConfig(**kwargs)
    with pytest.raises(ValueError, match="name"):
        pgpo.VPPOConfig.ablation("nope")
    with pytest.raises(Exception):
        cfg.top_p = 0.3  # frozen


def test_traces_under_jax_jit(pgpo):
    import functools

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    fn = jax.jit(functools.partial(pgpo.vppo_advantages, top_p=0.4, scale_min=0.9, eps=1e-15))
    out = fn(jnp.asarray(A), jnp.asarray(S), jnp.asarray(MASK))
    np.testing.assert_allclose(np.asarray(out.advantages), SHAPED, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(out.token_mask), KEEP)


# ---------------------------------------------------------------------------------------
# vppo_diagnostics on the hand example: 10 response tokens (rows 0-2), 5 of them kept
# ---------------------------------------------------------------------------------------


def test_diagnostics_hand_values(backend, pgpo):
    adv, dep, mask = _arrays(backend, A, S, MASK)
    out = pgpo.vppo_advantages(adv, dep, mask, top_p=0.4, scale_min=0.9, eps=1e-15)
    d = {k: float(backend.to_numpy(v)) for k, v in pgpo.vppo_diagnostics(
        dep, mask, scale=out.scale, token_mask=out.token_mask).items()}
    assert set(d) == {"dependency_mean", "dependency_max", "scale_mean", "scale_min",
                      "scale_max", "kept_frac", "kept_tokens", "kept_dependency_frac"}
    # S summed: row 0 2.0, row 1 1.0, row 2 1.1 -> 4.1 over 4 + 5 + 1 = 10 tokens
    assert d["dependency_mean"] == pytest.approx(0.41, rel=1e-12)
    assert d["dependency_max"] == pytest.approx(1.1, rel=1e-12)
    # f = [0.975, 0.9, 1.125] on the non-empty rows (row 3's 1 is not counted)
    assert d["scale_mean"] == pytest.approx(1.0, rel=1e-12)
    assert d["scale_min"] == pytest.approx(0.9, rel=1e-12)
    assert d["scale_max"] == pytest.approx(1.125, rel=1e-12)
    # K: 2 + 2 + 1 = 5 of 10 tokens, 5/3 per non-empty response
    assert d["kept_frac"] == pytest.approx(0.5, rel=1e-12)
    assert d["kept_tokens"] == pytest.approx(5 / 3, rel=1e-12)
    # S on K: 0.8 + 0.6, 0.3 + 0.3, 1.1 = 3.1 of 4.1
    assert d["kept_dependency_frac"] == pytest.approx(3.1 / 4.1, rel=1e-12)


def test_diagnostics_empty_or_blind_batch_is_zero_not_nan(backend, pgpo):
    dep = backend.asarray(np.zeros((2, 3)))
    none = backend.asarray(np.zeros((2, 3), dtype=bool))
    d = pgpo.vppo_diagnostics(dep, none, scale=backend.asarray(np.ones(2)), token_mask=none)
    assert all(float(backend.to_numpy(v)) == 0.0 for v in d.values()), d
    # S = 0 everywhere on real tokens: nothing to keep a share of
    full = backend.asarray(np.ones((2, 3), dtype=bool))
    d = pgpo.vppo_diagnostics(dep, full, scale=backend.asarray(np.ones(2)), token_mask=full)
    assert float(backend.to_numpy(d["kept_dependency_frac"])) == 0.0
    assert float(backend.to_numpy(d["kept_frac"])) == 1.0


def test_diagnostics_errors(backend, pgpo):
    adv, dep, mask = _arrays(backend, A, S, MASK)
    out = pgpo.vppo_advantages(adv, dep, mask)
    with pytest.raises(ValueError, match="token_mask"):  # a kept token on padding
        pgpo.vppo_diagnostics(dep, mask, scale=out.scale,
                              token_mask=backend.asarray(np.ones(MASK.shape, dtype=bool)))
    with pytest.raises(TypeError, match="token_mask"):
        pgpo.vppo_diagnostics(dep, mask, scale=out.scale,
                              token_mask=backend.asarray(KEEP.astype(np.float64)))
    with pytest.raises(ValueError, match="scale"):
        pgpo.vppo_diagnostics(dep, mask, scale=backend.asarray(SCALE[:3]),
                              token_mask=out.token_mask)
    with pytest.raises(ValueError, match="token_mask"):
        pgpo.vppo_diagnostics(dep, mask, scale=out.scale,
                              token_mask=backend.asarray(KEEP[:, :4]))
