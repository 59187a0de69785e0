"""``python -m pgpo_verl.main_pgpo``: verl's ``main_ppo`` with PGPO.

The same Hydra entry point as ``verl.trainer.main_ppo`` (verl's ``ppo_trainer`` config, its
``run_ppo`` and its legacy ``TaskRunner``), with three differences:

- the config gains a top-level ``pgpo`` section, registered from
  :func:`pgpo_verl.section_defaults` (i.e. from ``pgpo_core.PGPOConfig``) and validated
  before Ray starts; override it like any verl field (``pgpo.tau=0.3``);
- the actor workers are :class:`pgpo_verl.PGPOActorRolloutRefWorker`;
- the trainer is :class:`pgpo_verl.PGPORayTrainer` (verl's legacy ``RayPPOTrainer`` loop,
  ``trainer.use_v1=false``, the default of the configs here), or with ``trainer.use_v1=true``
  :class:`pgpo_verl.PGPOTrainerSync` (verl's v1 loop, ``TaskRunnerV1``;
  ``trainer.v1.trainer_mode=pgpo_sync``, which the configs here set).

Example: ``python -m pgpo_verl.main_pgpo --config-name pgpo_qwen2_5_vl_7b
data.train_files=... data.val_files=...`` (see the README, section "verl").
"""

from __future__ import annotations

import hydra
from hydra.core.config_store import ConfigStore

from pgpo_verl.config import parse_section, section_defaults

ConfigStore.instance().store(name="pgpo_defaults", node={"pgpo": section_defaults()})


V1_TRAINER_MODES = ("pgpo_sync",)
"""``trainer.v1.trainer_mode`` values that build a PGPO trainer (``pgpo_verl.trainer_v1``)."""


def check_config(config) -> None:
    """PGPO's checks of a composed config, before Ray starts."""
    parse_section(config.get("pgpo", None))
    if config.trainer.get("use_v1", False):
        mode = config.trainer.get("v1", {}).get("trainer_mode", None)
        if mode not in V1_TRAINER_MODES:
            raise ValueError(f"trainer.v1.trainer_mode: {mode!r} is a verl trainer without "
                             f"PGPO; with trainer.use_v1=true set it to one of "
                             f"{list(V1_TRAINER_MODES)}")


@hydra.main(config_path="configs", config_name="pgpo_trainer", version_base=None)
def main(config):
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    check_config(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config),
                    use_critic=need_critic(config))
    from pgpo_verl.task_runner import pgpo_task_runner, pgpo_task_runner_v1

    runner = pgpo_task_runner_v1 if config.trainer.get("use_v1", False) else pgpo_task_runner
    run_ppo(config, task_runner_class=runner())


if __name__ == "__main__":
    main()
