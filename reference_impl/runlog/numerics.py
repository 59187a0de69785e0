"""The numerical environment of a run: what, besides the seed and the configuration,
decides its floating-point results bit for bit.

On the CPU one seed's path is reproducible only where all of these agree: the intra-op
thread count (matrix products and reductions split their sums by thread), the CPU's
instruction set as torch, MKL and oneDNN dispatch on it (AVX-512 or AVX2 kernels round
differently), and the library versions. A one-ulp difference anywhere grows into different
sampled responses within a few RL steps, so runs from different settings agree in
distribution (compare ranges over seeds), not value for value; see
``docs/evidence/determinism_2026-12-06.md``. ``train.py`` writes
:func:`numerical_environment` into ``summary.json`` as ``"numerics"``.
"""

from __future__ import annotations

import os
import platform
from typing import Any

__all__ = ["numerical_environment"]

_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY",
             "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
             "CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")


def _cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def numerical_environment() -> dict[str, Any]:
    """Versions, thread count, CPU model and kernel dispatch of this process, as plain
    JSON values (the environment variables only where set)."""
    import numpy
    import torch

    out: dict[str, Any] = {
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "numpy": numpy.__version__,
        "pillow": _version("PIL"),
        "python": platform.python_version(),
        "torch_num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "cpu_capability": _cpu_capability(torch),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["gpu"] = torch.cuda.get_device_name()
    env = {k: os.environ[k] for k in _ENV_VARS if k in os.environ}
    if env:
        out["env"] = env
    return out


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):  # not installed, or no version attribute
        return None


def _cpu_capability(torch: Any) -> str | None:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        return None
