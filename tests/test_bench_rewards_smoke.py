"""Smoke test of bench/bench_rewards.py: the script runs and prints its table.

Only that it runs (``--quick``): the timings are read by people, never asserted.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_rewards.py"


def test_bench_rewards_quick_runs_and_prints_its_table():
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for route in ("text/rational", "math-verify equal", "math-verify unequal"):
        assert sum(line.startswith(f"| {route} |") for line in rows) == 1, route
