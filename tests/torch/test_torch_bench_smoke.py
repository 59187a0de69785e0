"""Smoke run of bench/bench_torch.py --quick (no timing asserted; the figures are noise)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "bench_torch.py"


def test_bench_torch_quick_runs_and_its_variants_agree():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for header in ("### 1. Blind pass (b) vs (a)", "### 2. Exact dependency",
                   "### 3. PGPO step vs GRPO step"):
        assert header in text
    # Every table row has its ratio column filled with a finite positive number.
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| pass |") and not line.startswith("| variant |")
            and not line.startswith("| step |")]
    assert len(rows) == 4 + 3 + 5
    for row in rows:
        ratio = float(row.strip("| ").split("|")[-1])
        assert 0 < ratio < float("inf")
    # The three KL routes computed the same numbers (a real check, not a timing).
    diff = float(re.search(r"max \|difference\| to naive = ([0-9.e+-]+)", text).group(1))
    assert diff < 1e-5
    # (b) is shorter than (a) by the 16 visual tokens of the 112 x 112 image.
    lengths = {row.split("|")[1].strip(): int(row.split("|")[2]) for row in rows[:4]}
    assert lengths["(a) mask attention, vision tower run (paper)"] \
        - lengths["(b) drop visual tokens"] == 16
