"""Where a run is, as data: what :class:`RunState` holds is everything besides the weights,
optimisers, data position and RNG that a checkpoint must carry for a resumed run to go on
exactly, and what :meth:`reference_impl.loop.trainer.Trainer.fit` reads to know which
phase comes next."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class RunState:
    """The run's lifecycle, saved whole in every checkpoint (its ``extra`` record)."""

    step: int = 0
    """RL steps done."""
    warmup_done: bool = False
    """Whether the supervised warm-up is over (or there is none)."""
    warmup_step: int = 0
    """Supervised warm-up steps done (the checkpoint then holds the warm-up's optimiser)."""
    eval_pending: bool = False
    """The periodic evaluation of ``step`` was stopped by a signal: a resume runs it first."""
    consecutive_nonfinite: int = 0
    """Updates in a row skipped for a NaN/inf loss or gradient."""
    headline: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The evaluations before and after the warm-up (``eval_untrained``,
    ``eval_warmed_up``) and the latter's per-prompt accuracies
    (``warmed_up_per_prompt``, for the RL gain), so that a resumed run's summary holds
    what an uninterrupted run's does."""

    def to_checkpoint(self, **setup: Any) -> dict[str, Any]:
        """The checkpoint's ``extra`` record: these fields and ``setup`` (e.g. the process
        count and the algorithm, checked when it is loaded)."""
        return {**dataclasses.asdict(self), **setup}

    @classmethod
    def from_checkpoint(cls, extra: dict[str, Any]) -> "RunState":
        """The state saved by :meth:`to_checkpoint` (or by a checkpoint written before a
        field existed: a checkpoint without ``warmup_done`` is past its warm-up)."""
        warmup_done = bool(extra.get("warmup_done", True))
        return cls(step=int(extra["step"]), warmup_done=warmup_done,
                   warmup_step=0 if warmup_done else int(extra.get("warmup_step", 0)),
                   eval_pending=bool(extra.get("eval_pending", False)),
                   consecutive_nonfinite=int(extra.get("consecutive_nonfinite", 0)),
                   headline=dict(extra.get("headline") or {}))


__all__ = ["RunState"]
