"""torchrun entry point of test_vllm_train's multi-process test: the trainer with the tiny
model vLLM's CPU attention serves and rewards that differ within groups (the patches the
in-process tests make with monkeypatch, made here in each rank's own process)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _vllm_tiny import VLLM_TINY  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.policy import model as policy_model  # noqa: E402
from reference_impl.data.rewards import RewardBreakdown  # noqa: E402
from reference_impl.train import main  # noqa: E402


def varied_rewards(texts, answers, **_):
    return [RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
            for t in texts]


policy_model.TINY_MODEL = VLLM_TINY
rl_step_mod.verifiable_rewards = varied_rewards
main(sys.argv[1:])
