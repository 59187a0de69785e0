"""reference_impl.compare: the table's numbers from metrics rows worked out by hand."""

import math

import pytest

from reference_impl.compare import summarize, write_table


def rows():
    return [
        {"step": 0, "kind": "eval", "accuracy_avg@4": 0.0, "phase": "untrained"},
        {"step": 0, "kind": "sft", "sft_step": 1, "sft_loss": 3.0},
        {"step": 0, "kind": "eval", "accuracy_avg@4": 0.25, "phase": "warmed_up"},
        {"step": 1, "kind": "train", "reward": 0.1, "grad_norm": 1.0, "entropy": 0.5},
        {"step": 2, "kind": "train", "reward": 0.3, "grad_norm": 3.0, "entropy": 0.4},
        {"step": 2, "kind": "eval", "accuracy_avg@4": 0.3},
        {"step": 3, "kind": "train", "reward": 0.5, "grad_norm": "nan", "entropy": 0.3},
        {"step": 4, "kind": "train", "reward": 0.7, "grad_norm": 5.0, "entropy": 0.2},
        {"step": 4, "kind": "eval", "accuracy_avg@4": 0.5, "phase": "final"},
    ]


def test_summarize_by_hand():
    s = summarize(rows())
    assert s["untrained"] == 0.0 and s["before_rl"] == 0.25 and s["final"] == 0.5
    # 4 train rows: the first and last quarters are one row each.
    assert s["reward_first"] == pytest.approx(0.1) and s["reward_last"] == pytest.approx(0.7)
    # "nan" (a skipped step's logged value) is left out: grad norms 1, 3, 5.
    assert s["grad_mean"] == pytest.approx(3.0)
    assert s["grad_var"] == pytest.approx(8.0 / 3.0)  # population variance of 1, 3, 5
    assert s["entropy_first"] == 0.5 and s["entropy_last"] == 0.2


def test_table_mean_and_std_over_seeds(tmp_path):
    a = summarize(rows())
    b = dict(a, final=0.7)
    text = write_table({"pgpo": [a, b], "dapo": [a]}, str(tmp_path / "t.md"),
                       acc_key="accuracy_avg@4", header="# t")
    lines = text.splitlines()
    pgpo = next(line for line in lines if line.startswith("| pgpo |")).split(" | ")
    dapo = next(line for line in lines if line.startswith("| dapo |")).split(" | ")
    # Columns: algo, untrained, before_rl, final, ...; final = mean 0.6 +- stdev 0.1414.
    assert pgpo[3] == f"0.6 ± {math.sqrt(0.02):.2g}"
    assert dapo[3] == "0.5"
    assert (tmp_path / "t.md").read_text() == text
