"""What the end-to-end test checks inside the run: the advantages on their way to the actor.

Installed by :mod:`verl_cpu_support` when ``PGPO_E2E_TRACE_DIR`` is set, in every Ray
process; it acts in the task runner, where the trainer runs. Two records per step, each a
``torch.save`` file in that folder:

- ``reshape_<k>.pt`` (the k-th call of ``pgpo_core.reshape_advantages``, i.e. PGPO's
  hook): its inputs (verl's advantages, the dependency, the response mask, the weighting
  keyword arguments) and its output;
- ``vppo_<k>.pt`` (the k-th call of ``pgpo_core.vppo_advantages``, the hook with
  ``pgpo.algorithm=vppo``): its inputs and its output's advantages and token mask;
- ``update_<k>.pt`` (the k-th call of verl's ``RayPPOTrainer._update_actor``, i.e. what the
  trainer sends to the actor worker group): the batch's ``advantages`` and
  ``response_mask``.

Test support only; ``pgpo_verl`` knows nothing of it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

_calls = {"reshape": 0, "vppo": 0, "update": 0}


def _save(kind: str, record: dict) -> None:
    import torch

    folder = Path(os.environ["PGPO_E2E_TRACE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    _calls[kind] += 1
    torch.save(record, folder / f"{kind}_{_calls[kind]}.pt")


def _cpu(x):
    return x.detach().cpu().clone()


def _trace_update_actor() -> None:
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    original = RayPPOTrainer._update_actor
    if getattr(original, "_pgpo_traced", False):
        return

    @functools.wraps(original)
    def _update_actor(self, batch):
        _save("update", {"step": int(self.global_steps),
                         "advantages": _cpu(batch.batch["advantages"]),
                         "response_mask": _cpu(batch.batch["response_mask"])})
        return original(self, batch)

    _update_actor._pgpo_traced = True
    RayPPOTrainer._update_actor = _update_actor


def install() -> None:
    """Wrap ``pgpo_core.reshape_advantages`` and ``vppo_advantages`` (and, on the first
    call of either, verl's
    ``RayPPOTrainer._update_actor``: verl is fully imported by then)."""
    import pgpo_core

    original = pgpo_core.reshape_advantages
    if getattr(original, "_pgpo_traced", False):
        return

    @functools.wraps(original)
    def reshape_advantages(advantages, dependency, mask, **kwargs):
        _trace_update_actor()
        out = original(advantages, dependency, mask, **kwargs)
        _save("reshape", {"advantages": _cpu(advantages), "dependency": _cpu(dependency),
                          "mask": _cpu(mask), "kwargs": dict(kwargs), "out": _cpu(out)})
        return out

    reshape_advantages._pgpo_traced = True
    pgpo_core.reshape_advantages = reshape_advantages

    vppo = pgpo_core.vppo_advantages

    @functools.wraps(vppo)
    def vppo_advantages(advantages, dependency, mask, **kwargs):
        _trace_update_actor()
        out = vppo(advantages, dependency, mask, **kwargs)
        _save("vppo", {"advantages": _cpu(advantages), "dependency": _cpu(dependency),
                       "mask": _cpu(mask), "kwargs": dict(kwargs), "out": _cpu(out.advantages),
                       "token_mask": _cpu(out.token_mask), "scale": _cpu(out.scale)})
        return out

    pgpo_core.vppo_advantages = vppo_advantages
