"""``PGPOTrainerSync``: PGPO in verl's v1 trainer (``trainer.use_v1=true``).

verl 0.9.1's v1 loop (``verl/trainer/ppo/v1/trainer_base.py`` ``PPOTrainer._step_once``)
keeps the rollout batch in TransferQueue and hands its stages a ``KVBatchMeta`` (keys
into the store); each stage reads the fields it needs and writes its results back. Its
extension point for a whole algorithm is the trainer registry: ``register_trainer(name)``
on a ``PPOTrainer`` subclass, chosen by ``trainer.v1.trainer_mode`` (``TaskRunnerV1.run``,
``verl/trainer/main_ppo.py``). PGPO registers :class:`PGPOTrainerSync` as
``pgpo_sync``: verl's ``PPOTrainerSync`` (colocated, synchronous) with two stages
extended, and the actor role run by :class:`pgpo_verl.PGPOActorRolloutRefWorker`:

1. ``_compute_old_log_prob``: after verl's visual pass, the rollout batch is read from
   TransferQueue and padded (:func:`padded_rollout`); the blind batch
   (:func:`pgpo_verl.steps.make_blind_batch`; with ``pgpo.blind.mode=blacken`` the
   rollout's images with patches blacked out) is put back under keys of its own
   (``<key>/pgpo_blind``), the stock ``compute_log_prob`` of the actor worker group runs on
   them, and the dependency (:func:`pgpo_verl.steps.sampled_dependency`) is written as the
   field ``pgpo_dependency``; the blind keys are cleared. ``pgpo.estimator=exact`` sends
   both padded batches to the worker method ``compute_pgpo_dependency`` instead, as the
   legacy trainer does. The whole pass is timed as ``timing_s/pgpo_blind_pass``.
2. ``_compute_advantage``: after verl's estimator (GRPO, ...), the advantages in
   TransferQueue become ``A * w~`` (:func:`pgpo_verl.steps.reshape`) and the ``pgpo/*``
   metrics join the step's; the actor update then reads PGPO's advantages.

The advantage-estimator and policy-loss registries are not enough on their own: an
estimator gets rewards, mask and group index, a policy loss gets log-probs, advantages
and mask, and neither sees the images or can run a second forward pass (see
``V1_NOTES.md``).

The registered name is not verl's mode name: ``PPOTrainer`` compares
``self.trainer_mode`` with ``"sync"`` to choose its replay buffer, the checkpoint
restore and refill behaviour (``trainer_base.py`` ``_build_replay_buffer``,
``_load_checkpoint``, ``_next_train_batch``). :attr:`PGPOTrainerSync.trainer_mode`
therefore reads ``"sync"``, the mode it extends.
"""

from __future__ import annotations

import torch
import transfer_queue as tq
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.debug import marked_timer
from verl.utils.tensordict_utils import list_of_dict_to_tensordict
from verl.workers.utils.padding import response_from_nested, response_to_nested

from pgpo_verl import steps
from pgpo_verl.config import PGPOSection
from pgpo_verl.steps import DEPENDENCY_KEY
from pgpo_verl.workaround import apply_position_ids_workaround

__all__ = ["PGPOTrainerSync", "TRAINER_MODE", "BLIND_KEY_SUFFIX", "padded_rollout",
           "unpadded_fields"]

TRAINER_MODE = "pgpo_sync"
"""``trainer.v1.trainer_mode`` of :class:`PGPOTrainerSync`."""

BLIND_KEY_SUFFIX = "/pgpo_blind"
"""TransferQueue keys of the blind batch: the sample's key and this suffix."""

ROLLOUT_FIELDS = ("prompts", "responses", "position_ids", "response_mask")
"""What :func:`padded_rollout` reads (the agent loop's per-sample layout,
``verl/trainer/ppo/v1/agent_loop_tq.py`` ``_agent_loop_postprocess``)."""


def _rows(value) -> list[torch.Tensor]:
    """Per-sample tensors of a TransferQueue field: jagged, or stacked when all equal."""
    return list(value.unbind()) if getattr(value, "is_nested", False) else list(value)


