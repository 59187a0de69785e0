"""PGPOTrainerSync's stages (verl's v1 loop), driven through an in-process TransferQueue.

``FakeTQ`` keeps each sample's fields in a dict and answers ``kv_batch_put``,
``kv_batch_get`` and ``kv_clear`` as TransferQueue does for the v1 trainer (fields back as
jagged or stacked tensors, ``list_of_dict_to_tensordict``). The actor worker group runs the
real ``ActorRolloutRefWorker.compute_log_prob`` body on a real verl ``TrainingWorker`` on
the data the keys point at, as the ``tqbridge`` decorator does in a Ray worker. The same
rollout goes through the legacy :class:`PGPORayTrainer`: both loops must give the same
dependency and the same advantages (one implementation, :mod:`pgpo_verl.steps`).
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.utils import tensordict_utils as tu
from verl.utils.tensordict_utils import list_of_dict_to_tensordict
from verl.workers.utils.padding import response_to_nested

import pgpo_core
from pgpo_verl import PGPOTrainerSync, steps
from pgpo_verl import trainer_v1 as trainer_v1_module
from pgpo_verl.trainer_v1 import padded_rollout, unpadded_fields
from test_verl_trainer import LocalActorGroup, _after_old_log_prob, _stock_advantages, _trainer
from test_verl_trainer import rollout  # noqa: F401  (the fixture)

PARTITION = "train"


def _rows(value):
    if isinstance(value, torch.Tensor):
        return list(value.unbind()) if value.is_nested else list(value)
    return value.tolist()


class FakeTQ:
    """TransferQueue's key-value calls, in this process."""

    def __init__(self):
        self.store: dict[tuple[str, str], dict] = {}

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        columns = {name: _rows(value) for name, value in fields.items()}
        for i, key in enumerate(keys):
            row = self.store.setdefault((partition_id, key), {})
            for name, values in columns.items():
                row[name] = values[i]
        # As TransferQueue: every field of the samples, no extra_info of the caller's.
        return KVBatchMeta(keys=list(keys), tags=tags or [{} for _ in keys],
                           partition_id=partition_id,
                           fields=sorted(self.store[(partition_id, keys[0])]))

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        rows = [self.store[(partition_id, key)] for key in keys]
        names = [n for n in (select_fields or rows[0]) if n in rows[0]]  # absent: skipped
        return list_of_dict_to_tensordict([{n: row[n] for n in names} for row in rows])

    def kv_clear(self, keys, partition_id):
        for key in keys:
            del self.store[(partition_id, key)]


class LocalActorGroupV1(LocalActorGroup):
    """The actor worker group of the v1 loop: ``compute_log_prob`` reads the keys' data,
    runs the worker method's body locally and writes its output back (what ``tqbridge``
    does); ``compute_pgpo_dependency`` takes plain TensorDicts, as in the legacy loop."""

    def __init__(self, verl_worker, tq):
        super().__init__(verl_worker)
        self._tq = tq
        self.calls = []

    def compute_log_prob(self, meta: KVBatchMeta) -> KVBatchMeta:
        self.calls.append(list(meta.keys))
        data = self._tq.kv_batch_get(meta.keys, meta.partition_id)
        for key, value in meta.extra_info.items():
            tu.assign_non_tensor_data(data, key, value)
        output = super().compute_log_prob(data)
        tensors = {k: v for k, v in output.items() if isinstance(v, torch.Tensor)}
        self._tq.kv_batch_put(meta.keys, meta.partition_id,
                              TensorDict(tensors, batch_size=len(meta)))
        return meta


def _config(**pgpo):
    return OmegaConf.create(dict(
        actor_rollout_ref=dict(
            actor=dict(loss_agg_mode="token-mean", loss_scale_factor=None),
            rollout=dict(temperature=1.0, n=3, calculate_log_probs=False)),
        algorithm=dict(adv_estimator="grpo", norm_adv_by_std_in_grpo=True, gamma=1.0,
                       lam=1.0, use_kl_in_reward=False),
        pgpo=pgpo))


def _v1_trainer(tiny, verl_worker, monkeypatch, **pgpo):
    from pgpo_verl.workaround import apply_no_image_workaround

    apply_no_image_workaround()
    _, processor, _ = tiny
    fake = FakeTQ()
    monkeypatch.setattr(trainer_v1_module, "tq", fake)
    import verl.trainer.ppo.v1.trainer_base as trainer_base

    monkeypatch.setattr(trainer_base, "tq", fake)
    trainer = PGPOTrainerSync.__new__(PGPOTrainerSync)  # the stages only; no Ray
    trainer.config = _config(**pgpo)
    trainer.processor, trainer.tokenizer = processor, processor.tokenizer
    trainer.pgpo, trainer._pgpo_ids = steps.init_section(trainer.config, processor,
                                                         processor.tokenizer)
    trainer.actor_rollout_wg = LocalActorGroupV1(verl_worker, fake)
    trainer.timing_raw = {}
    trainer.global_steps = 3  # as the legacy trainer's in test_verl_trainer
    return trainer, fake


