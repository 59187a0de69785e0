"""Train a Qwen2.5-VL policy with PGPO (or DAPO / GRPO / a PGPO ablation).

    python reference_impl/train.py                        # tiny model, synthetic task, CPU
    python reference_impl/train.py --help                 # every option, grouped
    python reference_impl/train.py --algo.name dapo rollout.temperature=0.7
    torchrun --nproc_per_node 8 reference_impl/train.py \\
        --config reference_impl/configs/paper_qwen2_5_vl_7b.yaml \\
        --model.path /models/Qwen2.5-VL-7B-Instruct --data.source /data/ViRL39K

Writes ``<train.output_dir>/``: ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``,
``learning_curves.png`` and ``samples.html``. SIGTERM (or Ctrl-C) saves a checkpoint
and exits with status 0; ``checkpoint.resume=auto`` continues from it exactly.
"""

from __future__ import annotations

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

    from reference_impl.distributed import init_distributed, shutdown
    from reference_impl.trainer import Trainer

    if torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
    env = init_distributed(device=cfg.train.device, backend=cfg.dist.backend,
                           timeout_minutes=cfg.dist.timeout_minutes)
    if env.distributed and env.device.type == "cpu":
        # Split the cores between the processes instead of oversubscribing them.
        torch.set_num_threads(max((os.cpu_count() or 1) // env.world_size, 1))
    try:
        trainer = Trainer(cfg, env)
        summary = trainer.fit()
    finally:
        shutdown()
    if env.is_main:
        os.makedirs(cfg.train.output_dir, exist_ok=True)
        with open(os.path.join(cfg.train.output_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2, default=str)
    return summary


if __name__ == "__main__":
    main()
