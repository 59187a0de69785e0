"""Unit tests of the clipped surrogate (policy_loss), aggregate and masked_mean on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_hand_example import other_namespace

# Hand example, B = 2, T = 4, clip range [1 - 0.2, 1 + 0.28] = [0.8, 1.28];
# loss_t = max(-A r, -A clip(r, 0.8, 1.28)):
#   row 0 t0: A =  1,   r = 1.5 -> max(-1.5, -1.28) = -1.28   (clipped high)
#         t1: A = -1,   r = 0.5 -> max( 0.5,  0.8 ) =  0.8    (clipped low)
#         t2: A = -1,   r = 1.5 -> max( 1.5,  1.28) =  1.5    (not clipped)
#         t3: A = -0.5, r = 1.2 -> max( 0.6,  0.6 ) =  0.6    (inside the range)
#   row 1 t0: A =  1,   r = 0.5 -> max(-0.5, -0.8 ) = -0.5    (not clipped)
#         t1: A =  2,   r = 1   -> -2
#         t2, t3: padding (garbage log-probs and advantages)
# Row sums: 1.62 and -2.5; row lengths 4 and 2; total 6 tokens.
RATIO = np.array([[1.5, 0.5, 1.5, 1.2], [0.5, 1.0, 1.0, 1.0]])
ADV = np.array([[1.0, -1.0, -1.0, -0.5], [1.0, 2.0, 1e30, np.nan]])
MASK = np.array([[True, True, True, True], [True, True, False, False]])
LOGP_OLD = np.array([[-1.0, -2.0, -0.5, -3.0], [-1.5, -0.7, np.nan, -np.inf]])
LOGP = np.where(MASK, LOGP_OLD + np.log(RATIO), np.inf)
PER_TOKEN = np.array([[-1.28, 0.8, 1.5, 0.6], [-0.5, -2.0, 0.0, 0.0]])
HAND_LOSS = {
    "token-mean": (1.62 - 2.5) / 6,                  # -0.146667
    "seq-mean-token-mean": (1.62 / 4 - 2.5 / 2) / 2,  # (0.405 - 1.25) / 2 = -0.4225
    "seq-mean-token-sum": (1.62 - 2.5) / 2,           # -0.44
    "seq-mean-token-sum-norm": (1.62 / 4 - 2.5 / 4) / 2,  # divided by T = 4: -0.11
}


def _args(backend, logp=LOGP, logp_old=LOGP_OLD, adv=ADV, mask=MASK):
    return (backend.asarray(logp), backend.asarray(logp_old), backend.asarray(adv),
            backend.asarray(mask))


def _scalar(backend, x) -> float:
    a = backend.to_numpy(x)
    assert a.shape == ()
    return float(a)


@pytest.mark.parametrize("aggregation", sorted(HAND_LOSS))
def test_policy_loss_hand_values(backend, pgpo, aggregation):
    loss, metrics = pgpo.policy_loss(*_args(backend), aggregation=aggregation)
    assert loss.dtype == backend.xp.float64
    assert _scalar(backend, loss) == pytest.approx(HAND_LOSS[aggregation], rel=1e-12)


def test_policy_loss_default_is_dapo_token_mean(backend, pgpo):
    loss, _ = pgpo.policy_loss(*_args(backend))
    assert _scalar(backend, loss) == pytest.approx(-0.88 / 6, rel=1e-12)


def test_policy_loss_metrics_hand_values(backend, pgpo):
    _, m = pgpo.policy_loss(*_args(backend))
    # clipped: row 0 t0 (high) and t1 (low) out of 6 tokens
    assert _scalar(backend, m["clip_frac"]) == pytest.approx(2 / 6, rel=1e-15)
    assert _scalar(backend, m["clip_frac_low"]) == pytest.approx(1 / 6, rel=1e-15)
    assert _scalar(backend, m["clip_frac_high"]) == pytest.approx(1 / 6, rel=1e-15)
    assert _scalar(backend, m["dual_clip_frac"]) == 0.0
    # ratios 1.5, .5, 1.5, 1.2, .5, 1 -> mean 6.2 / 6, max 1.5
    assert _scalar(backend, m["ratio_mean"]) == pytest.approx(6.2 / 6, rel=1e-12)
    assert _scalar(backend, m["ratio_max"]) == pytest.approx(1.5, rel=1e-12)
    # advantages 1, -1, -1, -.5, 1, 2 -> mean 1.5 / 6
    assert _scalar(backend, m["advantage_mean"]) == pytest.approx(0.25, rel=1e-15)
    # k3 of KL(pi_old || pi) with x ~ pi_old, r = pi / pi_old: (r - 1) - log r
    #   r = 1.5: 0.5 - log 1.5 = 0.0945;  r = 0.5: log 2 - 0.5 = 0.1931;  r = 1.2: 0.0177; r = 1: 0
    k3 = 2 * (0.5 - math.log(1.5)) + 2 * (math.log(2) - 0.5) + (0.2 - math.log(1.2))
    assert _scalar(backend, m["approx_kl"]) == pytest.approx(k3 / 6, rel=1e-10)


def test_policy_loss_equal_policies(backend, pgpo):
    # logp = logp_old: r = 1 everywhere, loss_t = -A_t, nothing clipped, approx_kl = 0
    adv = np.array([[0.5, -2.0, 1.5], [3.0, 0.0, -1.0]])
    mask = np.array([[True, True, False], [True, True, True]])
    lp = np.full((2, 3), -1.25)
    loss, m = pgpo.policy_loss(*_args(backend, lp, lp, adv, mask))
    # -(0.5 - 2 + 3 + 0 - 1) / 5 = -0.1
    assert _scalar(backend, loss) == pytest.approx(-0.1, rel=1e-12)
    assert _scalar(backend, m["clip_frac"]) == 0.0
    assert _scalar(backend, m["approx_kl"]) == 0.0


def test_policy_loss_per_response_advantages(backend, pgpo):
    # (B,) advantages equal the same values repeated along T
    adv = np.array([0.7, -1.3])
    full = np.repeat(adv[:, None], 4, axis=1)
    for aggregation in HAND_LOSS:
        a, _ = pgpo.policy_loss(*_args(backend, adv=adv), aggregation=aggregation)
        b, _ = pgpo.policy_loss(*_args(backend, adv=full), aggregation=aggregation)
        assert _scalar(backend, a) == pytest.approx(_scalar(backend, b), rel=1e-14)
    # row 0: A = .7 at r = 1.5, .5, 1.5, 1.2 -> -.7 * [1.28, .5, 1.28, 1.2] (high clip on 1.5)
    # row 1: A = -1.3 at r = .5, 1 -> 1.3 * [.8, 1] (low clip on .5)
    a, m = pgpo.policy_loss(*_args(backend, adv=adv))
    expected = (-0.7 * (1.28 + 0.5 + 1.28 + 1.2) + 1.3 * (0.8 + 1.0)) / 6
    assert _scalar(backend, a) == pytest.approx(expected, rel=1e-12)
    assert _scalar(backend, m["clip_frac"]) == pytest.approx(3 / 6, rel=1e-15)


def test_policy_loss_dual_clip(backend, pgpo):
    # dual_clip = 3 bounds the loss of negative advantages at -A * 3:
    #   A = -1, r = 5 -> max(5, 1.28) = 5 -> min(5, 3) = 3   (dual clip active)
    #   A = -1, r = 2 -> max(2, 1.28) = 2                     (below the bound)
    #   A =  1, r = 5 -> max(-5, -1.28) = -1.28               (positive A: no dual clip)
    ratio = np.array([[5.0, 2.0, 5.0]])
    adv = np.array([[-1.0, -1.0, 1.0]])
    mask = np.ones((1, 3), bool)
    lp_old = np.array([[-2.0, -1.0, -3.0]])
    args = _args(backend, lp_old + np.log(ratio), lp_old, adv, mask)
    loss, m = pgpo.policy_loss(*args, dual_clip=3.0)
    assert _scalar(backend, loss) == pytest.approx((3.0 + 2.0 - 1.28) / 3, rel=1e-12)
    assert _scalar(backend, m["dual_clip_frac"]) == pytest.approx(1 / 3, rel=1e-15)
    assert _scalar(backend, m["clip_frac_high"]) == pytest.approx(1 / 3, rel=1e-15)
    loss, _ = pgpo.policy_loss(*args)  # without dual clip: (5 + 2 - 1.28) / 3
    assert _scalar(backend, loss) == pytest.approx((5.0 + 2.0 - 1.28) / 3, rel=1e-12)


def test_policy_loss_clip_range(backend, pgpo):
    # symmetric PPO clip 0.2 / 0.2: row 0 t0 becomes max(-1.5, -1.2) = -1.2
    # -> token-mean (-1.2 + .8 + 1.5 + .6 - .5 - 2) / 6 = -0.8 / 6
    loss, _ = pgpo.policy_loss(*_args(backend), clip_low=0.2, clip_high=0.2)
    assert _scalar(backend, loss) == pytest.approx(-0.8 / 6, rel=1e-12)


def test_policy_loss_normalizer_and_norm_length(backend, pgpo):
    args = _args(backend)
    loss, _ = pgpo.policy_loss(*args, normalizer=10.0)  # token sum -0.88 / 10
    assert _scalar(backend, loss) == pytest.approx(-0.088, rel=1e-12)
    loss, _ = pgpo.policy_loss(*args, aggregation="seq-mean-token-sum", normalizer=4)
    assert _scalar(backend, loss) == pytest.approx(-0.88 / 4, rel=1e-12)
    loss, _ = pgpo.policy_loss(*args, aggregation="seq-mean-token-mean", normalizer=4)
    assert _scalar(backend, loss) == pytest.approx((0.405 - 1.25) / 4, rel=1e-12)
    # Dr. GRPO with a fixed length 2: (1.62 / 2 - 2.5 / 2) / 2 = -0.22
    loss, _ = pgpo.policy_loss(*args, aggregation="seq-mean-token-sum-norm", norm_length=2)
    assert _scalar(backend, loss) == pytest.approx(-0.22, rel=1e-12)


def _loop_loss(logp, logp_old, adv, mask, *, clip_low, clip_high, aggregation):
    """Independent route: plain Python loops over rows and tokens."""
    b_rows, t_len = mask.shape
    row_sums, row_counts = [], []
    for b in range(b_rows):
        total, count = 0.0, 0
        for t in range(t_len):
            if not mask[b, t]:
                continue
            r = math.exp(logp[b, t] - logp_old[b, t])
            a = adv[b, t]
            total += max(-a * r, -a * min(max(r, 1 - clip_low), 1 + clip_high))
            count += 1
        row_sums.append(total)
        row_counts.append(count)
    if aggregation == "token-mean":
        return sum(row_sums) / max(sum(row_counts), 1)
    if aggregation == "seq-mean-token-mean":
        return sum(s / max(c, 1) for s, c in zip(row_sums, row_counts)) / b_rows
    if aggregation == "seq-mean-token-sum":
        return sum(row_sums) / b_rows
    return sum(s / t_len for s in row_sums) / b_rows


@pytest.mark.parametrize("aggregation", sorted(HAND_LOSS))
def test_policy_loss_matches_python_loop(backend, pgpo, aggregation):
    rng = np.random.default_rng(0)
    logp_old = -rng.exponential(size=(4, 7))
    logp = logp_old + rng.normal(size=(4, 7)) * 0.4
    adv = rng.normal(size=(4, 7))
    mask = rng.random((4, 7)) < 0.7
    mask[2] = False  # an empty row counts as 0 in the seq-mean modes
    mask[3, 0] = True
    loss, m = pgpo.policy_loss(*_args(backend, logp, logp_old, adv, mask),
                               clip_low=0.1, clip_high=0.3, aggregation=aggregation)
    expected = _loop_loss(logp, logp_old, adv, mask, clip_low=0.1, clip_high=0.3,
                          aggregation=aggregation)
    assert _scalar(backend, loss) == pytest.approx(expected, rel=1e-12)
    ratio = np.exp(logp - logp_old)[mask]
    a = adv[mask]
    clipped = ((ratio < 0.9) & (a < 0)) | ((ratio > 1.3) & (a > 0))
    assert _scalar(backend, m["clip_frac"]) == pytest.approx(clipped.mean(), rel=1e-14)


def test_policy_loss_half_precision_numpy(pgpo):
    lp = LOGP.astype(np.float16)
    lo = LOGP_OLD.astype(np.float16)
    loss, _ = pgpo.policy_loss(lp, lo, ADV[:, :1].reshape(2).astype(np.float16), MASK)
    assert loss.dtype == np.float32


def test_policy_loss_errors_name_the_argument(backend, pgpo):
    f = pgpo.policy_loss
    a = backend.asarray
    lp = np.full((2, 3), -1.0)
    adv = np.ones((2, 3))
    m = np.ones((2, 3), bool)
    ok = (a(lp), a(lp), a(adv), a(m))
    with pytest.raises(ValueError, match="logp"):
        f(a(lp[0]), a(lp[0]), a(adv[0]), a(m[0]))
    with pytest.raises(ValueError, match="logp_old"):
        f(a(lp), a(lp[:, :2]), a(adv), a(m))
    with pytest.raises(ValueError, match="response_mask"):
        f(a(lp), a(lp), a(adv), a(m[:1]))
    with pytest.raises(TypeError, match="response_mask"):
        f(a(lp), a(lp), a(adv), a(m.astype(np.int32)))
    with pytest.raises(ValueError, match="advantages"):
        f(a(lp), a(lp), a(np.ones(3)), a(m))
    with pytest.raises(ValueError, match="advantages"):
        f(a(lp), a(lp), a(np.ones((2, 1))), a(m))
    with pytest.raises(ValueError, match="advantages"):
        f(a(lp), a(lp), a(np.ones((2, 3, 1))), a(m))
    with pytest.raises(TypeError, match="advantages"):
        f(a(lp), a(lp), a(adv.astype(np.int64)), a(m))
    with pytest.raises(TypeError, match="logp"):
        f(a(lp.astype(np.int64)), a(lp), a(adv), a(m))
    for bad in (np.nan, np.inf):
        x = lp.copy()
        x[1, 1] = bad
        with pytest.raises(ValueError, match="logp"):
            f(a(x), a(lp), a(adv), a(m))
        with pytest.raises(ValueError, match="logp_old"):
            f(a(lp), a(x), a(adv), a(m))
        y = adv.copy()
        y[0, 2] = bad
        with pytest.raises(ValueError, match="advantages"):
            f(a(lp), a(lp), a(y), a(m))
    for kwargs, exc, name in [
        (dict(clip_low=1.5), ValueError, "clip_low"),
        (dict(clip_low=-0.1), ValueError, "clip_low"),
        (dict(clip_high=-0.1), ValueError, "clip_high"),
        (dict(dual_clip=1.0), ValueError, "dual_clip"),
        (dict(dual_clip=0.5), ValueError, "dual_clip"),
        (dict(aggregation="sum"), ValueError, "aggregation"),
        (dict(normalizer=0.0), ValueError, "normalizer"),
        (dict(norm_length=-1), ValueError, "norm_length"),
    ]:
        with pytest.raises(exc, match=name):
            f(*ok, **kwargs)
    with pytest.raises(TypeError, match="advantages"):
        f(a(lp), a(lp), other_namespace(backend, adv), a(m))
    with pytest.raises(TypeError):  # hyper-parameters are keyword-only
        f(*ok, 0.2)


# ---------------------------------------------------------------------------------------
# aggregate and masked_mean
# ---------------------------------------------------------------------------------------

def test_aggregate_hand_values(backend, pgpo):
    # per-token losses PER_TOKEN with garbage on padding; row sums 1.62 and -2.5
    per_token = np.where(MASK, PER_TOKEN, 1e6)
    x, m = backend.asarray(per_token), backend.asarray(MASK)
    for aggregation, expected in HAND_LOSS.items():
        out = pgpo.aggregate(x, m, aggregation=aggregation)
        assert _scalar(backend, out) == pytest.approx(expected, rel=1e-12)
    assert _scalar(backend, pgpo.aggregate(x, m)) == pytest.approx(-0.88 / 6, rel=1e-12)
    out = pgpo.aggregate(x, m, aggregation="seq-mean-token-sum-norm", norm_length=8)
    assert _scalar(backend, out) == pytest.approx((1.62 - 2.5) / 8 / 2, rel=1e-12)
    out = pgpo.aggregate(x, m, normalizer=2.0)
    assert _scalar(backend, out) == pytest.approx(-0.44, rel=1e-12)


def test_aggregate_empty_rows(backend, pgpo):
    # row 1 empty: token-mean over row 0 only; seq-mean modes count it as 0 among B = 2
    x = backend.asarray(np.array([[1.0, 3.0], [5.0, 7.0]]))
    m = backend.asarray(np.array([[True, True], [False, False]]))
    assert _scalar(backend, pgpo.aggregate(x, m)) == pytest.approx(2.0)
    assert _scalar(backend, pgpo.aggregate(x, m, aggregation="seq-mean-token-mean")) == \
        pytest.approx(1.0)
    assert _scalar(backend, pgpo.aggregate(x, m, aggregation="seq-mean-token-sum")) == \
        pytest.approx(2.0)
    # nothing at all: 0, not NaN
    none = backend.asarray(np.zeros((2, 2), bool))
    for aggregation in HAND_LOSS:
        assert _scalar(backend, pgpo.aggregate(x, none, aggregation=aggregation)) == 0.0


def test_aggregate_errors(backend, pgpo):
    a = backend.asarray
    x = np.zeros((2, 3))
    m = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="aggregation"):
        pgpo.aggregate(a(x), a(m), aggregation="mean")
    with pytest.raises(ValueError, match="per_token"):
        pgpo.aggregate(a(x[0]), a(m[0]))
    with pytest.raises(ValueError, match="response_mask"):
        pgpo.aggregate(a(x), a(m[:, :2]))
    with pytest.raises(TypeError, match="response_mask"):
        pgpo.aggregate(a(x), a(x))
    with pytest.raises(ValueError, match="normalizer"):
        pgpo.aggregate(a(x), a(m), normalizer=-1.0)
    with pytest.raises(ValueError, match="norm_length"):
        pgpo.aggregate(a(x), a(m), aggregation="seq-mean-token-sum-norm", norm_length=0)


def test_masked_mean(backend, pgpo):
    # [[1, 2, (9)], [(9), (9), (9)], [4, 5, 6]] -> all: 18 / 5 = 3.6; rows: [1.5, 0, 5]
    v = np.array([[1.0, 2.0, 9.0], [9.0, 9.0, 9.0], [4.0, 5.0, 6.0]])
    m = np.array([[True, True, False], [False] * 3, [True] * 3])
    x, mm = backend.asarray(v), backend.asarray(m)
    assert _scalar(backend, pgpo.masked_mean(x, mm)) == pytest.approx(3.6, rel=1e-15)
    np.testing.assert_allclose(backend.to_numpy(pgpo.masked_mean(x, mm, axis=-1)), [1.5, 0, 5])
    # columns: [2.5, 3.5, 6]
    np.testing.assert_allclose(backend.to_numpy(pgpo.masked_mean(x, mm, axis=0)), [2.5, 3.5, 6])
    with pytest.raises(TypeError, match="mask"):
        pgpo.masked_mean(x, x)
    with pytest.raises(ValueError, match="mask"):
        pgpo.masked_mean(x, backend.asarray(m[:2]))


def test_aggregate_normalizer_replaces_the_divisor_as_given(backend, pgpo):
    """Issue 8: a normalizer below 1 was clamped to 1 (2.0 came back where 4.0 is right)."""
    ones = backend.asarray(np.ones((1, 2)))
    mask = backend.asarray(np.ones((1, 2), dtype=bool))
    for aggregation, want in [("seq-mean-token-sum", 4.0), ("seq-mean-token-mean", 2.0),
                              ("seq-mean-token-sum-norm", 2.0), ("token-mean", 4.0)]:
        got = pgpo.aggregate(ones, mask, aggregation=aggregation, normalizer=0.5)
        assert _scalar(backend, got) == want, aggregation
    # verl's seq-mean-token-sum-norm (no 1/B) is normalizer=1: 2 rows of sum 2, T = 2 -> 2.
    two = backend.asarray(np.ones((2, 2)))
    got = pgpo.aggregate(two, backend.asarray(np.ones((2, 2), dtype=bool)),
                         aggregation="seq-mean-token-sum-norm", normalizer=1)
    assert _scalar(backend, got) == 2.0


@pytest.mark.parametrize("dual_clip", [None, 3.0])
def test_policy_loss_log_ratio_clip_keeps_huge_ratios_finite(backend, pgpo, dual_clip):
    """Issue 8: log r = 90 (and +-inf-like 1e30) is clamped to +-20 before exp, as verl does;
    with A = 0 the loss is exactly 0, and no NaN appears with the dual clip."""
    logp = np.array([[90.0, -90.0, 1e30, 0.5]])
    logp_old = np.zeros((1, 4))
    mask = np.ones((1, 4), dtype=bool)
    for dtype in ("float32", "float64"):
        for adv in ([[0.0, 0.0, 0.0, 0.0]], [[1.0, -1.0, -1.0, 2.0]]):
            a = np.asarray(adv)
            loss, metrics = pgpo.policy_loss(
                backend.asarray(logp, dtype=dtype), backend.asarray(logp_old, dtype=dtype),
                backend.asarray(a, dtype=dtype), backend.asarray(mask), dual_clip=dual_clip)
            value = _scalar(backend, loss)
            assert math.isfinite(value)
            assert all(math.isfinite(_scalar(backend, m)) for m in metrics.values())
            # Per token by hand: r = e^20, e^-20, e^20, e^0.5, clip range [0.8, 1.28].
            r = np.exp(np.clip(logp[0], -20, 20))
            per = np.maximum(-a[0] * r, -a[0] * np.clip(r, 0.8, 1.28))
            if dual_clip is not None:
                per = np.where(a[0] < 0, np.minimum(per, -a[0] * dual_clip), per)
            np.testing.assert_allclose(value, per.mean(), rtol=1e-6 if dtype == "float32" else 1e-12)
            if not np.any(a):
                assert value == 0.0
    with pytest.raises(ValueError, match="log_ratio_clip"):
        pgpo.policy_loss(backend.asarray(logp_old), backend.asarray(logp_old),
                         backend.asarray(logp_old), backend.asarray(mask), log_ratio_clip=0.0)