def _put_rollout(fake, data) -> KVBatchMeta:
    """The rollout in TransferQueue's per-sample layout (agent_loop_tq.py)."""
    fields = unpadded_fields(data)
    rmask = data.batch["response_mask"]
    uids = list(data.non_tensor_batch["uid"])
    sessions: dict = {}
    keys = []
    for uid in uids:
        sessions[uid] = sessions.get(uid, -1) + 1
        keys.append(f"{uid}_{sessions[uid]}_0")
    fields["rm_scores"] = response_to_nested(data.batch["token_level_rewards"],
                                             _nested_mask(rmask))
    fake.kv_batch_put(keys, PARTITION, fields)
    extra = list_of_dict_to_tensordict(
        [dict(uid=u, multi_modal_inputs=m) for u, m in
         zip(uids, data.non_tensor_batch["multi_modal_inputs"], strict=True)])
    fake.kv_batch_put(keys, PARTITION, extra)
    return KVBatchMeta(keys=keys, tags=[{} for _ in keys], partition_id=PARTITION)


def _nested_mask(rmask):
    return torch.nested.as_nested_tensor([row[: int(row.sum())] for row in rmask],
                                         layout=torch.jagged)


def _v1_step(trainer, fake, data):
    meta = _put_rollout(fake, data)
    metrics: dict = {}
    trainer._compute_old_log_prob(meta, metrics)
    trainer._compute_advantage(meta, metrics)
    got = fake.kv_batch_get(meta.keys, PARTITION)
    return got, metrics, meta


def _padded(value, width):
    out = torch.zeros((len(_rows(value)), width))
    for i, row in enumerate(_rows(value)):
        out[i, : row.shape[-1]] = row
    return out


def test_pgpo_sync_is_registered_as_verls_sync_mode():
    assert get_trainer_cls("pgpo_sync") is PGPOTrainerSync
    trainer = PGPOTrainerSync.__new__(PGPOTrainerSync)
    trainer.trainer_mode = "pgpo_sync"  # what PPOTrainer.__init__ assigns
    assert trainer.trainer_mode == "sync"  # replay buffer, restore, refill: verl's sync
    with pytest.raises(ValueError, match="trainer_mode"):
        trainer.trainer_mode = "colocate_async"


def test_padded_rollout_inverts_the_transfer_queue_layout(tiny, rollout):
    data = rollout["data"]
    fields = unpadded_fields(data)
    back = padded_rollout(fields, pad_token_id=tiny[1].tokenizer.pad_token_id)
    mask = data.batch["attention_mask"].bool()
    for key in ("prompts", "responses", "input_ids", "attention_mask", "response_mask"):
        assert torch.equal(back.batch[key], data.batch[key]), key
    pos, pos_back = data.batch["position_ids"], back.batch["position_ids"]
    assert torch.equal(pos_back.transpose(0, 1)[:, mask], pos.transpose(0, 1)[:, mask])
    assert torch.equal(fields["loss_mask"].values(), fields["response_mask"].values())


