"""Intervals for the experiments: means, paired differences, bootstrap.

Everything here is a thin, documented layer over ``scipy.stats``; it exists so that the
trainer, ``compare.py`` and ``probe_gradients.py`` report intervals the same way.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

__all__ = ["Interval", "bootstrap_interval", "mean_interval", "paired_interval"]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n,
                "level": self.level}


def mean_interval(values: Sequence[float], *, level: float = 0.95) -> Interval:
    """Student-t interval of the mean, ``x_bar +- t_{n-1} s / sqrt(n)``.

    One value gives an interval of infinite width (nothing is known of the spread)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("values: must be finite")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, -math.inf, math.inf, 1, level)
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Interval(mean, mean - half, mean + half, int(x.size), level)


def paired_interval(after: Sequence[float], before: Sequence[float], *,
                    level: float = 0.95) -> Interval:
    """Interval of the mean paired difference ``after_i - before_i`` (same units, e.g.
    the same held-out prompt before and after RL, or the same seed under two algorithms)."""
    a, b = np.asarray(after, dtype=np.float64), np.asarray(before, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"after: shape {a.shape} does not match before's {b.shape}")
    return mean_interval(a - b, level=level)


def bootstrap_interval(statistic: Callable[..., float], *samples: np.ndarray,
                       level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(*samples)``, the samples resampled
    together along their first axis (``scipy.stats.bootstrap``, paired)."""
    from scipy import stats

    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError("samples: all must have the same length along the first axis")
    estimate = float(statistic(*arrays))
    if n < 2:
        return Interval(estimate, -math.inf, math.inf, n, level)
    res = stats.bootstrap(tuple(arrays), lambda *xs: statistic(*xs), paired=True,
                          vectorized=False, n_resamples=resamples, confidence_level=level,
                          method="percentile", rng=np.random.default_rng(seed))
    return Interval(estimate, float(res.confidence_interval.low),
                    float(res.confidence_interval.high), n, level)
