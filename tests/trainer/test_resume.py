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
from _tiny_run import tiny_args  # noqa: E402

from reference_impl import trainer as trainer_mod  # noqa: E402
from reference_impl.checkpoint import load_checkpoint  # noqa: E402
from reference_impl.rewards import RewardBreakdown  # noqa: E402
from reference_impl.train import main  # noqa: E402

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOLATILE = ("time_step", "time_update")


def varied_rewards(texts, answers, **_):
    """Rewards that differ within groups, so every step really updates the weights."""
    return [RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
            for t in texts]


def _train_rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if r["kind"] == "train"]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def test_resumed_run_matches_uninterrupted_run_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "verifiable_rewards", varied_rewards)
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
    from reference_impl import warmup as warmup_mod

    monkeypatch.setattr(trainer_mod, "verifiable_rewards", varied_rewards)
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
            return [{k: v for k, v in r.items() if k not in VOLATILE} for r in map(json.loads, f)]

    assert [r["sft_step"] for r in rows(split) if r["kind"] == "sft"] == [1, 2, 3, 4]
    assert rows(straight) == rows(split)
