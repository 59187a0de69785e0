"""PGPO vs DAPO vs GRPO as an experiment: several seeds, identical budgets, paired intervals.

    python reference_impl/compare.py                                  # 5 seeds x pgpo/dapo/grpo
    python reference_impl/compare.py --quick                          # a smoke run (CI)
    python reference_impl/compare.py --algos pgpo,dapo,pgpo_suppress_only --seeds 0,1,2
    python reference_impl/compare.py --out runs/compare train.total_steps=200

Per seed, the supervised warm-up runs once (``train.total_steps=0`` saves its checkpoint)
and every algorithm starts RL from that checkpoint: the same weights, RNG and data
position, the same configuration (any ``SECTION.FIELD=VALUE`` override applies to all),
only ``algo.name`` changed. The seed is the unit of replication; algorithms are compared
by paired differences over seeds with Student-t 95% intervals.

Per run it reads ``metrics.jsonl``: held-out accuracy after the warm-up and after RL,
the area under the held-out curve (mean accuracy over the evaluations from the
warm-up point to the end, trapezoidal in RL steps), the perception accuracy, the train
entropy and response length, and collapse indicators (final format reward, entropy of
the last quarter, steps without an update). With ``--probe-batches K`` it also runs
:mod:`reference_impl.probe_gradients` at every seed's warm-up checkpoint (gradient
signal-to-noise of each algorithm on the same K rollout batches).

Writes ``<out>/compare.md`` (tables), ``<out>/compare.json`` (every number) and
``<out>/compare.png`` (held-out accuracy, entropy, response length and gradient norm over
RL steps: mean over seeds with a 95% band).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from typing import Any, Sequence

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

QUICK = ("model.sft_warmup_steps=4", "train.total_steps=2", "eval.every=1",
         "data.eval_size=4", "eval.k=2", "rollout.prompts_per_step=4",
         "optim.mini_batch_size=2", "rollout.max_response_length=16")
"""``--quick``: a smoke run of the whole pipeline in about a minute (nothing is learned)."""


# ---------------------------------------------------------------------- one run

def _series(rows, kind: str, key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows
           if r.get("kind") == kind and isinstance(r.get(key), (int, float))
           and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def _acc_key(rows) -> str | None:
    return next((k for r in rows if r.get("kind") == "eval" for k in r
                 if k.startswith("accuracy_avg@")), None)


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def eval_curve(rows, start: tuple[int, float] | None = None, key: str | None = None
               ) -> tuple[list[int], list[float]]:
    """Held-out accuracy over RL steps: ``start`` (the warm-up point, step 0) followed by
    the run's evaluations (``key`` defaults to the accuracy column)."""
    key = key or _acc_key(rows)
    evals = [r for r in rows if r.get("kind") == "eval" and r.get("phase") != "untrained"]
    xs, ys = _series(evals, "eval", key) if key else ([], [])
    if start is not None and (not xs or xs[0] != start[0]):
        xs, ys = [start[0]] + xs, [start[1]] + ys
    return xs, ys


def area_under_curve(xs: Sequence[int], ys: Sequence[float]) -> float:
    """Mean of the curve over ``[xs[0], xs[-1]]`` (trapezoidal rule)."""
    if len(xs) < 2:
        return float(ys[0]) if ys else math.nan
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def summarize(rows, *, before_rl: float | None = None,
              perception_before: float | None = None) -> dict[str, float]:
    """Entries of one run from its ``metrics.jsonl`` rows. ``before_rl`` is the held-out
    accuracy after the warm-up when the run started from a warm-up checkpoint (otherwise
    it is read from the run's own ``warmed_up`` evaluation)."""
    acc_key = _acc_key(rows)
    evals = [r for r in rows if r.get("kind") == "eval"]
    if before_rl is None:
        before_rl = next((r[acc_key] for r in evals if r.get("phase") == "warmed_up"), math.nan)
    final_row = next((r for r in reversed(evals) if r.get("phase") == "final"), {})
    xs, ys = eval_curve(rows, (0, before_rl) if math.isfinite(before_rl) else None)
    _, reward = _series(rows, "train", "reward")
    _, grad = _series(rows, "train", "grad_norm")
    _, ent = _series(rows, "train", "entropy")
    _, length = _series(rows, "train", "response_length")
    _, updated = _series(rows, "train", "updated")
    tail = max(len(reward) // 4, 1)
    return {
        "before_rl": before_rl,
        "final": final_row.get(acc_key, math.nan) if acc_key else math.nan,
        "auc": area_under_curve(xs, ys),
        "perception_before": math.nan if perception_before is None else perception_before,
        "perception_final": final_row.get("perception_accuracy", math.nan),
        "format_final": final_row.get("format", math.nan),
        "reward_first": _mean(reward[:tail]),
        "reward_last": _mean(reward[-tail:]),
        "grad_norm_mean": _mean(grad),
        "entropy_first": _mean(ent[:tail]),
        "entropy_last": _mean(ent[-tail:]),
        "length_last": _mean(length[-tail:]),
        "steps_without_update": float(sum(u == 0 for u in updated)),
    }


# ---------------------------------------------------------------------- tables

def _cell(values: Sequence[float], fmt: str = ".3f") -> str:
    """``mean [95% CI]`` over seeds (just the value for one seed)."""
    from reference_impl.stats import mean_interval

    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:{fmt}}"
    iv = mean_interval(vals)
    return f"{iv.estimate:{fmt}} [{iv.low:{fmt}}, {iv.high:{fmt}}]"


