"""PGPO with TRL: a GRPO script with one import changed, runnable offline on a CPU.

The README's snippet made whole: a tiny randomly initialised Qwen2.5-VL and its offline
processor (``pgpo_torch.build_tiny_qwen2_5_vl``), a synthetic image dataset built with
``datasets``, a reward function, and ``pgpo_torch.trl.PGPOTrainer`` in place of
``trl.GRPOTrainer``. PGPO's settings are ``pgpo`` (a ``pgpo_core.PGPOConfig``) and
``blind_pass`` (a ``pgpo_torch.BlindPassConfig``); TRL's own ``temperature``, ``epsilon``
and ``epsilon_high`` are the ones PGPO uses. With a real model, pass
``"Qwen/Qwen2.5-VL-3B-Instruct"`` (or a local path) as ``model`` and its ``AutoProcessor``.

After each rollout the trainer logs PGPO's diagnostics through TRL's metrics
(``pgpo/dependency_mean``, ``pgpo/frac_above_tau``, ``pgpo/weight_max``, ...).

Usage::

    python examples/trl_pgpo.py            # 20 optimiser steps
    python examples/trl_pgpo.py --quick    # 2 steps, a smoke run
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from datasets import Dataset
from PIL import Image

import pgpo_core
from pgpo_torch import BlindPassConfig, build_tiny_qwen2_5_vl
from pgpo_torch.trl import PGPOConfig, PGPOTrainer  # instead of trl's GRPOConfig, GRPOTrainer

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
           "black": (0, 0, 0), "white": (255, 255, 255)}


def colour_dataset(n: int, seed: int = 0) -> Dataset:
    """``n`` conversational prompts, each with a plain 56 x 56 image and its colour name."""
    rng = np.random.default_rng(seed)
    names = [sorted(COLOURS)[i] for i in rng.integers(0, len(COLOURS), size=n)]
    return Dataset.from_dict({
        "prompt": [[{"role": "user", "content": "What colour is this image? One word."}]] * n,
        "image": [Image.fromarray(np.full((56, 56, 3), COLOURS[c], dtype=np.uint8))
                  for c in names],
        "answer": names,
    })


def colour_reward(completions, answer, **kwargs) -> list[float]:
    """Toy reward in [0, 1]: the share of the answer's letters found in the completion
    (partial credit, so that an untrained model's completions already differ)."""
    texts = [c[-1]["content"].lower() for c in completions]
    return [len(set(a) & set(t)) / len(set(a)) for t, a in zip(texts, answer)]


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 steps, a smoke run")
    parser.add_argument("--output_dir", default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)

    model, processor = build_tiny_qwen2_5_vl(seed=0, attn_implementation="sdpa")
    model.train()
    output_dir = args.output_dir or tempfile.mkdtemp(prefix="pgpo-trl-")
    config = PGPOConfig(
        output_dir=output_dir,
        # PGPO: the paper's tau and beta, the k3 estimate the paper trains with.
        pgpo=pgpo_core.PGPOConfig(tau=0.4, beta=2.0, estimator="k3"),
        blind_pass=BlindPassConfig(mode="drop"),
        # TRL's GRPO settings (PGPOConfig defaults to DAPO's loss, clip 0.2 / 0.28, no KL).
        num_generations=4, per_device_train_batch_size=4, steps_per_generation=1,
        max_completion_length=8 if args.quick else 16, temperature=1.0,
        learning_rate=1e-3, max_steps=2 if args.quick else 20, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, seed=0,
        gradient_checkpointing=False, dataloader_num_workers=0,
    )
    trainer = PGPOTrainer(model=model, reward_funcs=colour_reward, args=config,
                          train_dataset=colour_dataset(64), processing_class=processor)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "pgpo/dependency_mean" in h]
    for h in logged:
        print({k: round(v, 4) for k, v in h.items()
               if k in ("step", "reward", "loss", "pgpo/dependency_mean", "pgpo/weight_max")})
    return trainer


if __name__ == "__main__":
    main()