@pytest.mark.parametrize("estimator", ["k3", "exact"])
def test_v1_stages_match_the_legacy_trainer(tiny, verl_worker, rollout, monkeypatch,
                                            estimator):
    data, rmask = rollout["data"], rollout["rmask"]
    legacy = _trainer(tiny, verl_worker, estimator=estimator)
    batch = _after_old_log_prob(legacy, data)
    legacy_dependency = batch.batch["pgpo_dependency"].clone()
    stock = _stock_advantages(batch, True)
    batch.batch["advantages"] = stock.clone()
    legacy._pgpo_reshape_advantages(batch)

    trainer, fake = _v1_trainer(tiny, verl_worker, monkeypatch, estimator=estimator)
    got, metrics, meta = _v1_step(trainer, fake, data)
    width = rmask.shape[1]
    dependency = _padded(got["pgpo_dependency"], width)
    advantages = _padded(got["advantages"], width)
    torch.testing.assert_close(dependency, legacy_dependency, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(advantages, batch.batch["advantages"], rtol=1e-5, atol=1e-6)
    # Eq. 7, mass conserved per response; and reweighted, not verl's GRPO.
    torch.testing.assert_close(advantages.sum(-1), rmask.sum(-1) * stock[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert (advantages - stock)[rmask].abs().max() > 1e-3
    # The blind keys were used (k-estimators) and cleared.
    assert not any(key.endswith(trainer_v1_module.BLIND_KEY_SUFFIX) for _, key in fake.store)
    blind_calls = [c for c in trainer.actor_rollout_wg.calls
                   if c[0].endswith(trainer_v1_module.BLIND_KEY_SUFFIX)]
    assert len(blind_calls) == (0 if estimator == "exact" else 1)
    expected = pgpo_core.weight_diagnostics(dependency, rmask, tau=0.4, beta=2.0)
    for name in ("dependency_mean", "frac_above_tau"):
        assert metrics[f"pgpo/{name}"] == pytest.approx(float(expected[name]))
    assert trainer.timing_raw["pgpo_blind_pass"] > 0


def test_v1_tau0_beta0_gives_verls_v1_advantages_bit_for_bit(tiny, verl_worker, rollout,
                                                             monkeypatch):
    data = rollout["data"]
    width = rollout["rmask"].shape[1]
    off, fake_off = _v1_trainer(tiny, verl_worker, monkeypatch, enable=False)
    got_off, metrics_off, _ = _v1_step(off, fake_off, data)
    assert "pgpo_dependency" not in got_off.keys()
    assert not any(k.startswith("pgpo/") for k in metrics_off)
    on, fake_on = _v1_trainer(tiny, verl_worker, monkeypatch, tau=0.0, beta=0.0)
    got_on, _, _ = _v1_step(on, fake_on, data)
    stock = _padded(got_off["advantages"], width)
    assert stock.abs().max() > 0.1
    assert torch.equal(_padded(got_on["advantages"], width), stock)


def test_v1_task_runner_refuses_a_mode_without_pgpo():
    from pgpo_verl.task_runner import pgpo_task_runner_v1

    runner_cls = pgpo_task_runner_v1().__ray_actor_class__  # the class Ray would run
    runner = runner_cls()
    config = OmegaConf.create({"trainer": {"v1": {"trainer_mode": "sync"}}})
    with pytest.raises(RuntimeError, match="PPOTrainerSync, not PGPO's"):
        runner.run(config)  # before TransferQueue or any worker starts


@pytest.mark.parametrize("blind", ["drop", "blacken"])
def test_v1_vppo_matches_the_legacy_trainer(tiny, verl_worker, rollout, monkeypatch, blind):
    """pgpo.algorithm=vppo through the v1 stages: the advantages TransferQueue hands the
    actor are the legacy trainer's VPPO advantages (the same steps.reshape), and vppo/*
    metrics replace pgpo/*. With VPPO's blackened patches the blind keys carry the
    rollout's images, blackened as the legacy trainer blackens them (same seed and step)."""
    vppo = dict(algorithm="vppo", estimator="k3", estimate_clip=10.0, blind=blind)
    data, rmask = rollout["data"], rollout["rmask"]
    legacy = _trainer(tiny, verl_worker, **vppo)
    batch = _after_old_log_prob(legacy, data)
    dependency = batch.batch["pgpo_dependency"].clone()
    stock = _stock_advantages(batch, True)
    batch.batch["advantages"] = stock.clone()
    legacy._pgpo_reshape_advantages(batch)

    trainer, fake = _v1_trainer(tiny, verl_worker, monkeypatch, **vppo)
    got, metrics, _ = _v1_step(trainer, fake, data)
    width = rmask.shape[1]
    torch.testing.assert_close(_padded(got["pgpo_dependency"], width), dependency,
                               rtol=1e-5, atol=1e-6)
    advantages = _padded(got["advantages"], width)
    torch.testing.assert_close(advantages, batch.batch["advantages"], rtol=1e-5, atol=1e-6)
    expected = pgpo_core.vppo_advantages(stock, dependency, rmask)
    assert bool((advantages[rmask & ~expected.token_mask] == 0).all())
    assert metrics["vppo/kept_frac"] == pytest.approx(
        float(expected.token_mask.sum() / rmask.sum()))
    assert not any(k.startswith("pgpo/") for k in metrics)
    assert ("vppo/blackened_patch_frac" in metrics) == (blind == "blacken")
    if blind == "blacken":  # the legacy trainer's count (the same patches)
        assert metrics["vppo/blackened_patch_frac"] == legacy._pgpo_metrics[
            "vppo/blackened_patch_frac"]
