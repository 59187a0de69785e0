"""Rollout engines: what samples the G responses per prompt for training and evaluation.

An engine turns (question, image) prompts into a :class:`reference_impl.rollout.batch.RolloutBatch`
(the trainer's padded layout) and, where it keeps its own copy of the policy, takes the
trainer's weights after each optimiser step (:meth:`RolloutEngine.sync_weights`).

Registry (``rollout.backend``):

- ``hf``: Hugging Face ``generate`` on the trained module itself (no copy, nothing to sync).
- ``vllm``: an in-process vLLM ``LLM`` colocated with training (:mod:`.vllm_engine`).
- ``auto``: ``vllm`` when it is importable and the run is one process on CUDA, else ``hf``.
"""

from __future__ import annotations

from typing import Any

import torch

from reference_impl.rollout.engines.base import (RolloutEngine, rollout_mismatch_metrics,
                                                 truncated_is_weights)
from reference_impl.rollout.engines.registry import (ENGINES, build_engine, engine_class,
                                                     register_engine, resolve_backend,
                                                     vllm_importable)


def check_trainer_setup(cfg: Any, device: Any, world_size: int) -> str:
    """The engine name ``rollout.backend`` resolves to, after that engine's
    :meth:`~RolloutEngine.check_setup` (no model weights needed): a bad setup raises
    :class:`~reference_impl.config.ConfigError` naming the config field, which the
    command line reports in one line (exit status 2)."""
    device = torch.device(device)
    name = resolve_backend(cfg.rollout.backend, device.type, world_size)
    engine_class(name).check_setup(cfg, device=device, world_size=world_size)
    return name


def build_trainer_engine(name: str, *, cfg: Any, env: Any, strategy: Any, processor: Any
                         ) -> RolloutEngine:
    """The engine ``name`` for the trainer's policy (:meth:`RolloutEngine.for_trainer`)."""
    return engine_class(name).for_trainer(cfg=cfg, env=env, strategy=strategy,
                                          processor=processor)


def weights_version(model: Any) -> int:
    """A number that changes whenever a parameter of ``model`` is modified in place
    (optimiser steps, ``load_state_dict``): the sum of the tensors' version counters."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local._version
    return total


__all__ = ["ENGINES", "RolloutEngine", "build_engine", "build_trainer_engine",
           "check_trainer_setup", "engine_class", "register_engine", "resolve_backend",
           "rollout_mismatch_metrics", "truncated_is_weights", "vllm_importable",
           "weights_version"]
