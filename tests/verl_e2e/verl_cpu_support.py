"""verl 0.9.1 on a CPU-only machine, for the end-to-end run: loaded in every Ray process.

``VERL_USE_EXTERNAL_MODULES=verl_cpu_support`` makes ``import verl`` import this module in
the driver, the task runner, the actor workers and the vLLM server actors alike (verl's
``verl/__init__.py``). Test support only: nothing in ``pgpo_verl`` depends on it. Each
workaround names the verl line it answers:

- the CPU platform (``tests/verl_plugin/cpu_platform.py``; verl ships CUDA/ROCm/NPU only),
  with ``GPU`` as its Ray resource: ``ResourcePoolManager`` counts only GPU/NPU resources
  and ``vLLMReplica.launch_servers`` reads GPU ids;
- the process-group backend: ``verl/utils/distributed.py``
  ``initialize_global_process_group_ray`` builds ``f"cpu:gloo,{device}:{backend}"``, which
  is ``"cpu:gloo,cpu:gloo"`` on CPU and refused by torch (a device named twice): plain
  ``"gloo"`` is passed instead;
- verl 0.9.1's equal-length crash of VL actor updates, worked around in stock verl's trainer
  too (``pgpo_verl.apply_position_ids_workaround``; ``PGPORayTrainer`` applies it itself),
  so that stock ``main_ppo`` runs the same steps as ``main_pgpo``;
- per-sample sampling seeds (:mod:`verl_e2e_seeds`), so a resumed run's rollouts equal an
  uninterrupted run's;
- the trace of the test (:mod:`verl_e2e_trace`), when ``PGPO_E2E_TRACE_DIR`` is set.
"""

from __future__ import annotations

import functools
import os

os.environ.setdefault("VERL_PLATFORM", "cpu")
os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
os.environ.setdefault("PGPO_VERL_CPU_RAY_RESOURCE", "GPU")

import cpu_platform  # noqa: E402,F401  (registers the "cpu" platform)
import verl.utils.distributed as _distributed  # noqa: E402


def _gloo_default(fn):
    @functools.wraps(fn)
    def wrapper(*args, backend=None, **kwargs):
        if backend is None or backend.startswith("cpu:gloo,cpu:"):
            backend = "gloo"
        return fn(*args, backend=backend, **kwargs)

    wrapper._pgpo_gloo = True
    return wrapper


if not getattr(_distributed.initialize_global_process_group_ray, "_pgpo_gloo", False):
    _distributed.initialize_global_process_group_ray = _gloo_default(
        _distributed.initialize_global_process_group_ray)

import verl_e2e_seeds  # noqa: E402
from import_hooks import after_import  # noqa: E402


def _position_ids_workaround(module) -> None:
    """Stock ``RayPPOTrainer`` applies the plugin's workaround when it is built (by then
    every import is done: applying it while ``ray_trainer`` is being imported would import
    ``pgpo_verl``, and so verl's v1 trainer module, half-way through its own import)."""
    init = module.RayPPOTrainer.__init__
    if getattr(init, "_pgpo_position_ids", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        from pgpo_verl.workaround import apply_position_ids_workaround

        apply_position_ids_workaround()
        init(self, *args, **kwargs)

    __init__._pgpo_position_ids = True
    module.RayPPOTrainer.__init__ = __init__


after_import("verl.trainer.ppo.ray_trainer", _position_ids_workaround)

verl_e2e_seeds.install()

if os.environ.get("PGPO_E2E_TRACE_DIR"):
    import verl_e2e_trace

    verl_e2e_trace.install()
