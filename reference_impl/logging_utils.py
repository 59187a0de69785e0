"""Per-step metrics to JSONL and TensorBoard, plus a progress bar (rank 0 only)."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar (tensors and numpy scalars become floats)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan" / "inf": JSON has no literal for them
    return value


class MetricsLogger:
    """Writes one JSON object per call to ``<output_dir>/metrics.jsonl`` and the numeric
    entries to TensorBoard (``<output_dir>/tensorboard``), on the main process only.

    Appends to an existing file, so a resumed run keeps one history; records from steps
    at or after the resume step are dropped on :meth:`truncate_after` so a run resumed
    from an earlier checkpoint does not log a step twice.
    """

    def __init__(self, output_dir: str, *, enabled: bool = True, tensorboard: bool = True,
                 progress_total: int | None = None, progress: bool = True,
                 initial: int = 0) -> None:
        self.enabled = enabled
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self._tb = None
        self._bar = None
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(os.path.join(output_dir, "tensorboard"))
            except Exception:  # tensorboard missing or broken: JSONL still works
                self._tb = None
        if progress and progress_total is not None:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=progress_total, initial=initial, desc="train",
                             dynamic_ncols=True)

    def truncate_after(self, step: int) -> None:
        """Drop logged records with ``step >= step`` (used when resuming)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            rows = [line for line in f if line.strip()]
        kept = [r for r in rows if json.loads(r).get("step", -1) < step]
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, self.path)

    def log(self, step: int, metrics: Mapping[str, Any], *, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in row.items():
                if key in ("step", "kind"):
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def progress(self, n: int = 1, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: (round(v, 3) if isinstance(v, float) else v)
                                       for k, v in postfix.items()}, refresh=False)

    def write(self, message: str) -> None:
        """Print a line without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


__all__ = ["MetricsLogger", "read_metrics"]
