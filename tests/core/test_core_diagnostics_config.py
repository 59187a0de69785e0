"""Unit tests of weight_diagnostics (on every backend) and of PGPOConfig."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

# Rows 0, 1 and 4 of the hand example of test_core_weights.py (see the derivation there):
#   row 0  S~ = [0.3, 0.5, 0.8, 1.3, .]   I = [0, .2, .5, 1]  w~ = [0, 12, 32, 72] / 29
#   row 1  S~ = [., 0.1, ., 0.6, 0.35]    I = [0, 1, .5]      w~ = [0, 27, 12] / 13
#   row 2  empty
S_TILDE = np.array([[0.3, 0.5, 0.8, 1.3, 0.0], [0.0, 0.1, 0.0, 0.6, 0.35], [0.0] * 5])
MASK = np.array([[True, True, True, True, False], [False, True, False, True, True],
                 [False] * 5])
DEPENDENCY = np.where(MASK, np.expm1(S_TILDE), -1.0)


def _diagnostics(backend, pgpo, dependency=DEPENDENCY, mask=MASK, **kw):
    out = pgpo.weight_diagnostics(backend.asarray(dependency), backend.asarray(mask), **kw)
    result = {}
    for key, value in out.items():
        arr = backend.to_numpy(value)
        assert arr.shape == (), key
        result[key] = float(arr)
    return result


def test_weight_diagnostics_hand_values(backend, pgpo):
    d = _diagnostics(backend, pgpo, eps=1e-12)
    assert set(d) == {"dependency_mean", "dependency_max", "frac_above_tau", "weight_mean",
                      "weight_max", "weight_min", "boosted_frac", "boosted_tokens",
                      "effective_token_frac"}
    # 7 tokens; S = expm1(S~): .3499 + .6487 + 1.2255 + 2.6693 + .1052 + .8221 + .4191 = 6.2398
    s = np.expm1([0.3, 0.5, 0.8, 1.3, 0.1, 0.6, 0.35])
    assert d["dependency_mean"] == pytest.approx(s.sum() / 7, rel=1e-12)
    assert d["dependency_max"] == pytest.approx(np.expm1(1.3), rel=1e-12)
    # I >= 0.4: row 0 {.5, 1}, row 1 {1, .5} -> 4 of 7
    assert d["frac_above_tau"] == pytest.approx(4 / 7, rel=1e-12)
    # Eq. 7: mean weight 1; max 72/29 = 2.483 (> 27/13 = 2.077); min 0
    assert d["weight_mean"] == pytest.approx(1.0, rel=1e-12)
    assert d["weight_max"] == pytest.approx(72 / 29, rel=1e-9)
    assert d["weight_min"] == pytest.approx(0.0, abs=1e-12)
    # w~ > 1: 32/29, 72/29 in row 0, 27/13 in row 1 -> 3 of 7 tokens, 3 per 2 non-empty rows
    assert d["boosted_frac"] == pytest.approx(3 / 7, rel=1e-12)
    assert d["boosted_tokens"] == pytest.approx(1.5, rel=1e-12)
    # (sum w~)^2 / (|o| sum w~^2): row 0: 16 / (4 * 6352/841) = 841/1588;
    #                              row 1:  9 / (3 * 873/169)  = 169/291; mean over 2 rows
    assert d["effective_token_frac"] == pytest.approx((841 / 1588 + 169 / 291) / 2, rel=1e-9)


def test_weight_diagnostics_uniform_weights(backend, pgpo):
    # tau = 0, beta = 0: w~ = 1, so nothing is boosted and the effective fraction is 1.
    # Every I >= 0 = tau, so frac_above_tau = 1.
    d = _diagnostics(backend, pgpo, tau=0.0, beta=0.0)
    assert d["weight_mean"] == d["weight_max"] == d["weight_min"] == 1.0
    assert d["boosted_frac"] == 0.0 and d["boosted_tokens"] == 0.0
    assert d["effective_token_frac"] == pytest.approx(1.0, rel=1e-15)
    assert d["frac_above_tau"] == 1.0


def test_weight_diagnostics_quantile_threshold(backend, pgpo):
    # quantile thresholds: row 0 thr = .26 (I >= .26: .5, 1), row 1 thr = .4 (.5, 1) -> 4/7
    d = _diagnostics(backend, pgpo, threshold="quantile", eps=1e-12)
    assert d["frac_above_tau"] == pytest.approx(4 / 7, rel=1e-12)
    assert d["weight_max"] == pytest.approx(2886 / 1303, rel=1e-9)


def test_weight_diagnostics_empty_batch_is_zero_not_nan(backend, pgpo):
    d = _diagnostics(backend, pgpo, mask=np.zeros_like(MASK))
    assert all(v == 0.0 for v in d.values()), d


def test_weight_diagnostics_errors(backend, pgpo):
    a = backend.asarray
    with pytest.raises(ValueError, match="tau"):
        pgpo.weight_diagnostics(a(DEPENDENCY), a(MASK), tau=-1.0)
    with pytest.raises(TypeError, match="response_mask"):
        pgpo.weight_diagnostics(a(DEPENDENCY), a(MASK.astype(np.int32)))
    bad = DEPENDENCY.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="dependency"):
        pgpo.weight_diagnostics(a(bad), a(MASK))


# ---------------------------------------------------------------------------------------
# PGPOConfig
# ---------------------------------------------------------------------------------------

def test_config_defaults_are_the_papers(pgpo):
    c = pgpo.PGPOConfig()
    assert (c.tau, c.beta) == (0.4, 2.0)  # Eq. 6 defaults
    assert (c.clip_low, c.clip_high) == (0.2, 0.28)  # DAPO clip-higher
    assert c.aggregation == "token-mean"  # DAPO token-level mean
    assert c.threshold == "fixed" and c.low_weight_floor == 0.0 and c.conserve_mass is True
    assert c.dual_clip is None
    assert 0 < c.eps <= 1e-4
    assert c.weight_kwargs() == dict(tau=0.4, beta=2.0, eps=c.eps, threshold="fixed",
                                     low_weight_floor=0.0, conserve_mass=True)
    assert c.loss_kwargs() == dict(clip_low=0.2, clip_high=0.28, dual_clip=None,
                                   aggregation="token-mean")


def test_config_kwargs_feed_the_functions(pgpo):
    # the kwargs are accepted by the functions and give the default results
    c = pgpo.PGPOConfig()
    w = pgpo.token_weights(DEPENDENCY, MASK, **c.weight_kwargs())
    np.testing.assert_array_equal(w, pgpo.token_weights(DEPENDENCY, MASK))
    lp = np.log(np.full((3, 5), 0.3))
    loss, _ = pgpo.policy_loss(lp, lp, np.ones(3), MASK, **c.loss_kwargs())
    assert float(loss) == pytest.approx(-1.0)


def test_config_is_frozen_and_keyword_only(pgpo):
    c = pgpo.PGPOConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.tau = 0.5
    with pytest.raises(TypeError):
        pgpo.PGPOConfig(0.5)
    d = c.replace(tau=0.6)
    assert d.tau == 0.6 and c.tau == 0.4
    with pytest.raises(ValueError, match="tau"):
        c.replace(tau=1.5)
    assert pgpo.PGPOConfig() == c  # value semantics


@pytest.mark.parametrize("field, value, exc", [
    ("tau", -0.01, ValueError),
    ("tau", 1.01, ValueError),
    ("tau", "0.4", TypeError),
    ("beta", -1.0, ValueError),
    ("eps", 0.0, ValueError),
    ("threshold", "median", ValueError),
    ("low_weight_floor", 2.0, ValueError),
    ("conserve_mass", "yes", TypeError),
    ("estimator", "k4", ValueError),
    ("temperature", 0.0, ValueError),
    ("chunk_size", 0, ValueError),
    ("chunk_size", 2.5, ValueError),
    ("chunk_size", True, ValueError),  # as token_visual_dependency: a bool is not a size
    ("estimate_clip", -1.0, ValueError),
    ("clip_low", 1.5, ValueError),
    ("clip_high", -0.1, ValueError),
    ("dual_clip", 1.0, ValueError),
    ("aggregation", "mean", ValueError),
])
def test_config_invalid_values_name_the_field(pgpo, field, value, exc):
    with pytest.raises(exc, match=field):
        pgpo.PGPOConfig(**{field: value})


def test_config_accepts_documented_choices(pgpo):
    for estimator in ("exact", "k1", "k2", "k3"):
        assert pgpo.PGPOConfig(estimator=estimator).estimator == estimator
    for aggregation in pgpo.AGGREGATIONS:
        assert pgpo.PGPOConfig(aggregation=aggregation).aggregation == aggregation
    c = pgpo.PGPOConfig(tau=0.0, beta=0.0, dual_clip=3.0, chunk_size=None, estimate_clip=10.0)
    assert c.dual_clip == 3.0 and c.chunk_size is None


def test_config_ablation_presets(pgpo):
    base = pgpo.PGPOConfig.ablation("base")
    assert (base.tau, base.beta) == (0.0, 0.0)
    assert pgpo.PGPOConfig.ablation("suppress_only").tau == 1.0
    boost = pgpo.PGPOConfig.ablation("boost_only")
    assert boost.tau == 0.0 and boost.beta == 2.0
    assert pgpo.PGPOConfig.ablation("no_mass_conservation").conserve_mass is False
    dev = pgpo.PGPOConfig.ablation("dev_variant")
    assert (dev.threshold, dev.low_weight_floor, dev.conserve_mass) == ("quantile", 0.1, False)
    assert set(pgpo.ABLATIONS) == {"base", "suppress_only", "boost_only",
                                   "no_mass_conservation", "dev_variant"}
    # overrides apply on top of the preset, and other fields keep the paper's defaults
    c = pgpo.PGPOConfig.ablation("suppress_only", beta=1.0)
    assert (c.tau, c.beta, c.clip_high) == (1.0, 1.0, 0.28)
    with pytest.raises(ValueError, match="name"):
        pgpo.PGPOConfig.ablation("no_such_ablation")
    # the base preset makes PGPO the base algorithm: w~ = 1 on every response token
    w = pgpo.token_weights(DEPENDENCY, MASK, **base.weight_kwargs())
    np.testing.assert_array_equal(w, MASK.astype(np.float64))
    # suppress_only gives the hand values of test_core_weights.py (tau = 1): row 1 [0, 2, 1]
    w = pgpo.token_weights(DEPENDENCY, MASK, **pgpo.PGPOConfig.ablation(
        "suppress_only", eps=1e-12).weight_kwargs())
    np.testing.assert_allclose(w[1, [1, 3, 4]], [0, 2, 1], rtol=1e-9, atol=1e-12)