def padded_rollout(data: TensorDict, *, pad_token_id: int) -> DataProto:
    """The legacy loop's padded rollout batch from TransferQueue's per-sample fields.

    ``prompts`` left-padded ``(B, P)``, ``responses`` right-padded ``(B, T)``,
    ``input_ids``/``attention_mask`` ``(B, P + T)``, ``position_ids`` ``(B, 4, P + T)`` (or
    ``(B, P + T)`` for a text model), ``response_mask`` ``(B, T)``; P, T the longest prompt
    and response. ``multi_modal_inputs``, when read, is carried as a non-tensor.
    """
    prompts, responses = _rows(data["prompts"]), _rows(data["responses"])
    positions, masks = _rows(data["position_ids"]), _rows(data["response_mask"])
    batch, width_p = len(prompts), max(p.shape[-1] for p in prompts)
    width_t = max(r.shape[-1] for r in responses)
    ids = torch.full((batch, width_p + width_t), pad_token_id, dtype=prompts[0].dtype)
    attention = torch.zeros((batch, width_p + width_t), dtype=torch.int64)
    response_mask = torch.zeros((batch, width_t), dtype=masks[0].dtype)
    pos = torch.zeros((batch, *positions[0].shape[:-1], width_p + width_t),
                      dtype=positions[0].dtype)
    for i, (prompt, response, position, mask) in enumerate(
            zip(prompts, responses, positions, masks, strict=True)):
        n_p, n_t = prompt.shape[-1], response.shape[-1]
        if position.shape[-1] != n_p + n_t or mask.shape[-1] != n_t:
            raise ValueError(f"sample {i}: position_ids length {position.shape[-1]}, "
                             f"response_mask {mask.shape[-1]}; prompt {n_p} + response {n_t}")
        span = slice(width_p - n_p, width_p + n_t)
        ids[i, span] = torch.cat([prompt, response])
        attention[i, span] = 1
        pos[i, ..., span] = position
        response_mask[i, :n_t] = mask
    tensors = dict(prompts=ids[:, :width_p], responses=ids[:, width_p:], input_ids=ids,
                   attention_mask=attention, position_ids=pos, response_mask=response_mask)
    non_tensors = {}
    if "multi_modal_inputs" in data.keys():
        import numpy as np

        inputs = list(data["multi_modal_inputs"])
        non_tensors["multi_modal_inputs"] = np.empty(len(inputs), dtype=object)
        non_tensors["multi_modal_inputs"][:] = [getattr(x, "data", x) for x in inputs]
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def unpadded_fields(batch: DataProto) -> TensorDict:
    """The inverse of :func:`padded_rollout`: per-sample fields in the agent loop's layout,
    for ``tq.kv_batch_put`` (``multi_modal_inputs`` too when the batch carries it, as
    VPPO's blackened pass does)."""
    tensors = batch.batch
    width_p = tensors["prompts"].shape[1]
    images = batch.non_tensor_batch.get("multi_modal_inputs")
    samples = []
    for i in range(len(batch)):
        keep = tensors["attention_mask"][i].bool()
        n_t = int(keep[width_p:].sum())
        response_mask = tensors["response_mask"][i, :n_t]
        samples.append(dict(
            prompts=tensors["prompts"][i][keep[:width_p]],
            responses=tensors["responses"][i, :n_t],
            input_ids=tensors["input_ids"][i][keep],
            attention_mask=torch.ones(int(keep.sum()), dtype=torch.int64),
            position_ids=tensors["position_ids"][i][..., keep],
            response_mask=response_mask, loss_mask=response_mask))
        if images is not None:
            samples[-1]["multi_modal_inputs"] = images[i]
    return list_of_dict_to_tensordict(samples)


