"""Train a Qwen2.5-VL policy with PGPO (or DAPO / GRPO / a PGPO ablation).

    python reference_impl/train.py                        # tiny model, synthetic task, CPU
    python reference_impl/train.py --help                 # every option, grouped
    python reference_impl/train.py --algo.name dapo rollout.temperature=0.7
    torchrun --nproc_per_node 8 reference_impl/train.py \\
        --config reference_impl/configs/paper_qwen2_5_vl_7b.yaml \\
        --model.path /models/Qwen2.5-VL-7B-Instruct --data.source /data/ViRL39K

Writes ``<train.output_dir>/``: ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``,
``learning_curves.png`` and ``samples.html``. SIGTERM (or Ctrl-C) saves a checkpoint
and exits with status 0 (during the end-of-run report: the report and ``summary.json``
are finished first); ``checkpoint.resume=auto`` continues from it exactly, with the
logs cut back to that checkpoint. Faults the user can fix (output folder, free disk,
model folder, data, damaged checkpoints, diverged weights) end with one line naming
the config field or file and exit status 1, before the model is built where possible.
"""

from __future__ import annotations

import gc
import json
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> dict:
    from reference_impl.config import ConfigError, load_config

    try:
        cfg = load_config(argv, prog="train.py")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    import torch

    from reference_impl.checkpoint import GracefulExit, atomic_write_text
    from reference_impl.distributed import init_distributed, shutdown
    from reference_impl.trainer import Trainer

    if torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
    # SIGTERM/SIGINT are handled from here to the end of the process: the trainer polls
    # the flag (and saves) while training; during the report and the summary a signal
    # only marks the stop, so summary.json is still written and the exit status is 0.
    with GracefulExit():
        env = init_distributed(device=cfg.train.device, backend=cfg.dist.backend,
                               timeout_minutes=cfg.dist.timeout_minutes)
        if env.distributed and env.device.type == "cpu":
            # Split the cores between the processes instead of oversubscribing them.
            torch.set_num_threads(max((os.cpu_count() or 1) // env.world_size, 1))
        finished = False
        trainer = None
        try:
            trainer = Trainer(cfg, env)
            summary = trainer.fit()
            finished = True
        finally:
            # Free the model (and with it DDP's hold on the process group) while the
            # interpreter is fully alive, then leave the group in step with the others.
            # The rollout engine goes first: vLLM tears down a group of its own.
            if trainer is not None:
                trainer.engine.close()
            del trainer
            gc.collect()
            shutdown(synchronize=finished)
        if env.is_main:
            os.makedirs(cfg.train.output_dir, exist_ok=True)
            atomic_write_text(os.path.join(cfg.train.output_dir, "summary.json"),
                              json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def cli(argv: list[str] | None = None) -> int:
    """``main`` for the command line: a fault the user can fix (bad data, output folder,
    model folder, damaged checkpoints, diverged weights) ends with one line naming the
    field or file and exit status 1, not a traceback."""
    from reference_impl.checkpoint import CheckpointError
    from reference_impl.preflight import PreflightError

    try:
        main(argv)
    except (PreflightError, CheckpointError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
