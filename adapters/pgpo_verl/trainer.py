"""``PGPORayTrainer``: verl's ``RayPPOTrainer`` with PGPO's token-level advantages.

verl's ``fit()`` is used as it is. Two of its hook methods are extended:

1. ``_compute_old_log_prob`` (the old log-probs, with the rollout policy's weights): after
   verl's own visual pass, the blind pass (:func:`pgpo_verl.blind_batch`, or
   :func:`pgpo_verl.blackened_batch` with ``pgpo.blind.mode=blacken``) goes through the
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

import torch

from verl import DataProto
from verl.trainer.ppo.ray_trainer import RayPPOTrainer

from pgpo_verl import steps
from pgpo_verl.config import PGPOSection
from pgpo_verl.steps import DEPENDENCY_KEY, pgpo_token_ids
from pgpo_verl.workaround import apply_position_ids_workaround

__all__ = ["PGPORayTrainer", "DEPENDENCY_KEY", "pgpo_token_ids"]


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
        self._pgpo_metrics: dict[str, float] = {}
        self.pgpo: PGPOSection
        self.pgpo, self._pgpo_ids = steps.init_section(self.config, self.processor,
                                                       self.tokenizer)
        if not self.pgpo.enable:
            return
        groups = self.config.algorithm.get("filter_groups", None)
        if groups is not None and groups.get("enable", False):
            raise ValueError("algorithm.filter_groups.enable: verl 0.9's RayPPOTrainer loop "
                             "does not apply DAPO's dynamic sampling (only its v1 trainer "
                             "does: trainer.use_v1=true); set it to false")

    # -- hook 1: dependency next to the old log-probs ----------------------------------------
    def _compute_old_log_prob(self, batch: DataProto):
        old_log_prob, mfu = super()._compute_old_log_prob(batch)
        if self.pgpo.enable:
            start = time.perf_counter()
            dependency, blind_metrics = self._pgpo_dependency(
                batch, old_log_prob.batch["old_log_probs"])
            old_log_prob.batch[DEPENDENCY_KEY] = dependency
            self._pgpo_metrics = {f"timing_s/{steps.BLIND_TIMER}": time.perf_counter() - start,
                                  **blind_metrics}
        return old_log_prob, mfu

    def _pgpo_blind_batch(self, batch: DataProto) -> DataProto:
        return steps.make_blind_batch(
            batch, self.pgpo, self._pgpo_ids,
            temperature=self.config.actor_rollout_ref.rollout.temperature,
            step=self.global_steps, seed=steps.data_seed(self.config))

    def _pgpo_dependency(self, batch: DataProto, visual_log_probs: torch.Tensor
                         ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(B, T)`` token visual dependency of the batch (0 on padding), and the blind
        pass's metrics (:func:`pgpo_verl.steps.blind_pass_metrics`)."""
        blind = self._pgpo_blind_batch(batch)
        metrics = steps.blind_pass_metrics(batch, blind, self.pgpo)
        if self.pgpo.core.estimator == "exact":
            return (steps.exact_dependency_via(self.actor_rollout_wg, batch, blind, self.pgpo),
                    metrics)
        # The stock old-log-prob path, on the blind batch.
        blind_log_probs, _ = super()._compute_old_log_prob(blind)
        return steps.sampled_dependency(visual_log_probs, blind_log_probs.batch["old_log_probs"],
                                        batch.batch["response_mask"], self.pgpo), metrics

    # -- hook 2: advantages reshaped before the actor update ----------------------------------
    def _pgpo_reshape_advantages(self, batch: DataProto) -> dict[str, float]:
        """``batch.batch["advantages"] <- A * w~`` in place; returns the ``pgpo/*`` metrics."""
        if DEPENDENCY_KEY not in batch.batch.keys():
            raise RuntimeError(f"batch: no {DEPENDENCY_KEY!r}; PGPORayTrainer computes it in "
                               "_compute_old_log_prob, which this step did not run")
        dependency = batch.batch.pop(DEPENDENCY_KEY)
        batch.batch["advantages"], metrics = steps.reshape(
            batch.batch["advantages"], dependency, batch.batch["response_mask"], self.pgpo)
        return metrics

    def _update_actor(self, batch: DataProto) -> DataProto:
        metrics: dict[str, float] = {}
        if self.pgpo.enable:
            metrics = {**self._pgpo_metrics, **self._pgpo_reshape_advantages(batch)}
        output = super()._update_actor(batch)
        output.meta_info["metrics"].update(metrics)
        return output
