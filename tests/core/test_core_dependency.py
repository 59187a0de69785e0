"""Unit tests of the token visual dependency (PGPO Eq. 1): exact KL and sampled estimators.

Every test runs on every backend through the ``backend`` fixture and calls the
implementation under test through the ``pgpo`` fixture (conformance suite).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from core_hand_example import other_namespace

LOG2, LOG3 = math.log(2.0), math.log(3.0)


def _numpy_kl(z_visual: np.ndarray, z_blind: np.ndarray) -> np.ndarray:
    """Direct float64 formula sum_x p log(p / q) over the last axis (independent route)."""
    z_visual = np.asarray(z_visual, np.float64)
    z_blind = np.asarray(z_blind, np.float64)
    with np.errstate(all="ignore"):  # garbage in padded rows is masked out by the callers
        p = np.exp(z_visual - z_visual.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        q = np.exp(z_blind - z_blind.max(-1, keepdims=True))
        q /= q.sum(-1, keepdims=True)
        return np.sum(p * np.log(p / q), axis=-1)


# ---------------------------------------------------------------------------------------
# token_visual_dependency: values
# ---------------------------------------------------------------------------------------

# Hand example, B=1, T=4, V=3 (last token is padding with garbage logits):
#  t0: visual [0, 0, 0]          -> pi_I = (1/3, 1/3, 1/3)
#      blind  [log 2, 0, 0]      -> pi_0 = (1/2, 1/4, 1/4)
#      KL = 1/3 [log(2/3) + 2 log(4/3)] = (1/3) log(32/27)
#  t1: visual [log 3, 0, 0]      -> pi_I = (3/5, 1/5, 1/5)
#      blind  [0, 0, 0]          -> pi_0 = (1/3, 1/3, 1/3)
#      KL = 3/5 log(9/5) + 2/5 log(3/5)
#  t2: equal logits [5, -1, 2] both -> KL = 0 exactly
#  t3: padding, logits [1e4, -1e4, 3] vs [-1e4, 1e4, 0] (finite garbage) -> 0
HAND_VISUAL = [[[0.0, 0.0, 0.0], [LOG3, 0.0, 0.0], [5.0, -1.0, 2.0], [1e4, -1e4, 3.0]]]
HAND_BLIND = [[[LOG2, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, -1.0, 2.0], [-1e4, 1e4, 0.0]]]
HAND_MASK = [[True, True, True, False]]
HAND_KL = [[math.log(32 / 27) / 3, 0.6 * math.log(9 / 5) + 0.4 * math.log(3 / 5), 0.0, 0.0]]


def test_exact_kl_hand_values(backend, pgpo):
    out = pgpo.token_visual_dependency(
        backend.asarray(HAND_VISUAL), backend.asarray(HAND_BLIND), backend.asarray(HAND_MASK))
    assert out.shape == (1, 4)
    assert out.dtype == backend.xp.float64  # float64 input stays float64
    np.testing.assert_allclose(backend.to_numpy(out), HAND_KL, rtol=1e-12, atol=1e-15)
    assert backend.to_numpy(out)[0, 2] == 0.0  # equal logits: exactly 0 (clamped at 0)


def test_exact_kl_two_way_hand_values(backend, pgpo):
    # V=2. visual [0, 0] -> (1/2, 1/2); blind [0, log 3] -> (1/4, 3/4):
    #   KL = 1/2 log(2) + 1/2 log(2/3) = 1/2 log(4/3).
    # Swapped (visual first, so forward KL, not symmetric): (1/4, 3/4) || (1/2, 1/2):
    #   KL = 1/4 log(1/2) + 3/4 log(3/2) = 3/4 log 3 - log 2.
    visual = [[[0.0, 0.0], [0.0, LOG3]]]
    blind = [[[0.0, LOG3], [0.0, 0.0]]]
    out = pgpo.token_visual_dependency(backend.asarray(visual), backend.asarray(blind),
                                       backend.asarray([[True, True]]))
    np.testing.assert_allclose(backend.to_numpy(out),
                               [[0.5 * math.log(4 / 3), 0.75 * LOG3 - LOG2]], rtol=1e-12)


def test_exact_kl_equal_logits_is_zero_and_shift_invariant(backend, pgpo):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 5, 7)) * 3
    mask = np.ones((2, 5), bool)
    out = pgpo.token_visual_dependency(backend.asarray(z), backend.asarray(z),
                                       backend.asarray(mask))
    np.testing.assert_array_equal(backend.to_numpy(out), np.zeros((2, 5)))
    # softmax is shift invariant: adding a per-token constant to the blind logits changes nothing
    shifted = z + rng.normal(size=(2, 5, 1)) * 10
    out = pgpo.token_visual_dependency(backend.asarray(z), backend.asarray(shifted),
                                       backend.asarray(mask))
    np.testing.assert_allclose(backend.to_numpy(out), np.zeros((2, 5)), atol=1e-12)


def test_exact_kl_matches_numpy_direct_formula(backend, pgpo):
    rng = np.random.default_rng(1)
    zv = rng.normal(size=(2, 5, 7)) * 2
    zb = rng.normal(size=(2, 5, 7)) * 2
    mask = rng.random((2, 5)) < 0.7
    out = pgpo.token_visual_dependency(backend.asarray(zv), backend.asarray(zb),
                                       backend.asarray(mask))
    expected = np.where(mask, _numpy_kl(zv, zb), 0.0)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-12, atol=1e-14)


def test_exact_kl_matches_torch_kl_div(backend, pgpo):
    # Independent route: torch.nn.functional.kl_div(input=log q, target=log p) = p (log p - log q)
    import torch

    rng = np.random.default_rng(2)
    zv = rng.normal(size=(2, 5, 7)) * 3
    zb = rng.normal(size=(2, 5, 7)) * 3
    lp = torch.log_softmax(torch.from_numpy(zv), -1)
    lq = torch.log_softmax(torch.from_numpy(zb), -1)
    expected = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)
    mask = np.ones((2, 5), bool)
    out = pgpo.token_visual_dependency(backend.asarray(zv), backend.asarray(zb),
                                       backend.asarray(mask))
    np.testing.assert_allclose(backend.to_numpy(out), expected.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 10, 100])
def test_exact_kl_chunk_size_gives_same_result(backend, pgpo, chunk_size):
    # B*T = 10 tokens: chunks that divide it, do not divide it, and reach or exceed it.
    rng = np.random.default_rng(3)
    zv = rng.normal(size=(2, 5, 7))
    zb = rng.normal(size=(2, 5, 7))
    mask = np.array([[True, False, True, True, True], [True, True, False, False, True]])
    args = (backend.asarray(zv), backend.asarray(zb), backend.asarray(mask))
    full = backend.to_numpy(pgpo.token_visual_dependency(*args))
    chunked = backend.to_numpy(pgpo.token_visual_dependency(*args, chunk_size=chunk_size))
    np.testing.assert_allclose(chunked, full, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(full, np.where(mask, _numpy_kl(zv, zb), 0.0), rtol=1e-12)


def test_exact_kl_temperature(backend, pgpo):
    # temperature 2 halves the logits: visual [0, 0], blind [0, 2 log 3] / 2 = [0, log 3]
    # -> the V=2 hand value 1/2 log(4/3) from above.
    out = pgpo.token_visual_dependency(
        backend.asarray([[[0.0, 0.0]]]), backend.asarray([[[0.0, 2 * LOG3]]]),
        backend.asarray([[True]]), temperature=2.0)
    np.testing.assert_allclose(backend.to_numpy(out), [[0.5 * math.log(4 / 3)]], rtol=1e-12)
    rng = np.random.default_rng(4)
    zv, zb = rng.normal(size=(2, 2, 5, 7)) * 4
    mask = np.ones((2, 5), bool)
    out = pgpo.token_visual_dependency(backend.asarray(zv), backend.asarray(zb),
                                       backend.asarray(mask), temperature=0.7)
    np.testing.assert_allclose(backend.to_numpy(out), _numpy_kl(zv / 0.7, zb / 0.7), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_exact_kl_padding_is_zero_whatever_the_logits(backend, pgpo):
    # Padding at the left, middle and right, with finite garbage and with NaN/inf in the
    # padded logits: the result is exactly 0 there and no error is raised.
    rng = np.random.default_rng(5)
    zv = rng.normal(size=(2, 5, 7))
    zb = rng.normal(size=(2, 5, 7))
    mask = np.array([[False, True, False, True, False], [True, True, True, False, False]])
    zv[0, 0] = [3e4, -3e4, 0.0, 1e4, 0.0, 0.0, 0.0]
    zb[0, 0] = [-3e4, 3e4, 7.0, -1e4, 0.0, 0.0, 0.0]
    zv[0, 2] = [np.nan, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0]
    zb[1, 3] = [np.inf, -np.inf, 0.0, 0.0, 0.0, 0.0, 0.0]
    zv[0, 4] = [1e30, -1e30, 0.0, 0.0, 0.0, 0.0, 0.0]
    out = backend.to_numpy(pgpo.token_visual_dependency(
        backend.asarray(zv), backend.asarray(zb), backend.asarray(mask)))
    assert np.all(out[~mask] == 0.0)
    np.testing.assert_allclose(out[mask], _numpy_kl(zv, zb)[mask], rtol=1e-12)


def test_exact_kl_large_logits_are_stable(backend, pgpo):
    # log-softmax must not overflow: logits (1000, 0) vs (0, 1000) in float64.
    # pi_I = (1, e^-1000), pi_0 = (e^-1000, 1): KL = log(1 / e^-1000) = 1000 (to 1e-300).
    out = pgpo.token_visual_dependency(
        backend.asarray([[[1000.0, 0.0]]]), backend.asarray([[[0.0, 1000.0]]]),
        backend.asarray([[True]]))
    np.testing.assert_allclose(backend.to_numpy(out), [[1000.0]], rtol=1e-12)


def test_exact_kl_half_precision_numpy_runs_in_float32(pgpo):
    rng = np.random.default_rng(6)
    zv = (rng.normal(size=(2, 3, 50)) * 4).astype(np.float16)
    zb = (rng.normal(size=(2, 3, 50)) * 4).astype(np.float16)
    out = pgpo.token_visual_dependency(zv, zb, np.ones((2, 3), bool))
    assert out.dtype == np.float32
    # reference: the same float16 values, computed in float64
    np.testing.assert_allclose(out, _numpy_kl(zv, zb), rtol=2e-5, atol=1e-6)


def test_exact_kl_float32_stays_float32(backend, pgpo):
    rng = np.random.default_rng(7)
    zv = rng.normal(size=(2, 5, 7)).astype(np.float32)
    zb = rng.normal(size=(2, 5, 7)).astype(np.float32)
    out = pgpo.token_visual_dependency(backend.asarray(zv), backend.asarray(zb),
                                       backend.asarray(np.ones((2, 5), bool)))
    assert out.dtype == backend.xp.float32
    np.testing.assert_allclose(backend.to_numpy(out), _numpy_kl(zv, zb), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------
# token_visual_dependency: errors
# ---------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["visual", "blind"])
def test_exact_kl_non_finite_logits_on_response_token_raise(backend, pgpo, bad, which):
    zv = np.zeros((2, 5, 7))
    zb = np.zeros((2, 5, 7))
    (zv if which == "visual" else zb)[1, 1, 2] = bad
    mask = np.array([[True, True, False, True, True], [True, True, False, False, False]])
    with pytest.raises(ValueError, match="logits_visual"):
        pgpo.token_visual_dependency(backend.asarray(zv), backend.asarray(zb),
                                     backend.asarray(mask))


def test_exact_kl_errors_name_the_argument(backend, pgpo):
    f = pgpo.token_visual_dependency
    a = backend.asarray
    z = np.zeros((2, 3, 4))
    m = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="logits_visual"):  # not 3-D
        f(a(z[0]), a(z[0]), a(m[0]))
    with pytest.raises(ValueError, match="logits_blind"):  # shape mismatch, no broadcast
        f(a(z), a(z[:, :, :3]), a(m))
    with pytest.raises(ValueError, match="logits_blind"):
        f(a(z), a(z[:1]), a(m))
    with pytest.raises(TypeError, match="logits_visual"):  # integer logits
        f(a(z.astype(np.int32)), a(z.astype(np.int32)), a(m))
    with pytest.raises(TypeError, match="logits_blind"):  # dtype mismatch
        f(a(z), a(z.astype(np.float32)), a(m))
    with pytest.raises(TypeError, match="response_mask"):  # mask not boolean
        f(a(z), a(z), a(m.astype(np.int32)))
    with pytest.raises(TypeError, match="response_mask"):
        f(a(z), a(z), a(m.astype(np.float64)))
    with pytest.raises(ValueError, match="response_mask"):  # mask shape
        f(a(z), a(z), a(m[:, :2]))
    with pytest.raises(ValueError, match="response_mask"):
        f(a(z), a(z), a(m[:1]))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            f(a(z), a(z), a(m), temperature=bad)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            f(a(z), a(z), a(m), chunk_size=bad)
    with pytest.raises(TypeError, match="response_mask"):  # mixed namespaces
        f(a(z), a(z), other_namespace(backend, m))
    with pytest.raises(TypeError, match="logits_blind"):
        f(a(z), other_namespace(backend, z), a(m))
    with pytest.raises(TypeError, match="logits_visual"):  # not an array at all
        f(z.tolist(), a(z), a(m))
    with pytest.raises(TypeError):  # hyper-parameters are keyword-only
        f(a(z), a(z), a(m), 1.0)


# ---------------------------------------------------------------------------------------
# sampled_token_dependency
# ---------------------------------------------------------------------------------------

# Hand example, log r = logp_blind - logp_visual:
#  t0: visual log 1/2, blind log 1/4 -> log r = -log 2, r = 1/2
#      k1 = log 2 ~ 0.6931   k2 = (log 2)^2 / 2 ~ 0.2402   k3 = (1/2 - 1) + log 2 ~ 0.1931
#  t1: visual log 1/4, blind log 1/2 -> log r = log 2, r = 2
#      k1 = -log 2           k2 = (log 2)^2 / 2            k3 = (2 - 1) - log 2 ~ 0.3069
#  t2: equal -> 0 for all three
#  t3: padding (NaN in the padded log-probs) -> 0
SAMPLED_VISUAL = [[math.log(0.5), math.log(0.25), -1.3, np.nan]]
SAMPLED_BLIND = [[math.log(0.25), math.log(0.5), -1.3, -np.inf]]
SAMPLED_MASK = [[True, True, True, False]]
SAMPLED_EXPECTED = {
    "k1": [[LOG2, -LOG2, 0.0, 0.0]],
    "k2": [[LOG2**2 / 2, LOG2**2 / 2, 0.0, 0.0]],
    "k3": [[LOG2 - 0.5, 1.0 - LOG2, 0.0, 0.0]],
}


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_sampled_estimators_hand_values(backend, pgpo, estimator):
    out = pgpo.sampled_token_dependency(
        backend.asarray(SAMPLED_VISUAL), backend.asarray(SAMPLED_BLIND),
        backend.asarray(SAMPLED_MASK), estimator=estimator)
    assert out.dtype == backend.xp.float64
    np.testing.assert_allclose(backend.to_numpy(out), SAMPLED_EXPECTED[estimator],
                               rtol=1e-12, atol=1e-15)


def test_sampled_default_is_k3(backend, pgpo):
    out = pgpo.sampled_token_dependency(
        backend.asarray(SAMPLED_VISUAL), backend.asarray(SAMPLED_BLIND),
        backend.asarray(SAMPLED_MASK))
    np.testing.assert_allclose(backend.to_numpy(out), SAMPLED_EXPECTED["k3"], rtol=1e-12)


def test_sampled_estimators_match_formulas_on_random_input(backend, pgpo):
    rng = np.random.default_rng(8)
    lv = -rng.exponential(size=(3, 7))
    lb = -rng.exponential(size=(3, 7))
    mask = rng.random((3, 7)) < 0.6
    log_r = lb - lv
    formulas = {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": np.exp(log_r) - 1 - log_r}
    for name, expected in formulas.items():
        out = pgpo.sampled_token_dependency(backend.asarray(lv), backend.asarray(lb),
                                            backend.asarray(mask), estimator=name)
        np.testing.assert_allclose(backend.to_numpy(out), np.where(mask, expected, 0.0),
                                   rtol=1e-10, atol=1e-15)


def test_sampled_clip(backend, pgpo):
    # clip=0.25: k3 (0.1931, 0.3069, 0, pad) -> (0.1931, 0.25, 0, 0);
    # k1 (0.6931, -0.6931, 0, pad) -> (0.25, -0.6931, 0, 0): clip is an upper bound only.
    args = (backend.asarray(SAMPLED_VISUAL), backend.asarray(SAMPLED_BLIND),
            backend.asarray(SAMPLED_MASK))
    out = pgpo.sampled_token_dependency(*args, estimator="k3", clip=0.25)
    np.testing.assert_allclose(backend.to_numpy(out), [[LOG2 - 0.5, 0.25, 0.0, 0.0]],
                               rtol=1e-12)
    out = pgpo.sampled_token_dependency(*args, estimator="k1", clip=0.25)
    np.testing.assert_allclose(backend.to_numpy(out), [[0.25, -LOG2, 0.0, 0.0]], rtol=1e-12)


def test_sampled_errors_name_the_argument(backend, pgpo):
    f = pgpo.sampled_token_dependency
    a = backend.asarray
    lp = np.full((2, 3), -1.0)
    m = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="estimator"):
        f(a(lp), a(lp), a(m), estimator="k4")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip"):
            f(a(lp), a(lp), a(m), clip=bad)
    with pytest.raises(ValueError, match="logp_visual"):
        f(a(lp[0]), a(lp[0]), a(m[0]))
    with pytest.raises(ValueError, match="logp_blind"):
        f(a(lp), a(lp[:, :2]), a(m))
    with pytest.raises(ValueError, match="response_mask"):
        f(a(lp), a(lp), a(m[:, :2]))
    with pytest.raises(TypeError, match="response_mask"):
        f(a(lp), a(lp), a(m.astype(np.int64)))
    with pytest.raises(TypeError, match="logp_visual"):
        f(a(lp.astype(np.int64)), a(lp), a(m))
    with pytest.raises(TypeError, match="logp_blind"):
        f(a(lp), other_namespace(backend, lp), a(m))
    for bad in (np.nan, np.inf, -np.inf):
        x = lp.copy()
        x[1, 2] = bad
        with pytest.raises(ValueError, match="logp_visual"):
            f(a(x), a(lp), a(m))
        with pytest.raises(ValueError, match="logp_blind"):
            f(a(lp), a(x), a(m))
