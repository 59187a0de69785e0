"""Check an end-to-end run's step metrics (verl's file logger, ``VERL_FILE_LOGGER_PATH``).

``python tests/verl_e2e/check_metrics.py OUTDIR/metrics.jsonl [--steps N]``: every training
step must log ``pgpo/dependency_mean``, ``pgpo/frac_above_tau`` and
``timing_s/pgpo_blind_pass`` (and at least N steps be there); prints each step's time, the
blind pass's share of it and the PGPO metrics. Exit status 1 when a metric is missing.
"""

from __future__ import annotations

import argparse
import json
import sys

REQUIRED = ("pgpo/dependency_mean", "pgpo/frac_above_tau", "timing_s/pgpo_blind_pass")
TIMERS = ("gen", "old_log_prob", "pgpo_blind_pass", "adv", "update_actor", "update_weights",
          "step")


def steps(path: str) -> list[tuple[int, dict]]:
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                out.append((record["step"], record["data"]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics")
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args(argv)
    records = steps(args.metrics)
    ok = len(records) >= args.steps
    if not ok:
        print(f"{len(records)} steps logged, expected >= {args.steps}")
    for step, data in records:
        missing = [k for k in REQUIRED if k not in data]
        ok &= not missing
        times = {t: data.get(f"timing_s/{t}") for t in TIMERS}
        share = (times["pgpo_blind_pass"] / times["step"]) if not missing else None
        print(f"step {step}: " + ", ".join(f"{t} {v:.3f}s" for t, v in times.items()
                                           if v is not None)
              + (f"; blind pass {100 * share:.1f}% of the step" if share is not None else ""))
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(data.items())
                               if k.startswith("pgpo/")))
        if missing:
            print(f"  MISSING: {missing}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
