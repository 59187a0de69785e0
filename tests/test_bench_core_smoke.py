"""Smoke test of bench/bench_core.py: the benchmark script runs and prints its tables.

Only that it runs (``--quick``, tiny shapes): the figures themselves are measured
and read by people, never asserted (speed belongs to bench/, not to tests).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_core.py"


def test_bench_core_quick_runs_and_prints_its_tables():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "## Exact KL (token_visual_dependency)" in out
    assert "## reshape_advantages" in out
    table_rows = [line for line in out.splitlines() if line.startswith("| ")]
    # KL: naive and one chunk size on numpy and on torch (per thread setting).
    assert sum(line.startswith("| numpy | naive") for line in table_rows) == 1
    assert sum(line.startswith("| numpy | chunk_size=") for line in table_rows) == 1
    torch_chunked = [line for line in table_rows
                     if line.startswith("| torch (") and "| chunk_size=" in line]
    assert torch_chunked
    # reshape_advantages: fixed and quantile thresholds on both backends.
    for prefix in ("| numpy | fixed", "| numpy | quantile", "| torch | fixed",
                   "| torch | quantile"):
        assert sum(line.startswith(prefix) for line in table_rows) == 1, prefix
