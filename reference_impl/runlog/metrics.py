"""Per-step metrics to JSONL and TensorBoard, plus a progress bar (rank 0 only)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from typing import Any, Callable, Mapping


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

    Appends to an existing file, so a resumed run keeps one history. The logs follow
    the checkpoint: a run resumed from step ``s`` first calls :meth:`truncate` to drop
    what was logged after that checkpoint was saved, and passes ``purge_step`` so that
    TensorBoard hides its events from the re-run steps (``SummaryWriter(purge_step=)``).
    A line left half-written by a crash (or a full disk) is dropped, never fatal.

    TensorBoard runs, each with its own step axis, so that no two points share a step:

    - ``tensorboard/``: the RL steps (``train/*``, with their phase times
      ``train/timing_s/*`` and the checkpoints' ``train/timing_s/save`` from the rows of
      ``kind="timing"``), purged from ``purge_step`` on;
    - ``tensorboard/eval``: the evaluations during and after RL (``eval/*``, RL step);
    - ``tensorboard/warmup``: the warm-up's losses (``sft/*``) on the ``sft_step`` axis;
    - ``tensorboard/warmup_eval``: the evaluations before and after the warm-up (rows
      of ``kind="eval"`` that carry an ``sft_step``: 0 and the warm-up's length).

    The last three are opened at their first point of this process, purging the points of
    an earlier attempt from that step on: a resumed run logs again exactly the rows that
    :meth:`truncate` dropped, so each point appears once.
    """

    def __init__(self, output_dir: str, *, enabled: bool = True, tensorboard: bool = True,
                 progress_total: int | None = None, progress: bool = True,
                 initial: int = 0, purge_step: int | None = None) -> None:
        self.enabled = enabled
        self.path = os.path.join(output_dir, "metrics.jsonl")
        self._tb_dir = os.path.join(output_dir, "tensorboard")
        self._tb = None
        self._tb_runs: dict[str, Any] = {}  # the lazily opened runs, by folder name
        self._tb_wanted = False
        self._bar = None
        self._tail_checked = False
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        if tensorboard:
            try:
                self._tb = _summary_writer(self._tb_dir, purge_step)
                self._tb_wanted = True
            except Exception:  # tensorboard missing or broken: JSONL still works
                self._tb = None
        if progress and progress_total is not None:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=progress_total, initial=initial, desc="train",
                             dynamic_ncols=True)

    def rows(self) -> list[dict[str, Any]]:
        """The records logged so far (a half-written last line left out)."""
        if not os.path.exists(self.path):
            return []
        return read_metrics(self.path)

    def truncate(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Keep only the records for which ``keep(row)`` is true (and drop lines that are
        not JSON, e.g. one half-written by a crash); returns how many were dropped. The
        file is replaced atomically."""
        if not self.enabled or not os.path.exists(self.path):
            return 0
        kept, dropped = [], 0
        with open(self.path, "rb") as f:
            for raw in f:
                row = _parse(raw)
                if row is None:
                    dropped += bool(raw.strip())
                elif keep(row):
                    kept.append(json.dumps(row) + "\n")
                else:
                    dropped += 1
        from reference_impl.runlog.files import atomic_write_text
        atomic_write_text(self.path, "".join(kept))
        self._tail_checked = True
        return dropped

    def truncate_after(self, step: int) -> int:
        """Drop logged records with ``step >= step``."""
        return self.truncate(lambda row: row.get("step", -1) < step)

    def reset(self) -> None:
        """Start the history afresh (a run that starts over from nothing)."""
        self.truncate(lambda row: False)

    def log(self, step: int, metrics: Mapping[str, Any], *, kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "kind": kind, **{k: _plain(v) for k, v in metrics.items()}}
        if not self._tail_checked:
            self._drop_partial_last_line()
        line = (json.dumps(row) + "\n").encode("utf-8")
        with open(self.path, "ab") as f:
            start = f.tell()
            try:
                f.write(line)
                f.flush()
            except OSError as err:
                # A full disk: take the partial line back out, say which file failed.
                with contextlib.suppress(OSError):
                    f.truncate(start)
                raise OSError(err.errno, f"{self.path}: cannot append metrics "
                                         f"({err.strerror})") from err
        writer, axis = self._tb, step
        if kind == "sft":
            axis = row.get("sft_step", step)
            writer = self._run_writer("warmup", axis)
        elif kind == "eval" and "sft_step" in row:
            axis = row["sft_step"]
            writer = self._run_writer("warmup_eval", axis)
        elif kind == "eval":
            writer = self._run_writer("eval", step)
        if writer is not None:
            group = "train" if kind == "timing" else kind  # a save's time, beside the step's
            with self._tensorboard_errors():
                for key, value in row.items():
                    if key in ("step", "kind", "sft_step"):
                        continue
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        writer.add_scalar(f"{group}/{key}", value, axis)

    @contextlib.contextmanager
    def _tensorboard_errors(self):
        """A write error of TensorBoard's writer (raised here, or in its background
        thread and passed on at the next call), e.g. a full disk, named as such."""
        try:
            yield
        except OSError as err:
            raise OSError(err.errno, f"{self._tb_dir}: cannot write TensorBoard events "
                                     f"({err.strerror or err})") from err

    def _run_writer(self, run: str, first_step: Any):
        """The TensorBoard run ``run``, opened at its first point of this process (purging
        the points of an earlier attempt from that step on); None without TensorBoard."""
        if run not in self._tb_runs and self._tb_wanted:
            purge = first_step if isinstance(first_step, int) else None
            self._tb_runs[run] = _summary_writer(os.path.join(self._tb_dir, run), purge)
        return self._tb_runs.get(run)

    def _drop_partial_last_line(self) -> None:
        """A crash mid-append leaves a last line without its newline: cut it off."""
        self._tail_checked = True
        try:
            with open(self.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            return

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
        writers = [self._tb, *self._tb_runs.values()]
        self._tb, self._tb_runs = None, {}
        failed = None
        for writer in writers:  # every writer is closed, the first error raised after
            if writer is not None:
                try:
                    with self._tensorboard_errors():
                        writer.flush()
                        writer.close()
                except OSError as err:
                    failed = failed or err
        if failed is not None:
            raise failed


def _summary_writer(folder: str, purge_step: int | None):
    """A ``SummaryWriter`` whose events file TensorBoard reads after every earlier one.

    TensorBoard reads a run's events files in name order, and a name carries its
    creation time in whole seconds (then host, process id and a counter, compared as
    text): a resumed run that opens its file in the same second as the attempt before
    it could be read first, and the earlier attempt's purge would then hide the resumed
    run's points. So when a file of this second (or a later one) exists, wait for the
    next second first (at most about a second, only right after another attempt)."""
    from torch.utils.tensorboard import SummaryWriter

    try:
        stamps = [int(name.split(".")[3]) for name in os.listdir(folder)
                  if name.startswith("events.out.tfevents.")
                  and name.split(".")[3].isdigit()]
    except OSError:
        stamps = []
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if 0 < wait <= 2:
            time.sleep(wait)
    return SummaryWriter(folder, purge_step=purge_step)


def _parse(raw: bytes) -> dict[str, Any] | None:
    """One JSONL record, or None for a blank, half-written or otherwise broken line."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (lines that are not JSON objects, such as
    one half-written by a crash, are left out with a warning)."""
    rows, bad = [], 0
    with open(path, "rb") as f:
        for raw in f:
            row = _parse(raw)
            if row is None:
                bad += bool(raw.strip())
            else:
                rows.append(row)
    if bad:
        warnings.warn(f"{path}: skipped {bad} line(s) that are not JSON records",
                      RuntimeWarning, stacklevel=2)
    return rows


__all__ = ["MetricsLogger", "read_metrics"]
