"""Tables of the region-task RL runs (protocol_region_rl_2026-12-07.md) with the compare
study's own summaries and paired intervals (reference_impl.experiments.tables).

    python docs/evidence/2026-12-07_region_rl/analyse.py RUNS_DIR [WARMUPS_DIR [NAME [OUT]]]

RUNS_DIR holds ``<algo>-seed<S>/metrics.jsonl``; WARMUPS_DIR ``seed<S>/summary.json`` (the
registered warm-ups, for the held-out accuracy each RL run starts from). Writes
``NAME.md`` and ``NAME.json`` into OUT (default: beside this file; NAME: ``region_rl``; the
runs without gradient clipping: ``region_rl_noclip``; the lengths task's registered RL,
not yet run: ``lengths_rl`` into ``docs/evidence/2026-12-07_lengths``). The task named in the header is NAME's first
word."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
from reference_impl.experiments.tables import summarize, write_tables  # noqa: E402

ALGOS = ("pgpo", "dapo", "grpo", "vppo")


def main(runs: str, warmups: str = "/work/runs/region", name: str = "region_rl",
         out: str | None = None) -> None:
    results = {}
    for algo in ALGOS:
        for seed in range(10):
            path = os.path.join(runs, f"{algo}-seed{seed}", "metrics.jsonl")
            if not os.path.exists(path):
                continue
            with open(path) as f:
                rows = [json.loads(line) for line in f]
            if not any(r.get("kind") == "eval" and r.get("phase") == "final" for r in rows):
                continue  # not finished
            with open(os.path.join(warmups, f"seed{seed}", "summary.json")) as f:
                warm = json.load(f)["eval_warmed_up"]
            results.setdefault(algo, {})[seed] = summarize(
                rows, before_rl=warm["accuracy_avg@4"],
                perception_before=warm["perception_accuracy"])
    here = out or os.path.dirname(os.path.abspath(__file__))
    task = name.split("_")[0]
    text = write_tables(results, os.path.join(here, f"{name}.md"),
                        header=f"# RL on the {task} task from the registered warm-ups "
                               f"({name}; protocols in docs/)")
    with open(os.path.join(here, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(text)


if __name__ == "__main__":
    main(*sys.argv[1:])
