"""Exact resume (2 + 2 steps == 4 steps, bit for bit) and a clean stop on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import tiny_args, varied_rewards  # noqa: E402

from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.runlog.checkpoint import load_checkpoint  # noqa: E402
from reference_impl.loop.timing import comparable_rows  # noqa: E402
from reference_impl.train import main  # noqa: E402

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Wall times (timing_s/* keys, and the rows of kind "timing" that hold a save's) differ
# between identical runs: left out of every comparison.


def _train_rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if r["kind"] == "train"]
    return comparable_rows(rows)


def test_resumed_run_matches_uninterrupted_run_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    common = ("algo.dynamic_sampling=false", "model.sft_warmup_steps=1")
    straight, split = tmp_path / "straight", tmp_path / "split"
    main(tiny_args(straight, "train.total_steps=4", *common))
    first = main(tiny_args(split, "train.total_steps=2", *common))
    assert first["steps"] == 2
    second = main(tiny_args(split, "train.total_steps=4", "checkpoint.resume=auto", *common))
    assert second["resumed_from"] == 2 and second["steps"] == 4

    a = load_checkpoint(straight / "checkpoints")
    b = load_checkpoint(split / "checkpoints")
    assert a.step == b.step == 4
    assert a.model_state.keys() == b.model_state.keys()
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k
    # The weights moved during RL (so the equality above is not trivial).
    first_ckpt = load_checkpoint(split / "checkpoints" / "step_00000002")
    assert any(not torch.equal(first_ckpt.model_state[k], b.model_state[k])
               for k in b.model_state)
    assert a.data_state == b.data_state
    assert torch.equal(a.rng_state["per_rank"][0]["torch"], b.rng_state["per_rank"][0]["torch"])
    # Identical per-step metrics, and the resumed log holds each step once.
    rows_a, rows_b = _train_rows(straight), _train_rows(split)
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    assert rows_a == rows_b


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(REPO, "reference_impl", "train.py"),
           *tiny_args(out, "train.total_steps=500", "algo.dynamic_sampling=false")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if metrics.exists() and '"kind": "train"' in metrics.read_text():
                break
            if proc.poll() is not None:
                pytest.fail(f"trainer exited early:\n{proc.stdout.read()}")
            time.sleep(0.2)
        else:
            pytest.fail("no training step within 120 s")
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by_signal"] is True
    saved = load_checkpoint(out / "checkpoints")
    assert 1 <= saved.step == summary["steps"] < 500
    assert saved.extra["step"] == saved.step


def test_a_warmup_stopped_midway_resumes_exactly(tmp_path, monkeypatch):
    """Stopped after 2 of 4 warm-up steps (a SIGTERM's path: should_stop turns true), then
    resumed: the weights and every logged row equal an uninterrupted run's."""
    from reference_impl.loop import warmup as warmup_mod

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    common = ("algo.dynamic_sampling=false", "model.sft_warmup_steps=4", "train.total_steps=2")
    straight, split = tmp_path / "straight", tmp_path / "split"
    main(tiny_args(straight, *common))

    real = warmup_mod.supervised_warmup

    def stop_after_two(*args, on_step, should_stop, **kwargs):
        done = []

        def record(i, loss):
            done.append(i)
            on_step(i, loss)

        return real(*args, on_step=record, should_stop=lambda: len(done) >= 2, **kwargs)

    monkeypatch.setattr(trainer_mod, "supervised_warmup", stop_after_two)
    first = main(tiny_args(split, *common))
    assert first["stopped_by_signal"] is True and first["steps"] == 0
    saved = load_checkpoint(split / "checkpoints")
    assert saved.extra["warmup_done"] is False and saved.extra["warmup_step"] == 2
    assert saved.optimizer_state["state"], "the warm-up optimiser's moments are saved"
    monkeypatch.setattr(trainer_mod, "supervised_warmup", real)
    second = main(tiny_args(split, "checkpoint.resume=auto", *common))
    assert second["resumed_from"] == 0 and second["steps"] == 2

    a = load_checkpoint(straight / "checkpoints")
    b = load_checkpoint(split / "checkpoints")
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k

    def rows(out):
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return comparable_rows(map(json.loads, f))

    assert [r["sft_step"] for r in rows(split) if r["kind"] == "sft"] == [1, 2, 3, 4]
    assert rows(straight) == rows(split)


def _stop_evaluation(monkeypatch, which):
    """Make the ``which``-th call of Trainer.evaluate (1-based) see a stop signal at once."""
    real = trainer_mod.Trainer.evaluate
    calls = []

    def evaluate(self, *, keep_samples=0, should_stop=None):
        calls.append(1)
        if len(calls) == which:
            assert should_stop is not None, "an evaluation in fit must be stoppable"
            return real(self, keep_samples=keep_samples, should_stop=lambda: True)
        return real(self, keep_samples=keep_samples, should_stop=should_stop)

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", evaluate)
    return real


def _rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return comparable_rows(map(json.loads, f))


@pytest.mark.parametrize("which, phase", [(2, "periodic"), (3, "final")])
def test_a_stop_during_an_evaluation_resumes_to_the_same_rows(tmp_path, monkeypatch, which,
                                                             phase):
    """A stop signal abandons an evaluation at once; the resumed run evaluates the same
    weights at the same step (its own RNG stream), so the log equals an uninterrupted one."""
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    common = ("algo.dynamic_sampling=false", "train.total_steps=3", "eval.every=2",
              "eval.at_start=true")
    straight, split = tmp_path / "straight", tmp_path / "split"
    main(tiny_args(straight, *common))
    real = _stop_evaluation(monkeypatch, which)  # 1: untrained, 2: step 2, 3: final
    first = main(tiny_args(split, *common))
    assert first["stopped_by_signal"] is True
    saved = load_checkpoint(split / "checkpoints")
    assert saved.step == (2 if phase == "periodic" else 3)
    assert saved.extra["eval_pending"] is (phase == "periodic")
    assert not any(r["kind"] == "eval" and r["step"] == saved.step for r in _rows(split))
    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", real)
    second = main(tiny_args(split, "checkpoint.resume=auto", *common))
    assert second["resumed_from"] == saved.step and second["steps"] == 3
    assert _rows(straight) == _rows(split)
    a, b = load_checkpoint(straight / "checkpoints"), load_checkpoint(split / "checkpoints")
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k


def test_a_stop_during_the_first_evaluation_saves_nothing(tmp_path, monkeypatch):
    _stop_evaluation(monkeypatch, 1)
    summary = main(tiny_args(tmp_path / "run", "train.total_steps=2", "eval.at_start=true"))
    assert summary["stopped_by_signal"] is True and summary["steps"] == 0
    assert not (tmp_path / "run" / "checkpoints").exists() or \
        not any((tmp_path / "run" / "checkpoints").iterdir())


def _tensorboard_points(out):
    """{(run, tag): [(step, value), ...]} as TensorBoard reads them (purges applied)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer().AddRunsFromDirectory(str(out / "tensorboard"))
    mux.Reload()
    points = {}
    for run, tags in mux.Runs().items():
        for tag in tags["scalars"]:
            if "timing_s/" in tag:
                continue
            points[(run, tag)] = [(e.step, round(e.value, 6)) for e in mux.Scalars(run, tag)]
    return points


def test_tensorboard_after_a_resume_holds_each_point_once(tmp_path, monkeypatch):
    """Stopped in the final evaluation and resumed: every TensorBoard curve equals the
    uninterrupted run's (the re-run evaluation replaces its earlier attempt, the
    evaluations before and after the warm-up sit on the warm-up's own axis)."""
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    common = ("algo.dynamic_sampling=false", "train.total_steps=3", "eval.every=2",
              "eval.at_start=true", "model.sft_warmup_steps=2", "logging.tensorboard=true")
    straight, split = tmp_path / "straight", tmp_path / "split"
    main(tiny_args(straight, *common))
    # Calls: 1 untrained, 2 after the warm-up, 3 at step 2, 4 final. Stop in the last one
    # after it has been logged once by an earlier attempt: run it, then stop a re-run.
    real = _stop_evaluation(monkeypatch, 4)
    main(tiny_args(split, *common))
    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", real)
    main(tiny_args(split, "checkpoint.resume=auto", *common))
    # A finished run resumed from its step-0 warm-up checkpoint logs the warm-up's
    # evaluation again: its TensorBoard point must replace the earlier one.
    main(tiny_args(split, f"checkpoint.resume={split / 'checkpoints' / 'step_00000000'}",
                   *common))
    want, got = _tensorboard_points(straight), _tensorboard_points(split)
    assert got.keys() == want.keys()
    assert ("warmup_eval", "eval/accuracy_avg@1") in got and ("eval", "eval/accuracy_avg@1") in got
    for key in want:
        steps = [s for s, _ in got[key]]
        assert len(steps) == len(set(steps)), (key, got[key])
        assert got[key] == want[key], key
    assert _rows(straight) == _rows(split)
