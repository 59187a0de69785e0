"""Two processes under torchrun (gloo, CPU) train the tiny model for two steps, with DDP
and with FSDP2 (``fully_shard``, the GPU path, which also runs on CPU)."""

import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import REPO, run_torchrun, tiny_args  # noqa: E402

from reference_impl.runlog.checkpoint import load_checkpoint  # noqa: E402
from reference_impl.loop.timing import comparable_rows  # noqa: E402

pytestmark = pytest.mark.slow


def _torchrun(out, *extra):
    """Two gloo processes on the CPU train the tiny model with ``extra`` settings."""
    return run_torchrun(os.path.join(REPO, "reference_impl", "train.py"),
                        tiny_args(out, "algo.dynamic_sampling=false", "dist.backend=gloo",
                                  "train.device=cpu", *extra),
                        processes=2, timeout=240, env={"OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("fsdp", ["off", "on"])
def test_two_process_gloo_run(tmp_path, fsdp):
    out = tmp_path / "run"
    _torchrun(out, "train.total_steps=2", "checkpoint.every=1", f"dist.fsdp={fsdp}")

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
    step2 = load_checkpoint(out / "checkpoints" / "step_00000002", consolidate=True)
    assert step2.data_state == {"cursor": 2 * 2 * 2}
    assert step2.extra["world_size"] == 2
    assert len(step2.rng_state["per_rank"]) == 2
    # The ranks sampled different responses: their torch RNG states differ.
    a, b = (s["torch"] for s in step2.rng_state["per_rank"])
    assert not torch.equal(a, b)
    # The weights moved between the two steps (gradients flowed through DDP).
    step1 = load_checkpoint(out / "checkpoints" / "step_00000001", consolidate=True)
    assert any(not torch.equal(step1.model_state[k], step2.model_state[k])
               for k in step2.model_state)


def test_one_process_gets_the_single_process_strategy():
    from reference_impl.policy.distributed import DistEnv, SingleProcess, parallel_strategy

    model = torch.nn.Linear(2, 2)
    strategy = parallel_strategy(model, DistEnv(), fsdp="auto")
    assert isinstance(strategy, SingleProcess)
    assert strategy.model is model and strategy.policy is model
    assert not strategy.collective_generate
    optimizer = torch.optim.AdamW(model.parameters())
    state = strategy.checkpoint_state(optimizer)
    assert state["model_state"].keys() == model.state_dict().keys()
    assert state["optimizer_state"] is None  # no step taken: nothing to save
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    assert strategy.checkpoint_state(optimizer)["optimizer_state"]["state"]
    # cpu_offload is an FSDP setting: with one process it would do nothing, so it is refused.
    with pytest.raises(ValueError, match="dist.cpu_offload"):
        parallel_strategy(model, DistEnv(), cpu_offload=True)


def test_fsdp2_checkpoints_are_sharded_and_resume_exactly(tmp_path):
    """Under FSDP2 each rank writes its own shards (torch.distributed.checkpoint; nothing
    is gathered on rank 0), and 2 + 1 steps resumed equal 3 uninterrupted steps, bit for
    bit: weights, Adam's moments and step counts, metrics."""
    common = ("dist.fsdp=on", "model.sft_warmup_steps=1", "checkpoint.every=1",
              "checkpoint.keep_last=10")
    straight, split = tmp_path / "straight", tmp_path / "split"
    _torchrun(straight, "train.total_steps=3", *common)
    _torchrun(split, "train.total_steps=2", *common)
    _torchrun(split, "train.total_steps=3", "checkpoint.resume=auto", *common)

    saved = load_checkpoint(split / "checkpoints")
    assert saved.sharded is not None and saved.model_state is None
    assert sorted(p.name for p in saved.sharded.iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp"]  # one file per rank
    a = load_checkpoint(straight / "checkpoints", consolidate=True)
    b = load_checkpoint(split / "checkpoints", consolidate=True)
    assert a.step == b.step == 3
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k
    moments = [(k, v) for k, v in a.optimizer_state["state"].items()]
    assert moments, "the optimiser's state is saved"
    for k, state in moments:
        for name, value in state.items():
            other = b.optimizer_state["state"][k][name]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other)), (k, name)
    # The warm-up checkpoint (before any RL update) holds no RL optimiser state: asking
    # FSDP2 for it would initialise it with a zero step and shift Adam's bias correction.
    warm = load_checkpoint(split / "checkpoints" / "step_00000000", consolidate=True)
    assert warm.optimizer_state is None

    def rows(out):
        with open(out / "metrics.jsonl") as f:
            return comparable_rows(map(json.loads, f))

    assert rows(straight) == rows(split)


def _reduce_worker(rank, port, queue):
    """One of two gloo processes: reduce per-rank metrics, put the result on ``queue``."""
    import torch.distributed as dist

    from reference_impl.policy.distributed import DistEnv, reduce_metrics

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    try:
        # Per-rank values; rank 1 lists its keys in another order (the reduction sorts).
        mine = {"reward": [0.25, 0.75][rank], "weight_max": [3.0, 5.5][rank],
                "scale_min": [0.4, 0.1][rank], "scale_max": [1.0, 0.9][rank],
                "kept_tokens": [10.0, 20.0][rank]}
        if rank == 1:
            mine = dict(reversed(list(mine.items())))
        queue.put((rank, reduce_metrics(mine, DistEnv(rank=rank, world_size=2),
                                        torch.device("cpu"))))
    finally:
        dist.destroy_process_group()


def test_metrics_over_processes_keep_extremes_as_extremes():
    """A per-process maximum or minimum (PGPO's ``weight_max``, VPPO's ``scale_min`` /
    ``scale_max``) is the maximum / minimum over processes, not their mean; every other
    metric is the mean of the processes' values. Checked by hand on two gloo processes."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reduce_worker, args=(r, port, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = {"reward": 0.5, "weight_max": 5.5, "scale_min": 0.1, "scale_max": 1.0,
                "kept_tokens": 15.0}
    assert results[0] == expected and results[1] == expected


def test_one_process_metrics_are_returned_as_they_are():
    from reference_impl.policy.distributed import DistEnv, reduce_metrics

    m = {"reward": 0.25, "weight_max": 3.0}
    assert reduce_metrics(m, DistEnv(), torch.device("cpu")) == m
