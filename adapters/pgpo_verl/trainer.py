"""``PGPORayTrainer``: verl's ``RayPPOTrainer`` with PGPO's token-level advantages.

verl's ``fit()`` is used as it is. Two of its hook methods are extended:

1. ``_compute_old_log_prob`` (the old log-probs, with the rollout policy's weights): after
   verl's own visual pass, the blind pass (:func:`pgpo_verl.blind_batch`) goes through the
   same actor worker group, and the token visual dependency ``S`` (PGPO Eq. 1) is stored in
   the batch as ``pgpo_dependency``. Estimators ``k1``/``k2``/``k3`` (the paper's) use the
   stock ``compute_log_prob`` for the blind pass and
   :func:`pgpo_core.sampled_token_dependency`; ``exact`` calls the worker method
   ``compute_pgpo_dependency`` (:class:`pgpo_verl.PGPOActorRolloutRefWorker`), which runs
   both passes per micro-batch and computes the full-vocabulary KL inside the worker.
2. ``_update_actor``: before verl's update, the advantages verl computed (GRPO/DAPO, ...)
   become ``A~ = A * w~`` (:func:`pgpo_core.reshape_advantages`, Eqs. 4-8), and PGPO's
   diagnostics (:func:`pgpo_core.weight_diagnostics`) join the step's metrics as
   ``pgpo/*``.

With ``tau = 0, beta = 0`` every weight is exactly 1 and the advantages are verl's, bit for
bit.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.utils import tensordict_utils as tu
from verl.workers.utils.padding import left_right_2_no_padding

import pgpo_core
from pgpo_verl.blind import blind_batch
from pgpo_verl.config import PGPOSection, parse_section
from pgpo_verl.workaround import apply_position_ids_workaround

__all__ = ["PGPORayTrainer", "DEPENDENCY_KEY", "pgpo_token_ids"]

DEPENDENCY_KEY = "pgpo_dependency"
"""Batch key of the ``(B, T)`` token visual dependency between the two hooks."""


def pgpo_token_ids(processor, tokenizer) -> dict[str, Any]:
    """The token ids :func:`blind_batch` needs, read from verl's processor and tokenizer."""
    if processor is None:
        raise ValueError("actor_rollout_ref.model.path: PGPO needs a vision-language model "
                         "with a processor (Qwen2-VL / Qwen2.5-VL); verl loaded none")
    image = getattr(processor, "image_token_id", None)
    if image is None:
        raise ValueError(f"processor: {type(processor).__name__} has no image_token_id; PGPO "
                         "supports Qwen2-VL / Qwen2.5-VL processors")
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError("tokenizer: no pad_token_id")
    markers = tuple(tokenizer.convert_tokens_to_ids(t)
                    for t in ("<|vision_start|>", "<|vision_end|>"))
    return dict(image_token_id=int(image), pad_token_id=int(pad),
                video_token_id=getattr(processor, "video_token_id", None),
                marker_ids=markers)