COLUMNS = (("before_rl", "held-out acc. after warm-up"), ("final", "after RL"),
           ("auc", "area under curve"), ("perception_final", "perception acc. after RL"),
           ("reward_last", "train reward, last quarter"), ("grad_norm_mean", "grad norm"),
           ("entropy_last", "entropy, last quarter"), ("length_last", "response length"),
           ("format_final", "format (collapse check)"),
           ("steps_without_update", "steps without update"))


def paired_differences(results: dict[str, list[dict[str, float]]],
                       keys: Sequence[str] = ("final", "auc", "perception_final")
                       ) -> dict[str, dict[str, dict[str, float]]]:
    """``{"a - b": {key: interval}}`` for every pair of algorithms, paired by seed."""
    from reference_impl.stats import paired_interval

    out: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in itertools.combinations(results, 2):
        pairs = {}
        for key in keys:
            xs = [(ra[key], rb[key]) for ra, rb in zip(results[a], results[b])
                  if math.isfinite(ra[key]) and math.isfinite(rb[key])]
            if xs:
                pairs[key] = paired_interval([x for x, _ in xs], [y for _, y in xs]).as_dict()
        out[f"{a} - {b}"] = pairs
    return out


def write_tables(results: dict[str, list[dict[str, float]]], path: str, *, header: str,
                 probe: dict[str, Any] | None = None) -> str:
    """Markdown: per-algorithm means with 95% intervals over seeds, paired differences
    between algorithms, and (if run) the gradient probe."""
    lines = [header, "", "| algo | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for algo, runs in results.items():
        lines.append(f"| {algo} | " + " | ".join(
            _cell([r[k] for r in runs], ".3g" if k in ("grad_norm_mean", "length_last",
                                                        "steps_without_update") else ".3f")
            for k, _ in COLUMNS) + " |")
    diffs = paired_differences(results)
    if diffs:
        lines += ["", "Paired differences over seeds (mean [95% CI]; an interval that "
                      "excludes 0 is a difference at the 5% level):", "",
                  "| comparison | final held-out acc. | area under curve | perception acc. |",
                  "|---|---:|---:|---:|"]
        for name, d in diffs.items():
            cells = []
            for key in ("final", "auc", "perception_final"):
                iv = d.get(key)
                cells.append("n/a" if iv is None else
                             f"{iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if probe:
        k = next(iter(next(iter(probe.values()))), {}).get("batches", 0)
        lines += ["", "Gradient probe at each seed's warm-up checkpoint (the same rollout "
                      "batches for every algorithm; mean over seeds [95% CI]; K = "
                      f"{k} batches, so pure noise would give an SNR of about "
                      f"{1 / max(k - 1, 1):.3f}):", "",
                  "| algo | gradient SNR | cosine to mean | visual share of grad norm |",
                  "|---|---:|---:|---:|"]
        for algo, per_seed in probe.items():
            if not per_seed:
                continue
            lines.append(f"| {algo} | " + " | ".join(
                _cell([s[k]["estimate"] for s in per_seed], ".4f" if k == "snr" else ".3f")
                for k in ("snr", "cosine", "visual_share")) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def plot(curves: dict[str, list[list[dict]]], starts: dict[str, list[float]], path: str) -> None:
    """Mean over seeds with a 95% t-band, per algorithm, for four curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reference_impl.stats import mean_interval

    panels = (("eval", None, "held-out accuracy (avg@k)"), ("train", "entropy", "policy entropy"),
              ("train", "response_length", "response length"),
              ("train", "grad_norm", "gradient norm (before clipping)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8))
    for n, (algo, runs) in enumerate(curves.items()):
        for ax, (kind, key, title) in zip(axes, panels):
            series = []
            for rows, start in zip(runs, starts[algo]):
                if kind == "eval":
                    series.append(dict(zip(*eval_curve(rows, (0, start)))))
                else:
                    series.append(dict(zip(*_series(rows, kind, key))))
            steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
            if not steps:
                continue
            mean, low, high = [], [], []
            for x in steps:
                vals = [s[x] for s in series]
                iv = mean_interval(vals) if len(vals) > 1 else None
                mean.append(statistics.fmean(vals))
                low.append(iv.low if iv else mean[-1])
                high.append(iv.high if iv else mean[-1])
            ax.plot(steps, mean, color=f"C{n}", label=algo, marker="o" if kind == "eval" else None)
            ax.fill_between(steps, low, high, color=f"C{n}", alpha=0.2)
            ax.set_title(title)
            ax.set_xlabel("RL step")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="compare.py", description=__doc__.split("\n\n")[0],
        epilog="Other arguments are SECTION.FIELD=VALUE overrides applied to every run.")
    parser.add_argument("--out", default="runs/compare", help="output folder")
    parser.add_argument("--algos", default="pgpo,dapo,grpo", help="comma-separated algo names")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--probe-batches", type=int, default=8,
                        help="gradient-probe batches at each warm-up checkpoint (0 = no probe)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 seeds, a few steps, tiny evaluations")
    args, overrides = parser.parse_known_args(argv)
    if args.quick:
        overrides = [*QUICK, *overrides]
        if args.seeds == parser.get_default("seeds"):
            args.seeds = "0,1"
        args.probe_batches = min(args.probe_batches, 2)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    common = [*overrides, "logging.progress_bar=false", "logging.html_report=false",
              "logging.plot=false", "logging.tensorboard=false"]

    from reference_impl import checkpoint as ckpt
    from reference_impl.logging_utils import read_metrics
    from reference_impl.train import main as train_main

    os.makedirs(args.out, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {a: [] for a in algos}
    rows_by_algo: dict[str, list[list[dict]]] = {a: [] for a in algos}
    starts: dict[str, list[float]] = {a: [] for a in algos}
    probe: dict[str, list[dict[str, Any]]] = {a: [] for a in algos}
    timings: dict[str, float] = {}
    for seed in seeds:
        warm_dir = os.path.join(args.out, f"warmup-seed{seed}")
        start = time.perf_counter()
        train_main([*common, "algo.name=pgpo", f"train.seed={seed}", "train.total_steps=0",
                    f"train.output_dir={warm_dir}", "checkpoint.resume=none"])
        timings[f"warmup-seed{seed}"] = time.perf_counter() - start
        warm_rows = read_metrics(os.path.join(warm_dir, "metrics.jsonl"))
        acc_key = _acc_key(warm_rows)
        warmed = next(r for r in warm_rows if r.get("phase") == "warmed_up")
        warm_ckpt = str(ckpt.find_latest(os.path.join(warm_dir, "checkpoints")))
        if args.probe_batches >= 2:
            from reference_impl.probe_gradients import main as probe_main
            start = time.perf_counter()
            got = probe_main([*common, f"train.seed={seed}", "--checkpoint", warm_ckpt,
                              "--batches", str(args.probe_batches), "--algos", ",".join(algos),
                              "--out", os.path.join(args.out, f"probe-seed{seed}")])
            timings[f"probe-seed{seed}"] = time.perf_counter() - start
            for algo, r in next(iter(got.values())).items():
                if "snr" in r:  # else: fewer than 2 informative batches at this checkpoint
                    probe[algo].append(r)
        for algo in algos:
            run_dir = os.path.join(args.out, f"{algo}-seed{seed}")
            start = time.perf_counter()
            train_main([*common, f"algo.name={algo}", f"train.seed={seed}",
                        f"train.output_dir={run_dir}", f"checkpoint.resume={warm_ckpt}"])
            timings[f"{algo}-seed{seed}"] = time.perf_counter() - start
            rows = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
            rows_by_algo[algo].append(rows)
            starts[algo].append(warmed[acc_key])
            results[algo].append(summarize(rows, before_rl=warmed[acc_key],
                                           perception_before=warmed.get("perception_accuracy")))
    total = sum(timings.values())
    header = (f"# {' vs '.join(algos)}: {len(seeds)} seeds\n\nSeeds {seeds}; overrides: "
              f"{' '.join(overrides) or '(defaults)'}. Mean over seeds [95% t-interval]. "
              f"Wall time {total / 60:.1f} min in all (warm-up "
              f"{_mean([v for k, v in timings.items() if k.startswith('warmup')]):.0f} s, "
              f"RL run {_mean([v for k, v in timings.items() if k.split('-seed')[0] in algos]):.0f} s "
              "each, on average).")
    table = write_tables(results, os.path.join(args.out, "compare.md"), header=header,
                         probe=probe if any(probe.values()) else None)
    plot(rows_by_algo, starts, os.path.join(args.out, "compare.png"))
    with open(os.path.join(args.out, "compare.json"), "w", encoding="utf-8") as f:
        json.dump({"seeds": seeds, "algos": algos, "overrides": overrides, "runs": results,
                   "paired_differences": paired_differences(results), "probe": probe,
                   "wall_time_s": timings}, f, indent=2)
    print(table)
    return {"runs": results, "probe": probe, "paired_differences": paired_differences(results)}


if __name__ == "__main__":
    main()
