"""torchrun entry point of test_vllm_train's multi-process test: the trainer with the tiny
model vLLM's CPU attention serves and rewards that differ within groups (the patches the
in-process tests make with monkeypatch, made here in each rank's own process)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _vllm_tiny import VLLM_TINY  # noqa: E402

from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.data.rewards import RewardBreakdown  # noqa: E402
from reference_impl.train import main  # noqa: E402


def varied_rewards(texts, answers, **_):
    return [RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
            for t in texts]


trainer_mod.TINY_MODEL = VLLM_TINY
trainer_mod.verifiable_rewards = varied_rewards
main(sys.argv[1:])
