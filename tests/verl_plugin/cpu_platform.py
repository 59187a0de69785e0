"""A CPU platform for verl 0.9.1, so its real FSDP engine runs in a test process.

verl ships platforms for CUDA, ROCm and NPU only. This registers ``cpu`` through verl's own
``PlatformRegistry`` (its documented plugin point); select it with ``VERL_PLATFORM=cpu``.
The FSDP engines are registered for the ``cuda``/``npu`` devices only, so the engine lookup
is pointed at the CUDA registration with ``VERL_ENGINE_DEVICE=cuda``; the engine itself
then runs on whatever ``get_device_name()`` says (``cpu``), over gloo.

Its Ray resource name is ``CPU``, or what ``PGPO_VERL_CPU_RAY_RESOURCE`` says: the
end-to-end run (``tests/verl_e2e``) sets ``GPU``, since verl's resource pool manager and its
vLLM replicas count and place only GPU/NPU resources (Ray is then started with a fake
``num_gpus``).

Test support only: nothing in ``pgpo_verl`` depends on it.
"""

from __future__ import annotations

import contextlib
import os
import types

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


def _cpu_module() -> types.ModuleType:
    """``torch.cpu`` plus the few ``torch.cuda`` calls verl makes unconditionally."""
    module = types.ModuleType("pgpo_cpu_device")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(module, name, getattr(torch.cpu, name))
    module.current_device = lambda: "cpu"
    module.device_count = lambda: 1
    module.set_device = lambda *a, **k: None
    module.synchronize = lambda *a, **k: None
    module.empty_cache = lambda: None
    module.is_available = lambda: True
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.max_memory_allocated = lambda *a, **k: 0
    module.max_memory_reserved = lambda *a, **k: 0
    module.memory_allocated = lambda *a, **k: 0
    module.memory_reserved = lambda *a, **k: 0
    module.reset_peak_memory_stats = lambda *a, **k: None
    module.mem_get_info = lambda *a, **k: (0, 0)
    module.get_device_name = lambda *a, **k: "cpu"
    # verl's checkpoint load restores the "device" RNG whenever the state has an entry named
    # after the device, and on this platform that entry is the CPU's own
    # (verl/utils/checkpoint/checkpoint_manager.py, load_rng_state): the CPU generator.
    module.get_rng_state = torch.get_rng_state
    module.set_rng_state = torch.set_rng_state
    return module


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """Platform backend for plain CPUs (gloo collectives)."""

    _module = _cpu_module()

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return self._module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        return False  # never auto-detected: only chosen with VERL_PLATFORM=cpu

    def current_device(self) -> str:
        # verl moves modules with ``.to(device=get_device_id())``: an index would mean an
        # accelerator, so the CPU's "current device" is the device string itself.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index=None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return os.environ.get("PGPO_VERL_CPU_RAY_RESOURCE", "CPU")

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None
