"""The study's numbers from its runs' metrics: one run's evaluation curve and summary
(final accuracy, area under the curve, ...), paired differences between algorithms over
seeds, and the tables and figure of ``compare.md`` / ``compare.png``
(:mod:`reference_impl.experiments.compare` runs the study and calls these)."""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any, Mapping, Sequence

import numpy as np


def _series(rows, kind: str, key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows
           if r.get("kind") == kind and isinstance(r.get(key), (int, float))
           and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def accuracy_key(rows) -> str | None:
    """The ``accuracy_avg@k`` key of the evaluation rows, if any."""
    return next((k for r in rows if r.get("kind") == "eval" for k in r
                 if k.startswith("accuracy_avg@")), None)


def mean_or_nan(xs: Sequence[float]) -> float:
    """The mean of ``xs``, NaN when empty."""
    return statistics.fmean(xs) if xs else math.nan


def eval_curve(rows, start: tuple[int, float] | None = None, key: str | None = None
               ) -> tuple[list[int], list[float]]:
    """Held-out accuracy over RL steps: ``start`` (the warm-up point, step 0) followed by
    the run's evaluations (``key`` defaults to the accuracy column)."""
    key = key or accuracy_key(rows)
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
    acc_key = accuracy_key(rows)
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
        "reward_first": mean_or_nan(reward[:tail]),
        "reward_last": mean_or_nan(reward[-tail:]),
        "grad_norm_mean": mean_or_nan(grad),
        "entropy_first": mean_or_nan(ent[:tail]),
        "entropy_last": mean_or_nan(ent[-tail:]),
        "length_last": mean_or_nan(length[-tail:]),
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

Results = Mapping[str, Mapping[int, Mapping[str, float]]]
"""``{algo: {seed: summary}}``: the complete runs (a seed missing where a run is)."""


def _by_seed(runs: Any) -> Mapping[int, Mapping[str, float]]:
    return runs if isinstance(runs, Mapping) else dict(enumerate(runs))


def paired_differences(results: Results,
                       keys: Sequence[str] = ("final", "auc", "perception_final")
                       ) -> dict[str, dict[str, dict[str, float]]]:
    """``{"a - b": {key: interval}}`` for every pair of algorithms, paired by seed over the
    seeds where both are complete (``results[algo]`` may also be a list, index = seed)."""
    from reference_impl.stats import paired_interval

    out: dict[str, dict[str, dict[str, float]]] = {}
    for a, b in itertools.combinations(results, 2):
        ra, rb = _by_seed(results[a]), _by_seed(results[b])
        pairs = {}
        for key in keys:
            xs = [(ra[s][key], rb[s][key]) for s in sorted(set(ra) & set(rb))
                  if math.isfinite(ra[s][key]) and math.isfinite(rb[s][key])]
            if xs:
                pairs[key] = {**paired_interval([x for x, _ in xs],
                                                [y for _, y in xs]).as_dict(),
                              "seeds": [s for s in sorted(set(ra) & set(rb))
                                        if math.isfinite(ra[s][key]) and math.isfinite(rb[s][key])]}
        out[f"{a} - {b}"] = pairs
    return out


def write_tables(results: Results, path: str, *, header: str,
                 probe: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
    """Markdown: per-algorithm means with 95% intervals over seeds, paired differences
    between algorithms (over the seeds both completed), and (if run) the gradient probe."""
    lines = [header, "", "| algo | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    for algo, runs in results.items():
        runs = _by_seed(runs)
        lines.append(f"| {algo} | {len(runs)} | " + " | ".join(
            _cell([r[k] for r in runs.values()],
                  ".3g" if k in ("grad_norm_mean", "length_last", "steps_without_update")
                  else ".3f")
            for k, _ in COLUMNS) + " |")
    diffs = paired_differences(results)
    if diffs:
        lines += ["", "Paired differences over the seeds where both algorithms are complete "
                      "(mean [95% CI]; an interval that excludes 0 is a difference at the 5% "
                      "level):", "",
                  "| comparison | seeds | final held-out acc. | area under curve | "
                  "perception acc. |", "|---|---:|---:|---:|---:|"]
        for name, d in diffs.items():
            cells = []
            for key in ("final", "auc", "perception_final"):
                iv = d.get(key)
                cells.append("n/a" if iv is None else
                             f"{iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]")
            n = max((iv["n"] for iv in d.values()), default=0)
            lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    if probe and any(probe.values()):
        k = next(s for v in probe.values() for s in v).get("batches", 0)
        lines += ["", "Gradient probe at each seed's warm-up checkpoint (the same rollout "
                      "batches for every algorithm; mean over seeds [95% CI]; K = "
                      f"{k} batches, so pure noise would give an SNR of about "
                      f"{1 / max(k - 1, 1):.3f}):", "",
                  "| algo | seeds | gradient SNR | cosine to mean | visual share of grad norm |",
                  "|---|---:|---:|---:|---:|"]
        for algo, per_seed in probe.items():
            if not per_seed:
                continue
            lines.append(f"| {algo} | {len(per_seed)} | " + " | ".join(
                _cell([s[k]["estimate"] for s in per_seed], ".4f" if k == "snr" else ".3f")
                for k in ("snr", "cosine", "visual_share")) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def plot(curves: Mapping[str, Sequence[list[dict]]], starts: Mapping[str, Sequence[float]],
         path: str) -> None:
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
                    point = (0, start) if math.isfinite(start) else None
                    series.append(dict(zip(*eval_curve(rows, point))))
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


# ---------------------------------------------------------------------- the report


__all__ = ["COLUMNS", "Results", "accuracy_key", "area_under_curve", "eval_curve",
           "mean_or_nan", "paired_differences", "plot", "summarize", "write_tables"]
