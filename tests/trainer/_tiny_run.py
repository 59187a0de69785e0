"""Smallest trainer settings that still exercise every stage, and a torchrun launcher
(shared by the trainer, vLLM and CUDA tests)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = [
    "data.image_size=56", "data.min_pixels=3136", "data.max_pixels=3136", "data.eval_size=2",
    "rollout.prompts_per_step=2", "rollout.samples_per_prompt=2",
    "rollout.max_response_length=6",
    "optim.mini_batch_size=1", "optim.micro_batch_size=2",
    "model.sft_warmup_steps=0",
    "eval.num_prompts=2", "eval.k=1", "eval.every=0", "eval.at_start=false",
    "logging.progress_bar=false", "logging.tensorboard=false",
    "logging.html_samples=2", "checkpoint.every=0",
]


def tiny_args(output_dir, *extra):
    return [*TINY, f"train.output_dir={output_dir}", *extra]


def varied_rewards(texts, answers, **_):
    """A reward that differs within groups (even-length responses earn 1), so the tiny runs
    update every step; monkeypatched over ``reference_impl.loop.rl_step.verifiable_rewards``."""
    from reference_impl.data.rewards import RewardBreakdown

    return [RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
            for t in texts]


def comparable_metrics(output_dir):
    """The run's ``metrics.jsonl`` rows, timings left out (they differ between runs)."""
    from reference_impl.runlog.metrics import read_metrics
    from reference_impl.loop.timing import comparable_rows

    return comparable_rows(read_metrics(os.path.join(output_dir, "metrics.jsonl")))


def run_torchrun(script, args, *, processes, timeout, env=None):
    """``script args`` under torchrun with ``processes`` local processes (a free port for
    each run), from the repository root; fails with the output's tail unless every
    process exits 0. Returns the ``CompletedProcess``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--master_port", "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0",
           str(script), *args]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc
