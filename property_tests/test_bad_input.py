"""Bad input is refused, never broadcast, dropped or turned into NaN.

The latitude: a ``TypeError`` or a ``ValueError`` (either), whose message names the
offending argument somewhere (not necessarily first). Where two arguments disagree
(shapes, dtypes), naming either of them is enough.

Also the configuration object: the paper's defaults, validation on construction, and
frozen (assignment raises ``AttributeError``, of which dataclasses'
``FrozenInstanceError`` is one).
"""

from __future__ import annotations

import numpy as np
import pytest

NAN = float("nan")


def _cases():
    """(id, call(pgpo, a), accepted names); ``a`` turns numpy into the backend's arrays."""
    lv = np.zeros((2, 3, 4))
    m = np.ones((2, 3), dtype=bool)
    lp = np.full((2, 3), -1.0)
    dep = np.full((2, 3), 0.5)
    r = np.array([1.0, 0.0, 0.5])
    ids = np.array([0, 0, 1])
    with_nan = lp.copy()
    with_nan[0, 1] = NAN
    negative = dep.copy()
    negative[1, 2] = -0.1
    return [
        # token_visual_dependency
        ("kl-shape", lambda p, a: p.token_visual_dependency(a(lv), a(lv[:, :2]), a(m)),
         ("logits_blind", "logits_visual")),
        ("kl-ndim", lambda p, a: p.token_visual_dependency(a(lp), a(lp), a(m)),
         ("logits_visual", "logits_blind")),
        ("kl-mask-dtype", lambda p, a: p.token_visual_dependency(a(lv), a(lv), a(lp)),
         ("response_mask",)),
        ("kl-mask-shape", lambda p, a: p.token_visual_dependency(a(lv), a(lv), a(m[:, :2])),
         ("response_mask",)),
        ("kl-nan", lambda p, a: p.token_visual_dependency(
            a(np.where(np.arange(4) == 1, NAN, lv)), a(lv), a(m)),
         ("logits_visual",)),
        ("kl-temperature", lambda p, a: p.token_visual_dependency(a(lv), a(lv), a(m),
                                                                  temperature=0.0),
         ("temperature",)),
        ("kl-chunk-zero", lambda p, a: p.token_visual_dependency(a(lv), a(lv), a(m),
                                                                 chunk_size=0),
         ("chunk_size",)),
        ("kl-chunk-float", lambda p, a: p.token_visual_dependency(a(lv), a(lv), a(m),
                                                                  chunk_size=2.5),
         ("chunk_size",)),
        # sampled_token_dependency
        ("k-estimator", lambda p, a: p.sampled_token_dependency(a(lp), a(lp), a(m),
                                                                estimator="k4"),
         ("estimator",)),
        ("k-clip", lambda p, a: p.sampled_token_dependency(a(lp), a(lp), a(m), clip=-1.0),
         ("clip",)),
        ("k-nan", lambda p, a: p.sampled_token_dependency(a(with_nan), a(lp), a(m)),
         ("logp_visual",)),
        ("k-shape", lambda p, a: p.sampled_token_dependency(a(lp), a(lp[:, :1]), a(m)),
         ("logp_blind", "logp_visual")),
        # token_weights / reshape_advantages / weight_diagnostics
        ("w-tau", lambda p, a: p.token_weights(a(dep), a(m), tau=1.5), ("tau",)),
        ("w-beta", lambda p, a: p.token_weights(a(dep), a(m), beta=-1.0), ("beta",)),
        ("w-eps", lambda p, a: p.token_weights(a(dep), a(m), eps=0.0), ("eps",)),
        ("w-threshold", lambda p, a: p.token_weights(a(dep), a(m), threshold="median"),
         ("threshold",)),
        ("w-floor", lambda p, a: p.token_weights(a(dep), a(m), low_weight_floor=2.0),
         ("low_weight_floor",)),
        ("w-negative", lambda p, a: p.token_weights(a(negative), a(m)), ("dependency",)),
        ("w-nan", lambda p, a: p.token_weights(a(with_nan), a(m)), ("dependency",)),
        ("w-ndim", lambda p, a: p.token_weights(a(dep[0]), a(m[0])), ("dependency",)),
        ("w-mask-dtype", lambda p, a: p.token_weights(a(dep), a(dep)), ("response_mask",)),
        ("w-mask-shape", lambda p, a: p.token_weights(a(dep), a(m[:1])),
         ("response_mask", "dependency")),
        ("a-rows", lambda p, a: p.reshape_advantages(a(r), a(dep), a(m)), ("advantages",)),
        ("a-nan", lambda p, a: p.reshape_advantages(a(np.array([NAN, 1.0])), a(dep), a(m)),
         ("advantages",)),
        ("d-tau", lambda p, a: p.weight_diagnostics(a(dep), a(m), tau=-0.5), ("tau",)),
        # group_advantages
        ("g-ndim", lambda p, a: p.group_advantages(a(lp), a(ids)), ("rewards",)),
        ("g-ids-dtype", lambda p, a: p.group_advantages(a(r), a(r)), ("group_ids",)),
        ("g-length", lambda p, a: p.group_advantages(a(r), a(ids[:2])),
         ("group_ids", "rewards")),
        ("g-nan", lambda p, a: p.group_advantages(a(np.array([1.0, NAN, 0.0])), a(ids)),
         ("rewards",)),
        ("g-eps", lambda p, a: p.group_advantages(a(r), a(ids), eps=-1.0), ("eps",)),
        # policy_loss / aggregate
        ("l-aggregation", lambda p, a: p.policy_loss(a(lp), a(lp), a(lp), a(m),
                                                     aggregation="sum"), ("aggregation",)),
        ("l-clip-low", lambda p, a: p.policy_loss(a(lp), a(lp), a(lp), a(m), clip_low=1.5),
         ("clip_low",)),
        ("l-dual-clip", lambda p, a: p.policy_loss(a(lp), a(lp), a(lp), a(m), dual_clip=0.5),
         ("dual_clip",)),
        ("l-broadcast", lambda p, a: p.policy_loss(a(lp), a(lp[:, :1]), a(lp), a(m)),
         ("logp_old", "logp")),
        ("l-nan", lambda p, a: p.policy_loss(a(with_nan), a(lp), a(lp), a(m)), ("logp",)),
        ("l-adv-rows", lambda p, a: p.policy_loss(a(lp), a(lp), a(r), a(m)), ("advantages",)),
        ("l-mask-dtype", lambda p, a: p.policy_loss(a(lp), a(lp), a(lp), a(lp)),
         ("response_mask",)),
        ("agg-normalizer", lambda p, a: p.aggregate(a(lp), a(m), normalizer=0.0),
         ("normalizer",)),
        ("agg-mask-shape", lambda p, a: p.aggregate(a(lp), a(m[:, :1])),
         ("response_mask", "per_token")),
    ]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(pgpo, backend, case):
    _, call, names = case
    with pytest.raises((TypeError, ValueError)) as info:
        call(pgpo, backend.asarray)
    message = str(info.value)
    assert any(name in message for name in names), (names, message)


def test_config_defaults_validation_and_frozen(pgpo):
    c = pgpo.PGPOConfig()
    assert (c.tau, c.beta, c.clip_low, c.clip_high) == (0.4, 2.0, 0.2, 0.28)
    assert c.aggregation == "token-mean" and c.conserve_mass is True
    for field, bad in [("tau", 1.5), ("beta", -1.0), ("clip_low", 2.0), ("threshold", "x"),
                       ("aggregation", "sum")]:
        with pytest.raises((TypeError, ValueError)) as info:
            pgpo.PGPOConfig(**{field: bad})
        assert field in str(info.value)
    with pytest.raises(AttributeError):
        c.tau = 0.5
    base = pgpo.PGPOConfig.ablation("base")
    assert (base.tau, base.beta) == (0.0, 0.0)
