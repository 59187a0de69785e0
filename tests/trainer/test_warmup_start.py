"""Warm-up only runs (train.total_steps=0), RL started from their checkpoint with its own
optimiser settings, and the supervised warm-up on a local file's reference answers."""

import json
import os
import sys

import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import tiny_args  # noqa: E402

from reference_impl.runlog import checkpoint as ckpt  # noqa: E402
from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import warmup as warmup_mod  # noqa: E402
from reference_impl.config import ConfigError, load_config  # noqa: E402
from reference_impl.policy.distributed import DistEnv  # noqa: E402
from reference_impl.train import main  # noqa: E402

pytestmark = pytest.mark.slow


def test_warmup_only_run_then_rl_with_its_own_learning_rate(tmp_path):
    warm = tmp_path / "warm"
    summary = main(tiny_args(warm, "model.sft_warmup_steps=2", "train.total_steps=0"))
    assert summary["steps"] == 0
    found = ckpt.find_latest(warm / "checkpoints")
    assert found is not None
    saved = ckpt.load_checkpoint(found, map_location="cpu")
    assert saved.extra["step"] == 0 and saved.extra["warmup_done"] is True

    cfg = load_config(tiny_args(tmp_path / "rl", "train.total_steps=1", "optim.lr=5e-4",
                                f"checkpoint.resume={found}"))
    trainer = trainer_mod.Trainer(cfg, DistEnv())
    assert trainer.resume()
    # The warm-up's weights, but this run's optimiser settings (nothing RL had done).
    for name, value in trainer.policy.state_dict().items():
        assert torch.equal(value, saved.model_state[name]), name
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(5e-4)
    assert trainer.run.warmup_done and trainer.run.step == 0


def test_zero_steps_needs_a_warmup():
    with pytest.raises(ConfigError, match="train.total_steps"):
        load_config(["train.total_steps=0", "model.sft_warmup_steps=0"])


def _write_jsonl(folder, rows):
    folder.mkdir()
    for i, row in enumerate(rows):
        Image.new("RGB", (56, 56), (40 * i, 80, 160)).save(folder / f"{i}.png")
    with open(folder / "train.jsonl", "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"images": [f"{i}.png"], **row}) + "\n")
    return folder / "train.jsonl"


def test_warmup_on_a_local_file_teaches_its_references(tmp_path, monkeypatch):
    rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1),
             "reasoning": f"{i} plus one is {i + 1}."} for i in range(6)]
    rows[5].pop("reasoning")  # no reference: the minimal <think> block
    path = _write_jsonl(tmp_path / "data", rows)
    taught = []
    real = warmup_mod.teacher_forced_batch

    def recording(processor, questions, images, targets, **kw):
        taught.extend(targets)
        return real(processor, questions, images, targets, **kw)

    monkeypatch.setattr(warmup_mod, "teacher_forced_batch", recording)
    summary = main(tiny_args(tmp_path / "run", f"data.source={path}", "data.eval_size=2",
                             "data.shuffle=false", "model.sft_warmup_steps=1",
                             "train.total_steps=1", "data.reference_column=reasoning"))
    assert summary["steps"] == 1
    # One warm-up batch of prompts_per_step * samples_per_prompt = 4 rows, in file order.
    assert taught == [f"<think>{i} plus one is {i + 1}.</think> \\boxed{{{i + 1}}}"
                      for i in range(4)]
