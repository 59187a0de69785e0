"""main_pgpo's Hydra configs compose on top of verl's, and the version pin refuses others."""

from __future__ import annotations

import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import pgpo_core
import pgpo_verl
from pgpo_verl import main_pgpo  # registers the pgpo defaults
from pgpo_verl._version import check_verl_version

CONFIGS = os.path.join(os.path.dirname(pgpo_verl.__file__), "configs")


def _compose(name, overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIGS, version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def _verl_validates(config):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=config, use_reference_policy=need_reference_policy(config),
                    use_critic=need_critic(config))
    assert not need_critic(config) and not need_reference_policy(config)  # GRPO, no KL


def test_base_config_is_verl_plus_the_pgpo_defaults():
    config = _compose("pgpo_trainer")
    section = pgpo_verl.parse_section(config.pgpo)
    assert section.core == pgpo_core.PGPOConfig()
    assert config.trainer.use_v1 is False
    assert config.actor_rollout_ref.actor.clip_ratio_low == 0.2  # verl's own tree is there
    main_pgpo.check_config(config)


def test_paper_config_7b_and_3b():
    config = _compose("pgpo_qwen2_5_vl_7b", ["pgpo.tau=0.3", "pgpo.blind.include_markers=true"])
    section = pgpo_verl.parse_section(config.pgpo)
    assert section.core == pgpo_core.PGPOConfig(tau=0.3, beta=2.0, estimator="k3")
    # The blind pass is pgpo_torch.BlindPassConfig, nested as pgpo.blind.
    assert section.blind.mode == "drop" and section.blind.include_markers is True
    actor = config.actor_rollout_ref.actor
    assert (actor.clip_ratio_low, actor.clip_ratio_high) == (0.2, 0.28)
    assert actor.loss_agg_mode == "token-mean" and actor.use_kl_loss is False
    assert actor.optim.lr == 1e-6 and actor.ppo_mini_batch_size == 128
    assert config.data.train_batch_size == 384 and config.actor_rollout_ref.rollout.n == 5
    assert config.algorithm.adv_estimator == "grpo"
    main_pgpo.check_config(config)
    _verl_validates(config)
    small = _compose("pgpo_qwen2_5_vl_3b")
    _verl_validates(small)
    assert small.actor_rollout_ref.model.path == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert small.pgpo.tau == 0.4 and small.actor_rollout_ref.actor.clip_ratio_high == 0.28


def test_bad_overrides_fail_before_ray_starts():
    with pytest.raises(ValueError, match="pgpo.tau"):
        main_pgpo.check_config(_compose("pgpo_trainer", ["pgpo.tau=2.0"]))
    with pytest.raises(ValueError, match="trainer.v1.trainer_mode"):  # verl's, no PGPO
        main_pgpo.check_config(_compose("pgpo_trainer", ["trainer.use_v1=true",
                                                         "trainer.v1.trainer_mode=sync"]))


def test_v1_loop_is_accepted_with_the_pgpo_trainer_mode():
    config = _compose("pgpo_qwen2_5_vl_7b", ["trainer.use_v1=true"])
    assert config.trainer.v1.trainer_mode == "pgpo_sync"  # the configs' default
    main_pgpo.check_config(config)
    _verl_validates(config)


def test_verl_version_pin():
    assert check_verl_version() .startswith("0.9.")
    assert check_verl_version("0.9.7") == "0.9.7"
    for other in ("0.10.0", "0.8.2", "1.0"):
        with pytest.raises(ImportError, match="verl 0.9.x only"):
            check_verl_version(other)


def test_task_runner_uses_pgpo_worker_and_trainer():
    """main_pgpo's Ray actor is verl's TaskRunner with PGPO's worker class for the actor
    role (built here without starting Ray)."""
    from verl.trainer import main_ppo_v0
    from verl.trainer.ppo.ray_trainer import Role

    from pgpo_verl import PGPOActorRolloutRefWorker

    from pgpo_verl.task_runner import pgpo_task_runner

    runner_cls = pgpo_task_runner().__ray_actor_class__
    assert issubclass(runner_cls, main_ppo_v0.TaskRunner.__ray_actor_class__)
    runner = runner_cls()
    worker_cls, _ = runner.add_actor_rollout_worker(_compose("pgpo_qwen2_5_vl_3b"))
    assert worker_cls is PGPOActorRolloutRefWorker
    remote = runner.role_worker_mapping[Role.ActorRollout]
    assert remote.__ray_actor_class__ is PGPOActorRolloutRefWorker
    assert runner.mapping[Role.ActorRollout] == "global_pool"


def _fake_verl_run(builds: bool):
    """A stand-in for verl's TaskRunner.run whose globals are a private dict, as Ray gives
    the class shipped by value: it records the trainer class its name resolves to."""
    import types

    source = ("def run(self, config):\n"
              "    seen.append(RayPPOTrainer)\n"
              "    if BUILDS:\n"
              "        RayPPOTrainer.instances_built += 1\n")
    private = {"RayPPOTrainer": object, "seen": [], "BUILDS": builds}
    exec(compile(source, "<verl TaskRunner.run>", "exec"), private)
    return types.FunctionType(private["run"].__code__, private), private


@pytest.mark.parametrize("builds", [True, False])
def test_task_runner_swaps_the_trainer_in_the_globals_verl_reads(monkeypatch, builds):
    """The runner swaps ``RayPPOTrainer`` in the globals of the very ``run`` it calls (not a
    module attribute, which a by-value copy does not read), restores it, and fails when no
    PGPORayTrainer was built (the silent fall-back to stock GRPO)."""
    from pgpo_verl import PGPORayTrainer
    from pgpo_verl.task_runner import pgpo_task_runner

    runner_cls = pgpo_task_runner().__ray_actor_class__
    verl_runner = runner_cls.__mro__[1]
    fake, private = _fake_verl_run(builds)
    monkeypatch.setattr(verl_runner, "run", fake)
    runner = runner_cls.__new__(runner_cls)
    if builds:
        runner.run(None)
    else:
        with pytest.raises(RuntimeError, match="built no PGPORayTrainer"):
            runner.run(None)
    assert private["seen"] == [PGPORayTrainer]
    assert private["RayPPOTrainer"] is object  # restored
