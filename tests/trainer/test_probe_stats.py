"""Intervals (reference_impl.stats) and the gradient probe's statistics, by hand."""

import math

import numpy as np
import pytest

from reference_impl.experiments.tables import area_under_curve, eval_curve, paired_differences, summarize
from reference_impl.experiments.probe_gradients import (gradient_snr, leave_one_out_cosines,
                                            summarize_gradients)
from reference_impl.stats import bootstrap_interval, mean_interval, paired_interval


def test_mean_interval_by_hand():
    # mean 2, sample sd 1, n 3: half-width t_{0.975, 2} / sqrt(3) = 4.302653 / 1.732051.
    iv = mean_interval([1.0, 2.0, 3.0])
    assert iv.estimate == 2.0
    assert iv.high - 2.0 == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert iv.low == pytest.approx(4.0 - iv.high)
    assert mean_interval([5.0]).low == -math.inf  # one value: nothing known of the spread


def test_paired_interval_is_the_interval_of_differences():
    after, before = [0.5, 0.7, 0.6, 0.9], [0.4, 0.5, 0.5, 0.6]
    iv = paired_interval(after, before)
    ref = mean_interval([0.1, 0.2, 0.1, 0.3])
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((ref.estimate, ref.low, ref.high))
    assert iv.excludes_zero
    with pytest.raises(ValueError, match="after"):
        paired_interval([1.0], [1.0, 2.0])


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    x = np.arange(20, dtype=float)
    a = bootstrap_interval(np.mean, x, seed=3)
    assert a.estimate == 9.5 and a.low < 9.5 < a.high
    assert bootstrap_interval(np.mean, x, seed=3) == a


def test_gradient_snr_by_hand():
    # Mean (2, 0); deviations (-1, 0) and (1, 0): E||g - mean||^2 = 1, ||mean||^2 = 4.
    assert gradient_snr(np.array([[1.0, 0.0], [3.0, 0.0]])) == pytest.approx(4.0)
    # Scaling every gradient by 16 (PGPO's larger steps) leaves the SNR unchanged.
    g = np.random.default_rng(0).normal(size=(6, 5)) + 1.0
    assert gradient_snr(16 * g) == pytest.approx(gradient_snr(g))
    # Pure noise around zero in D dimensions: E||mean||^2 = D / K and the mean squared
    # deviation is D (K - 1) / K, so SNR ~ 1 / (K - 1) (relative sd sqrt(2 / D) ~ 3%).
    noise = np.random.default_rng(1).normal(size=(400, 2000))
    assert gradient_snr(noise) == pytest.approx(1 / 399, rel=0.15)
    with pytest.raises(ValueError, match="grads"):
        gradient_snr(np.ones((1, 3)))


def test_leave_one_out_cosines_by_hand():
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Row 0 vs mean of rows 1, 2 = (0.5, 1): cos = 0.5 / (1 * sqrt(1.25)).
    # Row 2 vs mean of rows 0, 1 = (0.5, 0.5): cos = 1.
    np.testing.assert_allclose(leave_one_out_cosines(g),
                               [0.5 / math.sqrt(1.25), 0.5 / math.sqrt(1.25), 1.0])


def test_summarize_gradients_visual_share():
    visual = np.array([[3.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    other = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 1.0]])
    s = summarize_gradients(visual + other, visual, other)
    assert s["visual_share"]["estimate"] == pytest.approx(0.75)  # 3 / (3 + 1)
    assert s["grad_norm"]["estimate"] == pytest.approx(math.sqrt(10))
    assert s["batches"] == 3


def test_eval_curve_and_area():
    rows = [{"step": 0, "kind": "eval", "accuracy_avg@4": 0.0, "phase": "untrained"},
            {"step": 10, "kind": "eval", "accuracy_avg@4": 0.5},
            {"step": 20, "kind": "eval", "accuracy_avg@4": 0.7, "phase": "final"}]
    xs, ys = eval_curve(rows, (0, 0.3))
    assert (xs, ys) == ([0, 10, 20], [0.3, 0.5, 0.7])
    # Trapezoids: (0.3 + 0.5) / 2 * 10 + (0.5 + 0.7) / 2 * 10 = 10, over 20 steps.
    assert area_under_curve(xs, ys) == pytest.approx(0.5)
    s = summarize(rows + [{"step": 1, "kind": "train", "reward": 0.2, "updated": 0.0},
                          {"step": 2, "kind": "train", "reward": 0.4, "updated": 1.0}],
                  before_rl=0.3)
    assert s["final"] == 0.7 and s["auc"] == pytest.approx(0.5)
    assert s["steps_without_update"] == 1.0 and s["reward_last"] == pytest.approx(0.4)


def test_paired_differences_pair_by_seed():
    runs = {"pgpo": [{"final": 0.6, "auc": 0.5, "perception_final": 0.7},
                     {"final": 0.8, "auc": 0.6, "perception_final": 0.9}],
            "dapo": [{"final": 0.5, "auc": 0.5, "perception_final": 0.7},
                     {"final": 0.6, "auc": 0.4, "perception_final": 0.8}]}
    d = paired_differences(runs)["pgpo - dapo"]
    assert d["final"]["estimate"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2
    assert d["auc"]["estimate"] == pytest.approx(0.1)


def test_checkpoint_labels_stay_apart_when_folder_names_repeat():
    """Two warm-up checkpoints are both called step_00000000: their rows must not merge."""
    from reference_impl.experiments.probe_gradients import checkpoint_labels

    assert checkpoint_labels(["runs/a/checkpoints/step_00000100", "runs/a/checkpoints/step_00000200"]) \
        == ["step_00000100", "step_00000200"]
    assert checkpoint_labels(["w0/checkpoints/step_00000000", "w1/checkpoints/step_00000000/"]) \
        == ["w0/checkpoints/step_00000000", "w1/checkpoints/step_00000000"]
    with pytest.raises(ValueError, match="--checkpoint"):
        checkpoint_labels(["a/step_1", "a/step_1/"])
