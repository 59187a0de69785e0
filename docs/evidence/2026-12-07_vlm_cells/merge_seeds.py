"""The VLM cells over all eight registered seeds, as run (2026-12-07).

Seeds 0-3 ran in one sitting (their reports: ``<cell>/compare.json``), seeds 4-7 in the
next (``<cell>/seeds4-7/compare.json``; the run folders of the first sitting were not kept,
so ``compare.py`` could not report all eight at once). This joins the per-seed results and
applies the protocol's rule (docs/protocol_vlm_cells_2026-12-06.md): paired differences
PGPO - DAPO, Student-t 95 % over the seeds, and the difference of differences between
cells. Writes ``merged.json`` beside itself and prints the numbers.

    python docs/evidence/2026-12-07_vlm_cells/merge_seeds.py
"""
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
CELLS = ("today", "filler8", "noclip")
METRICS = ("final", "auc", "perception_final")


def runs_of(cell: str) -> dict[str, dict[int, dict]]:
    out = {"pgpo": {}, "dapo": {}}
    for part in (HERE / cell / "compare.json", HERE / cell / "seeds4-7" / "compare.json"):
        if part.exists():
            for algo, by_seed in json.loads(part.read_text())["runs"].items():
                if algo in out:
                    out[algo].update({int(k): v for k, v in by_seed.items()})
    return out


def interval(values) -> dict:
    x = np.asarray(values, float)
    n = len(x)
    half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return {"estimate": float(x.mean()), "low": float(x.mean() - half),
            "high": float(x.mean() + half), "n": n}


def verdict(ci: dict) -> str:
    return "helps" if ci["low"] > 0 else "hurts" if ci["high"] < 0 else "no difference"


def main() -> None:
    runs = {c: runs_of(c) for c in CELLS}
    paired = {c: sorted(set(runs[c]["pgpo"]) & set(runs[c]["dapo"])) for c in CELLS}
    merged = {"seeds": paired, "cells": {}, "between_cells": {}}
    for c in CELLS:
        r, seeds = runs[c], paired[c]
        cell = {m: interval([r["pgpo"][s][m] - r["dapo"][s][m] for s in seeds]) for m in METRICS}
        for algo in ("pgpo", "dapo"):
            cell[algo] = {key: float(np.mean([r[algo][s][key] for s in seeds]))
                          for key in ("before_rl", "final", "auc", "perception_final",
                                      "length_last")}
            cell[algo]["per_seed"] = {s: [r[algo][s]["before_rl"], r[algo][s]["final"]]
                                      for s in seeds}
        merged["cells"][c] = cell
        print(f"{c} (seeds {seeds}):")
        for m in METRICS:
            ci = cell[m]
            print(f"  PGPO - DAPO {m}: {ci['estimate']:+.3f} [{ci['low']:+.3f}, "
                  f"{ci['high']:+.3f}] {verdict(ci)}")
        for algo in ("pgpo", "dapo"):
            a = cell[algo]
            print(f"  {algo}: warm-up {a['before_rl']:.3f}, after RL {a['final']:.3f}, "
                  f"response length (last quarter) {a['length_last']:.1f}")
    for other, base in (("filler8", "today"), ("noclip", "today")):
        seeds = sorted(set(paired[other]) & set(paired[base]))
        for m in ("final", "auc"):
            ci = interval([(runs[other]["pgpo"][s][m] - runs[other]["dapo"][s][m])
                           - (runs[base]["pgpo"][s][m] - runs[base]["dapo"][s][m])
                           for s in seeds])
            merged["between_cells"][f"{other} - {base}, {m}"] = ci
            print(f"(PGPO - DAPO) {other} - {base}, {m}: {ci['estimate']:+.3f} "
                  f"[{ci['low']:+.3f}, {ci['high']:+.3f}] (n={ci['n']})")
    (HERE / "merged.json").write_text(json.dumps(merged, indent=1) + "\n")


if __name__ == "__main__":
    main()