@register_trainer(TRAINER_MODE)
class PGPOTrainerSync(PPOTrainerSync):
    """verl's v1 synchronous trainer with PGPO (configured by the top-level ``pgpo``
    section)."""

    VERL_MODE = "sync"
    """The verl trainer mode this one extends (what ``self.trainer_mode`` reads)."""

    instances_built = 0
    """How many were built in this process (``PGPOTaskRunnerV1`` checks that one was)."""

    def __init__(self, config):
        apply_position_ids_workaround()  # verl 0.9.1: equal-length VL batches (workaround.py)
        super().__init__(config)
        type(self).instances_built += 1

    @property
    def trainer_mode(self) -> str:
        return self.VERL_MODE

    @trainer_mode.setter
    def trainer_mode(self, name: str) -> None:  # PPOTrainer.__init__ assigns the config's
        if name not in (TRAINER_MODE, self.VERL_MODE):
            raise ValueError(f"trainer.v1.trainer_mode: {type(self).__name__} is "
                             f"{TRAINER_MODE!r} (verl's {self.VERL_MODE!r}), got {name!r}")

    # -- set-up ---------------------------------------------------------------------------
    def _init_tokenizer(self):
        super()._init_tokenizer()
        self.pgpo: PGPOSection
        self.pgpo, self._pgpo_ids = steps.init_section(self.config, self.processor,
                                                       self.tokenizer)

    def _init_resource_pool_mgr(self):
        super()._init_resource_pool_mgr()
        import ray

        from pgpo_verl.workers import PGPOActorRolloutRefWorker

        for role in (Role.ActorRollout, Role.ActorRolloutRef, Role.Actor):
            if role in self.role_worker_mapping:
                self.role_worker_mapping[role] = ray.remote(PGPOActorRolloutRefWorker)

    # -- hook 1: dependency next to the old log-probs ----------------------------------------
    def _compute_old_log_prob(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_old_log_prob(batch, metrics)
        if self.pgpo.enable:
            with marked_timer(steps.BLIND_TIMER, self.timing_raw, color="purple"):
                mask = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                       select_fields=["response_mask"])["response_mask"]
                dependency, blind_metrics = self._pgpo_dependency(batch)
                metrics.update(blind_metrics)
                batch = tq.kv_batch_put(
                    keys=batch.keys, partition_id=batch.partition_id,
                    fields=TensorDict({DEPENDENCY_KEY: _nested(dependency, mask)},
                                      batch_size=len(batch)))
        return batch

    def _pgpo_dependency(self, batch: KVBatchMeta) -> tuple[torch.Tensor, dict[str, float]]:
        """``(B, T)`` token visual dependency of the batch (0 on padding), and the blind
        pass's metrics (:func:`pgpo_verl.steps.blind_pass_metrics`)."""
        exact = self.pgpo.core.estimator == "exact"
        images = exact or self.pgpo.blind.mode == "blacken"  # the pass reads the pixels
        fields = [*ROLLOUT_FIELDS, "old_log_probs"] + (["multi_modal_inputs"] if images else [])
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=fields)
        visual = padded_rollout(data, pad_token_id=self._pgpo_ids["pad_token_id"])
        temperature = self.config.actor_rollout_ref.rollout.temperature
        blind = steps.make_blind_batch(visual, self.pgpo, self._pgpo_ids,
                                       temperature=temperature, step=self.global_steps,
                                       seed=steps.data_seed(self.config))
        metrics = steps.blind_pass_metrics(visual, blind, self.pgpo)
        if exact:
            visual.meta_info["temperature"] = temperature
            return (steps.exact_dependency_via(self.actor_rollout_wg, visual, blind, self.pgpo),
                    metrics)
        visual_log_probs = _padded(data["old_log_probs"], visual.batch["response_mask"])
        blind_log_probs = self._blind_log_probs(batch, blind)
        return steps.sampled_dependency(visual_log_probs, blind_log_probs,
                                        visual.batch["response_mask"], self.pgpo), metrics

    def _blind_log_probs(self, batch: KVBatchMeta, blind: DataProto) -> torch.Tensor:
        """The stock ``compute_log_prob`` of the actor worker group on the blind batch,
        put in TransferQueue under keys of its own (cleared after), ``(B, T)``."""
        keys = [key + BLIND_KEY_SUFFIX for key in batch.keys]
        tq.kv_batch_put(keys=keys, partition_id=batch.partition_id,
                        fields=unpadded_fields(blind), tags=[{} for _ in keys])
        try:
            # What verl's own old-log-prob pass sets (trainer_base.py _compute_old_log_prob);
            # the meta a put returns carries no extra_info of the batch's.
            extra = {"calculate_entropy": False, "compute_loss": False,
                     "temperature": self.config.actor_rollout_ref.rollout.temperature}
            meta = KVBatchMeta(partition_id=batch.partition_id, keys=keys,
                               tags=[{} for _ in keys], extra_info=extra)
            output = self.actor_rollout_wg.compute_log_prob(meta)
            if len(output) != len(batch):
                raise RuntimeError(f"blind compute_log_prob: {len(output)} samples, sent "
                                   f"{len(batch)}")
            data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id,
                                   select_fields=["log_probs", "response_mask"])
        finally:
            tq.kv_clear(keys=keys, partition_id=batch.partition_id)
        log_probs = response_from_nested(_as_nested(data["log_probs"]),
                                         _as_nested(data["response_mask"]))
        return _padded(log_probs, blind.batch["response_mask"])

    # -- hook 2: advantages reshaped before the actor update ----------------------------------
    def _compute_advantage(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        batch = super()._compute_advantage(batch, metrics)
        if self.pgpo.enable:
            data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                   select_fields=["advantages", DEPENDENCY_KEY,
                                                  "response_mask"])
            mask = _padded(data["response_mask"])
            advantages, pgpo_metrics = steps.reshape(
                _padded(data["advantages"], mask), _padded(data[DEPENDENCY_KEY], mask), mask,
                self.pgpo)
            tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                            fields=TensorDict(
                                {"advantages": _nested(advantages, data["response_mask"])},
                                batch_size=len(batch)))
            metrics.update(pgpo_metrics)
        return batch


def _as_nested(value: torch.Tensor) -> torch.Tensor:
    """A jagged tensor (TransferQueue stacks fields whose samples all have one shape)."""
    if getattr(value, "is_nested", False):
        return value
    return torch.nested.as_nested_tensor(list(value), layout=torch.jagged)


def _padded(value: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, T)`` right-padded with zeros (to ``like``'s width when given)."""
    rows = _rows(value)
    width = like.shape[1] if like is not None else max(r.shape[-1] for r in rows)
    out = torch.zeros((len(rows), width), dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, : row.shape[-1]] = row
    return out


def _nested(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Padded ``(B, T)`` back to the per-sample response lengths of ``mask``."""
    return response_to_nested(padded, _as_nested(mask))
