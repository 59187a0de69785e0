"""PGPO versus DAPO from the same seed and budget on the synthetic task (CPU by default).

    python reference_impl/compare.py                         # the default tiny run, twice
    python reference_impl/compare.py --out runs/compare train.total_steps=60
    python reference_impl/compare.py --algos pgpo,dapo,grpo --seeds 0,1

Each algorithm runs ``reference_impl/train.py`` with the same configuration (any
``SECTION.FIELD=VALUE`` override applies to all) and ``algo.name`` changed; the same
seed gives both the same model, warm-up and data order. Writes ``<out>/compare.md`` (a
table: held-out accuracy before RL and at the end, train reward, gradient-norm mean and
variance, entropy) and ``<out>/compare.png`` (held-out accuracy, gradient norm and
entropy over RL steps).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _series(rows, kind, key):
    pts = [(r["step"], r[key]) for r in rows
           if r.get("kind") == kind and isinstance(r.get(key), (int, float))
           and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def _acc_key(rows):
    return next((k for r in rows if r.get("kind") == "eval" for k in r
                 if k.startswith("accuracy_avg@")), None)


def summarize(rows) -> dict[str, float]:
    """Table entries of one run from its metrics.jsonl rows."""
    acc_key = _acc_key(rows)
    evals = [r for r in rows if r.get("kind") == "eval"]
    before = next((r[acc_key] for r in evals if r.get("phase") == "warmed_up"),
                  next((r[acc_key] for r in evals if r.get("phase") == "untrained"), math.nan))
    untrained = next((r[acc_key] for r in evals if r.get("phase") == "untrained"), math.nan)
    final = next((r[acc_key] for r in reversed(evals) if r.get("phase") == "final"), math.nan)
    _, reward = _series(rows, "train", "reward")
    _, grad = _series(rows, "train", "grad_norm")
    _, ent = _series(rows, "train", "entropy")
    tail = max(len(reward) // 4, 1)
    return {
        "untrained": untrained, "before_rl": before, "final": final,
        "reward_first": statistics.fmean(reward[:tail]) if reward else math.nan,
        "reward_last": statistics.fmean(reward[-tail:]) if reward else math.nan,
        "grad_mean": statistics.fmean(grad) if grad else math.nan,
        "grad_var": statistics.pvariance(grad) if len(grad) > 1 else math.nan,
        "entropy_first": ent[0] if ent else math.nan,
        "entropy_last": ent[-1] if ent else math.nan,
    }


def write_table(results: dict[str, list[dict[str, float]]], path: str, *, acc_key: str,
                header: str) -> str:
    """Markdown table: one row per algorithm, mean (and +- std over seeds when several)."""
    cols = [("untrained", f"held-out {acc_key}, untrained"),
            ("before_rl", "after warm-up (before RL)"), ("final", "after RL"),
            ("reward_first", "train reward, first quarter"),
            ("reward_last", "train reward, last quarter"),
            ("grad_mean", "grad-norm mean"), ("grad_var", "grad-norm variance"),
            ("entropy_first", "entropy, first step"), ("entropy_last", "entropy, last step")]
    lines = [header, "", "| algo | " + " | ".join(c[1] for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for algo, runs in results.items():
        cells = []
        for key, _ in cols:
            vals = [r[key] for r in runs if math.isfinite(r[key])]
            if not vals:
                cells.append("n/a")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.4g}")
            else:
                cells.append(f"{statistics.fmean(vals):.4g} ± {statistics.stdev(vals):.2g}")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def plot(all_rows: dict[str, list[list[dict]]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for n, (algo, runs) in enumerate(all_rows.items()):
        colour = f"C{n}"
        for i, rows in enumerate(runs):
            label = algo if i == 0 else None
            acc_key = _acc_key(rows)
            # The untrained point sits before the warm-up: leave it out of the curve.
            evals = [r for r in rows if r.get("phase") != "untrained"]
            for ax, data, kind, key in ((axes[0], evals, "eval", acc_key),
                                        (axes[1], rows, "train", "grad_norm"),
                                        (axes[2], rows, "train", "entropy")):
                xs, ys = _series(data, kind, key) if key else ([], [])
                ax.plot(xs, ys, marker="o" if kind == "eval" else None, alpha=0.85,
                        color=colour, label=label)
    axes[0].set_title("held-out accuracy (avg@k)")
    axes[1].set_title("gradient norm (before clipping)")
    axes[2].set_title("policy entropy")
    for ax in axes:
        ax.set_xlabel("RL step")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/compare", help="output folder")
    parser.add_argument("--algos", default="pgpo,dapo", help="comma-separated algo names")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    args, overrides = parser.parse_known_args(argv)
    from reference_impl.logging_utils import read_metrics
    from reference_impl.train import main as train_main

    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    os.makedirs(args.out, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {a: [] for a in algos}
    rows_by_algo: dict[str, list[list[dict]]] = {a: [] for a in algos}
    timings = {}
    for seed in seeds:
        for algo in algos:
            run_dir = os.path.join(args.out, f"{algo}-seed{seed}")
            start = time.perf_counter()
            train_main([*overrides, f"algo.name={algo}", f"train.seed={seed}",
                        f"train.output_dir={run_dir}", "checkpoint.resume=none"])
            timings[f"{algo}-seed{seed}"] = time.perf_counter() - start
            rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
            rows_by_algo[algo].append(rows)
            results[algo].append(summarize(rows))
    acc_key = _acc_key(rows_by_algo[algos[0]][0]) or "accuracy"
    header = (f"# {' vs '.join(algos)} on the synthetic task\n\nSeeds {seeds}; overrides: "
              f"{' '.join(overrides) or '(defaults)'}; wall time per run (s): "
              + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    table = write_table(results, os.path.join(args.out, "compare.md"), acc_key=acc_key,
                        header=header)
    plot(rows_by_algo, os.path.join(args.out, "compare.png"))
    print(table)
    return results


if __name__ == "__main__":
    main()
