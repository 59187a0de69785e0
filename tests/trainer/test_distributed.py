"""Two processes under torchrun (gloo, CPU) train the tiny model for two steps, with DDP
and with FSDP2 (``fully_shard``, the GPU path, which also runs on CPU)."""

import json
import os
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import tiny_args  # noqa: E402

from reference_impl.checkpoint import load_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("fsdp", ["off", "on"])
def test_two_process_gloo_run(tmp_path, fsdp):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0",
           os.path.join(REPO, "reference_impl", "train.py"),
           *tiny_args(out, "train.total_steps=2", "algo.dynamic_sampling=false",
                      "dist.backend=gloo", "train.device=cpu", "checkpoint.every=1",
                      f"dist.fsdp={fsdp}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    with open(out / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["updated"] == 1.0
        # Means over both ranks of per-rank means of {0, 1} rewards: multiples of 1/8.
        assert (r["reward"] * 8) == pytest.approx(round(r["reward"] * 8), abs=1e-9)
    final = [r for r in rows if r["kind"] == "eval"][-1]
    # eval.num_prompts=2 prompts split over 2 ranks, k=1: the all-reduced count is 2.
    assert final["responses"] == 2.0

    # Each rank drew its own prompts: the shared data cursor advanced by 2 ranks x 2
    # prompts per step.
    step2 = load_checkpoint(out / "checkpoints" / "step_00000002")
    assert step2.data_state == {"cursor": 2 * 2 * 2}
    assert step2.extra["world_size"] == 2
    assert len(step2.rng_state["per_rank"]) == 2
    # The ranks sampled different responses: their torch RNG states differ.
    a, b = (s["torch"] for s in step2.rng_state["per_rank"])
    assert not torch.equal(a, b)
    # The weights moved between the two steps (gradients flowed through DDP).
    step1 = load_checkpoint(out / "checkpoints" / "step_00000001")
    assert any(not torch.equal(step1.model_state[k], step2.model_state[k])
               for k in step2.model_state)


def test_one_process_gets_the_single_process_strategy():
    from reference_impl.distributed import DistEnv, SingleProcess, parallel_strategy

    model = torch.nn.Linear(2, 2)
    strategy = parallel_strategy(model, DistEnv(), fsdp="auto")
    assert isinstance(strategy, SingleProcess)
    assert strategy.model is model and strategy.policy is model
    assert not strategy.collective_generate
    optimizer = torch.optim.AdamW(model.parameters())
    model_state, optim_state = strategy.full_state(optimizer)
    assert model_state.keys() == model.state_dict().keys()
    # cpu_offload is an FSDP setting: with one process it would do nothing, so it is refused.
    with pytest.raises(ValueError, match="dist.cpu_offload"):
        parallel_strategy(model, DistEnv(), cpu_offload=True)
