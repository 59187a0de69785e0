"""Phase timings (issue 17): every RL step's row carries ``timing_s/<phase>``, so does
TensorBoard, and timing changes nothing else: two runs of one config are equal row for
row once the wall times are left out."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import tiny_args, varied_rewards  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.runlog.metrics import read_metrics  # noqa: E402
from reference_impl.loop.timing import (comparable_rows, marked_timer,  # noqa: E402
                                   timing_metrics, without_timings)
from reference_impl.train import main  # noqa: E402

STEP_PHASES = ("rollout", "reward", "old_logprobs", "blind_pass", "advantages", "update",
               "step")
ARGS = ("algo.dynamic_sampling=false", "train.total_steps=2", "eval.every=1",
        "eval.at_start=true", "model.sft_warmup_steps=1", "checkpoint.every=1",
        "logging.tensorboard=true")


def test_marked_timer_adds_up_per_name():
    timing = {}
    for _ in range(2):
        with marked_timer("a", timing):
            pass
    with pytest.raises(KeyError):
        with marked_timer("b", timing):
            raise KeyError
    assert set(timing) == {"a", "b"} and all(v >= 0 for v in timing.values())
    assert timing_metrics({"a": 1}) == {"timing_s/a": 1.0}
    assert without_timings({"step": 1, "timing_s/a": 2.0, "loss": 3}) == {"step": 1, "loss": 3}


@pytest.mark.slow
def test_every_step_row_has_phase_timings_and_nothing_else_changes(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    first, second = tmp_path / "first", tmp_path / "second"
    main(tiny_args(first, *ARGS))
    main(tiny_args(second, *ARGS))
    rows = read_metrics(str(first / "metrics.jsonl"))

    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["updated"] == 1.0
        for phase in STEP_PHASES:
            assert r[f"timing_s/{phase}"] >= 0.0, (phase, r)
        parts = sum(r[f"timing_s/{p}"] for p in STEP_PHASES if p != "step")
        assert parts <= r["timing_s/step"] + 1e-6
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r.get("phase") for r in evals] == ["untrained", "warmed_up", None, "final"]
    assert all(r["timing_s/eval"] >= 0.0 for r in evals)
    saves = [(r["step"], r["timing_s/save"] >= 0.0) for r in rows if r["kind"] == "timing"]
    assert saves == [(0, True), (1, True), (2, True)]  # after the warm-up, steps 1 and 2

    acc = EventAccumulator(str(first / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for phase in STEP_PHASES + ("save",):
        assert f"train/timing_s/{phase}" in tags, phase
    assert [e.step for e in acc.Scalars("train/timing_s/blind_pass")] == [1, 2]

    # Same config, same seed: the same rows, value for value, wall times aside.
    assert comparable_rows(rows) == comparable_rows(read_metrics(str(second / "metrics.jsonl")))
