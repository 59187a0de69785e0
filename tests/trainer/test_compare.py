"""reference_impl.compare: tables worked out by hand, and the --quick smoke run end to end."""

import json
import math

import pytest

from reference_impl.compare import main, summarize, write_tables
from reference_impl.stats import mean_interval


def rows(final):
    return [
        {"step": 0, "kind": "eval", "accuracy_avg@4": 0.0, "phase": "untrained"},
        {"step": 1, "kind": "train", "reward": 0.1, "grad_norm": 1.0, "entropy": 0.5,
         "response_length": 40.0, "updated": 1.0},
        {"step": 2, "kind": "train", "reward": 0.3, "grad_norm": "nan", "entropy": 0.4,
         "response_length": 44.0, "updated": 1.0},
        {"step": 2, "kind": "eval", "accuracy_avg@4": 0.3, "perception_accuracy": 0.4},
        {"step": 4, "kind": "eval", "accuracy_avg@4": final, "format": 1.0,
         "perception_accuracy": 0.5, "phase": "final"},
    ]


def test_summarize_by_hand():
    s = summarize(rows(0.5), before_rl=0.25)
    assert s["before_rl"] == 0.25 and s["final"] == 0.5 and s["perception_final"] == 0.5
    # Curve 0.25 @ 0, 0.3 @ 2, 0.5 @ 4: trapezoids (0.55 + 0.8) / 2 * 2 = 1.35 over 4 steps.
    assert s["auc"] == pytest.approx(1.35 / 4)
    assert s["grad_norm_mean"] == 1.0  # the "nan" of a skipped step is left out
    assert s["length_last"] == 44.0 and s["steps_without_update"] == 0.0


def test_tables_mean_interval_and_paired_difference(tmp_path):
    runs = {"pgpo": [summarize(rows(0.5), before_rl=0.25), summarize(rows(0.7), before_rl=0.25)],
            "dapo": [summarize(rows(0.4), before_rl=0.25), summarize(rows(0.5), before_rl=0.25)]}
    text = write_tables(runs, str(tmp_path / "t.md"), header="# t")
    pgpo = next(line for line in text.splitlines() if line.startswith("| pgpo |")).split(" | ")
    iv = mean_interval([0.5, 0.7])
    assert pgpo[2] == f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]"  # after RL
    diff = next(line for line in text.splitlines() if line.startswith("| pgpo - dapo |"))
    d = mean_interval([0.1, 0.2])  # paired by seed: 0.5 - 0.4, 0.7 - 0.5
    assert diff.split(" | ")[1] == f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
    assert (tmp_path / "t.md").read_text() == text


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    """What CI runs: the whole experiment with tiny settings (nothing is learned)."""
    out = tmp_path / "cmp"
    result = main(["--quick", "--seeds", "0", "--algos", "pgpo,dapo", "--out", str(out)])
    assert set(result["runs"]) == {"pgpo", "dapo"}
    assert all(len(v) == 1 and math.isfinite(v[0]["final"]) for v in result["runs"].values())
    for name in ("compare.md", "compare.png", "compare.json"):
        assert (out / name).stat().st_size > 100
    saved = json.loads((out / "compare.json").read_text())
    assert saved["seeds"] == [0] and "pgpo - dapo" in saved["paired_differences"]
    # Both algorithms started RL from the one warm-up of their seed.
    assert (out / "warmup-seed0" / "checkpoints").is_dir()
