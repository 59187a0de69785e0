"""Named phase timers for the RL step, after verl's ``marked_timer``
(``verl/trainer/ppo/ray_trainer.py``): each phase runs inside ``timer(name)``, the
seconds add up per name (a phase that runs once per rollout round or micro-batch
sums its runs), and :func:`timing_metrics` turns them into ``timing_s/<name>`` metrics.

Timing draws no random numbers and changes no tensor: a run's other metrics are the
same with or without it. On CUDA the timer synchronises the device at both ends, so
that a phase's kernels are counted in that phase and not in the next one.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, ContextManager, Iterable, Iterator, Mapping

import torch

PREFIX = "timing_s/"

# The phases of one RL step, in the order they run (see Trainer.rl_step and fit).
PHASES = ("rollout", "reward", "old_logprobs", "blind_pass", "advantages", "update",
          "eval", "save", "step")

Timer = Callable[[str], ContextManager[None]]


@contextlib.contextmanager
def marked_timer(name: str, timing: dict[str, float], *,
                 device: torch.device | None = None) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``timing[name]`` (seconds)."""
    sync = device is not None and device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        if sync:
            torch.cuda.synchronize(device)
        timing[name] = timing.get(name, 0.0) + time.perf_counter() - start


def phase_timer(timing: dict[str, float], device: torch.device | None = None) -> Timer:
    """``timer(name)``: a :func:`marked_timer` context writing into ``timing``."""
    return lambda name: marked_timer(name, timing, device=device)


def no_timer(name: str) -> ContextManager[None]:
    """A timer that times nothing (for callers that do not ask for timings)."""
    return contextlib.nullcontext()


def timing_metrics(timing: Mapping[str, float]) -> dict[str, float]:
    """``{"timing_s/<name>": seconds}`` of the phases that ran."""
    return {PREFIX + name: float(seconds) for name, seconds in timing.items()}


def is_timing_key(key: str) -> bool:
    """Whether a metrics key is a wall time (differs between identical runs)."""
    return key.startswith(PREFIX)


def without_timings(row: Mapping[str, object]) -> dict[str, object]:
    """A metrics row without its wall times: what two identical runs share."""
    return {k: v for k, v in row.items() if not is_timing_key(k)}


def comparable_rows(rows: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    """``metrics.jsonl`` rows without wall times (the rows of ``kind="timing"`` left out,
    the ``timing_s/*`` keys of the others dropped): equal for two runs of one config and
    seed, and for a resumed run and an uninterrupted one."""
    return [without_timings(r) for r in rows if r.get("kind") != "timing"]


__all__ = ["PHASES", "PREFIX", "Timer", "comparable_rows", "is_timing_key", "marked_timer",
           "no_timer", "phase_timer", "timing_metrics", "without_timings"]
