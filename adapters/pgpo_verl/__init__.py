"""pgpo_verl: PGPO as a plugin for verl (tested with verl 0.9.1), no fork of its trainer.

- :class:`PGPORayTrainer`: verl's ``RayPPOTrainer`` with PGPO's token-level advantages
  (blind pass next to the old log-probs, ``pgpo_core.reshape_advantages`` before the actor
  update, ``pgpo/*`` metrics); with ``pgpo.algorithm=vppo`` VPPO's advantages
  (``pgpo_core.vppo_advantages``, ``vppo/*`` metrics) on the same hooks.
- :class:`PGPOTrainerSync`: the same in verl's v1 trainer (``trainer.use_v1=true``),
  registered as ``trainer.v1.trainer_mode=pgpo_sync`` (``pgpo_verl.trainer_v1``). Both
  trainers run the steps of :mod:`pgpo_verl.steps`.
- :func:`blind_batch`: the blind-pass ``DataProto`` of a rollout batch (a pure function);
  :func:`blackened_batch`: VPPO's perturbation of it (random patches blacked out).
- :class:`PGPOActorRolloutRefWorker`: verl's actor worker with the exact-KL method and the
  workaround for verl 0.9.1's no-image bug (:func:`apply_no_image_workaround`); the
  trainer applies the one for its equal-length bug (:func:`apply_position_ids_workaround`).
- ``python -m pgpo_verl.main_pgpo``: verl's ``main_ppo`` with the ``pgpo`` config section.

Ye et al., "Not All Tokens See Equally: Perception-Grounded Policy Optimization for Large
Vision-Language Models", arXiv 2604.01840 (2026).
"""

from pgpo_verl._version import TESTED_VERL, check_verl_version

check_verl_version()

from pgpo_verl.blind import blackened_batch, blind_batch  # noqa: E402
from pgpo_verl.config import PGPOSection, parse_section, section_defaults  # noqa: E402
from pgpo_verl.trainer import PGPORayTrainer  # noqa: E402
from pgpo_verl.trainer_v1 import PGPOTrainerSync  # noqa: E402
from pgpo_verl.workaround import (  # noqa: E402
    apply_no_image_workaround, apply_position_ids_workaround)
from pgpo_verl.workers import PGPOActorRolloutRefWorker, exact_dependency  # noqa: E402

__all__ = [
    "TESTED_VERL",
    "PGPOActorRolloutRefWorker",
    "PGPORayTrainer",
    "PGPOTrainerSync",
    "PGPOSection",
    "apply_no_image_workaround",
    "apply_position_ids_workaround",
    "blackened_batch",
    "blind_batch",
    "check_verl_version",
    "exact_dependency",
    "parse_section",
    "section_defaults",
]
