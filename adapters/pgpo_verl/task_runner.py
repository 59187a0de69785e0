"""``main_pgpo``'s Ray task runners: verl's ``TaskRunner`` (legacy) and ``TaskRunnerV1``
with PGPO's worker and trainer.

verl's ``TaskRunner.run`` (``verl/trainer/main_ppo_v0.py``) builds the trainer by the name
``RayPPOTrainer``, looked up in the globals of its own function. Under Ray those globals are
not verl's module: the runner class is reached through ``TaskRunner.__ray_actor_class__``
(the module attribute is Ray's actor wrapper), so cloudpickle ships it *by value*, and in
the Ray actor the method's globals are a private copy holding verl's own
``RayPPOTrainer``. Assigning ``main_ppo_v0.RayPPOTrainer`` there changes nothing: that is
how ``main_pgpo`` once trained stock GRPO while its config said ``pgpo.enable: True``.

So the legacy runner's ``run`` sets the name in the globals of the very function it is about to call, and fails
after the run when no :class:`PGPORayTrainer` was built: a silent fall-back to verl's trainer
cannot happen again.

The v1 runner (``trainer.use_v1=true``) builds its trainer with
``get_trainer_cls(config.trainer.v1.trainer_mode)``, a registry imported inside
``TaskRunnerV1.run``, so a real module of the Ray actor's process. The PGPO trainer is
registered there by importing :mod:`pgpo_verl.trainer_v1` in that process, right before
verl's ``run``; the runner refuses to start when the mode does not name a
:class:`~pgpo_verl.PGPOTrainerSync`, and fails after the run when none was built.
"""

from __future__ import annotations

__all__ = ["pgpo_task_runner", "pgpo_task_runner_v1"]


def pgpo_task_runner(num_cpus: float = 1):
    """The Ray actor class ``run_ppo`` starts: verl's ``TaskRunner`` whose actor role is
    :class:`pgpo_verl.PGPOActorRolloutRefWorker` and whose trainer is
    :class:`pgpo_verl.PGPORayTrainer`."""
    import ray
    from verl.trainer import main_ppo_v0
    from verl.trainer.ppo.ray_trainer import Role

    from pgpo_verl.trainer import PGPORayTrainer
    from pgpo_verl.workers import PGPOActorRolloutRefWorker

    class PGPOTaskRunner(main_ppo_v0.TaskRunner.__ray_actor_class__):
        def add_actor_rollout_worker(self, config):
            _, group_cls = super().add_actor_rollout_worker(config)
            for role in (Role.ActorRollout, Role.ActorRolloutRef):
                if role in self.role_worker_mapping:
                    self.role_worker_mapping[role] = ray.remote(PGPOActorRolloutRefWorker)
            return PGPOActorRolloutRefWorker, group_cls

        def run(self, config):
            verl_run = super().run  # its globals name the trainer class it builds
            names = verl_run.__func__.__globals__
            if "RayPPOTrainer" not in names:
                raise RuntimeError("pgpo_verl: verl's TaskRunner.run does not build the "
                                   "trainer by the name RayPPOTrainer; port "
                                   "pgpo_verl/task_runner.py to this verl version")
            verl_trainer, names["RayPPOTrainer"] = names["RayPPOTrainer"], PGPORayTrainer
            built = PGPORayTrainer.instances_built
            try:
                result = verl_run(config)
            finally:
                names["RayPPOTrainer"] = verl_trainer
            if PGPORayTrainer.instances_built == built:
                raise RuntimeError("pgpo_verl: verl's TaskRunner.run built no "
                                   "PGPORayTrainer; the run used verl's own trainer")
            return result

    return ray.remote(num_cpus=num_cpus)(PGPOTaskRunner)


def pgpo_task_runner_v1(num_cpus: float = 1):
    """The Ray actor class ``run_ppo`` starts for ``trainer.use_v1=true``: verl's
    ``TaskRunnerV1`` whose trainer (``trainer.v1.trainer_mode``) is
    :class:`pgpo_verl.PGPOTrainerSync`, registered in the runner's own process."""
    import ray
    from verl.trainer.main_ppo import TaskRunnerV1

    class PGPOTaskRunnerV1(TaskRunnerV1.__ray_actor_class__):
        def run(self, config):
            # Imported here, in the Ray actor: registers "pgpo_sync" in this process's
            # verl trainer registry, the one TaskRunnerV1.run looks the mode up in.
            from verl.trainer.ppo.v1 import get_trainer_cls

            from pgpo_verl.trainer_v1 import PGPOTrainerSync

            mode = config.trainer.v1.trainer_mode
            if not issubclass(get_trainer_cls(mode), PGPOTrainerSync):
                raise RuntimeError(f"pgpo_verl: trainer.v1.trainer_mode={mode!r} is verl's "
                                   f"{get_trainer_cls(mode).__name__}, not PGPO's; set "
                                   "trainer.v1.trainer_mode=pgpo_sync")
            built = PGPOTrainerSync.instances_built
            result = super().run(config)
            if not isinstance(self.trainer, PGPOTrainerSync) or \
                    PGPOTrainerSync.instances_built == built:
                raise RuntimeError("pgpo_verl: verl's TaskRunnerV1.run built "
                                   f"{type(self.trainer).__name__}, not PGPOTrainerSync")
            return result

    return ray.remote(num_cpus=num_cpus)(PGPOTaskRunnerV1)