class PGPORayTrainer(RayPPOTrainer):
    """verl's PPO trainer with PGPO (configured by the top-level ``pgpo`` section)."""

    instances_built = 0
    """How many were built in this process (``PGPOTaskRunner`` checks that one was)."""

    def __init__(self, *args, **kwargs):
        apply_position_ids_workaround()  # verl 0.9.1: equal-length VL batches (workaround.py)
        super().__init__(*args, **kwargs)
        self._init_pgpo()
        type(self).instances_built += 1

    # -- set-up ---------------------------------------------------------------------------
    def _init_pgpo(self) -> None:
        """Validate the ``pgpo`` section and what PGPO needs from the rest of the config."""
        self.pgpo: PGPOSection = parse_section(self.config.get("pgpo", None))
        self._pgpo_metrics: dict[str, float] = {}
        if not self.pgpo.enable:
            return
        corr = self.config.algorithm.get("rollout_correction", None)
        if corr is not None and corr.get("bypass_mode", False):
            raise ValueError("algorithm.rollout_correction.bypass_mode: PGPO computes the "
                             "dependency next to the recomputed old log-probs; bypass mode "
                             "skips them. Set it to false.")
        groups = self.config.algorithm.get("filter_groups", None)
        if groups is not None and groups.get("enable", False):
            raise ValueError("algorithm.filter_groups.enable: verl 0.9's RayPPOTrainer loop "
                             "does not apply DAPO's dynamic sampling (only its v1 trainer "
                             "does); set it to false")
        self._pgpo_ids = pgpo_token_ids(self.processor, self.tokenizer)

    # -- hook 1: dependency next to the old log-probs ----------------------------------------
    def _compute_old_log_prob(self, batch: DataProto):
        old_log_prob, mfu = super()._compute_old_log_prob(batch)
        if self.pgpo.enable:
            start = time.perf_counter()
            dependency = self._pgpo_dependency(batch, old_log_prob.batch["old_log_probs"])
            old_log_prob.batch[DEPENDENCY_KEY] = dependency
            self._pgpo_metrics = {"timing_s/pgpo_blind_pass": time.perf_counter() - start}
        return old_log_prob, mfu

    def _pgpo_blind_batch(self, batch: DataProto) -> DataProto:
        ids = self._pgpo_ids
        blind = blind_batch(batch, image_token_id=ids["image_token_id"],
                            pad_token_id=ids["pad_token_id"],
                            video_token_id=ids["video_token_id"],
                            include_markers=self.pgpo.blind.include_markers,
                            marker_ids=ids["marker_ids"])
        blind.meta_info.setdefault("temperature",
                                   self.config.actor_rollout_ref.rollout.temperature)
        return blind

    def _pgpo_dependency(self, batch: DataProto, visual_log_probs: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` token visual dependency of the batch (0 on padding)."""
        core = self.pgpo.core
        mask = batch.batch["response_mask"].bool()
        blind = self._pgpo_blind_batch(batch)
        if core.estimator == "exact":
            visual_td = left_right_2_no_padding(batch.to_tensordict())
            blind_td = left_right_2_no_padding(blind.to_tensordict())
            tu.assign_non_tensor(visual_td, pgpo_chunk_size=core.chunk_size or 256)
            output = self.actor_rollout_wg.compute_pgpo_dependency(visual_td, blind_td)
            dependency = tu.get(output, DEPENDENCY_KEY).float()
        else:
            # The stock old-log-prob path, on the blind batch.
            blind_log_probs, _ = super()._compute_old_log_prob(blind)
            dependency = pgpo_core.sampled_token_dependency(
                visual_log_probs.float(), blind_log_probs.batch["old_log_probs"].float(), mask,
                estimator=core.estimator, clip=core.estimate_clip)
            if core.estimator == "k1":  # unbiased but signed; the weights need S >= 0
                dependency = dependency.clamp_min(0.0)
        return torch.where(mask, dependency, torch.zeros_like(dependency))

    # -- hook 2: advantages reshaped before the actor update ----------------------------------
    def _pgpo_reshape_advantages(self, batch: DataProto) -> dict[str, float]:
        """``batch.batch["advantages"] <- A * w~`` in place; returns the ``pgpo/*`` metrics."""
        if DEPENDENCY_KEY not in batch.batch.keys():
            raise RuntimeError(f"batch: no {DEPENDENCY_KEY!r}; PGPORayTrainer computes it in "
                               "_compute_old_log_prob, which this step did not run")
        dependency = batch.batch.pop(DEPENDENCY_KEY)
        mask = batch.batch["response_mask"].bool()
        kwargs = self.pgpo.core.weight_kwargs()
        advantages = batch.batch["advantages"]
        batch.batch["advantages"] = pgpo_core.reshape_advantages(
            advantages, dependency, mask, **kwargs).to(advantages.dtype)
        stats = pgpo_core.weight_diagnostics(dependency, mask, **kwargs)
        return {f"pgpo/{name}": float(value) for name, value in stats.items()}

    def _update_actor(self, batch: DataProto) -> DataProto:
        metrics: dict[str, float] = {}
        if self.pgpo.enable:
            metrics = {**self._pgpo_metrics, **self._pgpo_reshape_advantages(batch)}
        output = super()._update_actor(batch)
        output.meta_info["metrics"].update(metrics)
        return output
