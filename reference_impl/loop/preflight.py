"""Checks run before any model is built, so that a fault the user can fix ends in seconds
with a message naming the config field and the file, not after minutes of model loading
with a raw error.

:func:`run` checks, in order:

* ``train.output_dir``: a folder (not a file) that this process can create and write in
  (tried by writing a file, which also works for root, who ignores permission bits);
* free disk there for one more checkpoint, estimated from the model size (the newest
  existing checkpoint's size when there is one);
* ``checkpoint.resume``: with ``auto``, when checkpoints exist, at least one is intact
  (manifest and file sizes) and saved with this run's setup (model, LoRA, frozen
  vision tower, process count; older or other ones are skipped with a warning); a
  given path is an intact checkpoint of this setup or holds one;
* ``model.path``: a folder holding weights (``*.safetensors`` / ``pytorch_model*.bin``)
  and a processor (``preprocessor_config.json`` and a tokenizer);
* ``data.source`` (and ``data.eval_source``): readable, with at least one usable row
  for training and one for evaluation; the datasets it loads are returned so that the
  trainer does not read the files twice.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from reference_impl.config import Config

# Size of a checkpoint of the built-in tiny model (weights + AdamW moments + the rest),
# an upper bound checked by tests/trainer/test_faults.py.
TINY_CHECKPOINT_BYTES = 8 * 2**20

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


class PreflightError(ValueError):
    """A fault found before the model is built; the message names the config field."""


def run(cfg: Config, env: Any) -> tuple[Any, Any]:
    """All checks; returns the ``(train, heldout)`` datasets. Output-folder checks run on
    the main process only (it alone writes there)."""
    if env.is_main:
        check_output_dir(cfg)
    check_resume(cfg, env.world_size)
    check_model_dir(cfg)
    datasets = check_data(cfg, world_size=env.world_size)
    if env.is_main:
        check_free_disk(cfg)
    return datasets


# ------------------------------------------------------------------ output folder

def check_output_dir(cfg: Config) -> None:
    out = Path(cfg.train.output_dir)
    for path, what in ((out, "train.output_dir"), (out / "checkpoints", "train.output_dir")):
        if path.exists() and not path.is_dir():
            raise PreflightError(f"{what}: {path} is a file, not a folder; "
                                 "choose another train.output_dir or move the file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PreflightError(f"train.output_dir: cannot create {out}: "
                             f"{err.strerror or err}") from None
    for folder in (out, out / "checkpoints"):
        if not folder.is_dir():
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".pgpo-write-test-"):
                pass
        except OSError as err:
            raise PreflightError(f"train.output_dir: cannot write in {folder}: "
                                 f"{err.strerror or err}") from None


def checkpoint_bytes_estimate(cfg: Config) -> tuple[int, str]:
    """``(bytes, how)``: the expected size of one checkpoint and how it was estimated."""
    from reference_impl.runlog.checkpoint import list_checkpoints

    existing = list_checkpoints(Path(cfg.train.output_dir) / "checkpoints")
    if existing:
        path = existing[-1][1]
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        return size, f"the size of {path.name}"
    if cfg.model.path is None:
        return TINY_CHECKPOINT_BYTES, "the tiny model"
    model = Path(cfg.model.path)
    file_bytes = sum(f.stat().st_size for pattern in _WEIGHT_PATTERNS
                     for f in model.glob(pattern))
    stored = _stored_bytes_per_parameter(model)
    params = file_bytes / stored
    kept = 2 if cfg.model.dtype == "bfloat16" else 4  # see trainer.parameter_dtype
    # Weights plus AdamW's two moments (of the adapters only, under LoRA).
    factor = 1.05 if cfg.lora.enabled else 3
    return int(params * kept * factor), f"{params / 1e9:.2f}B parameters in {model}"


def _stored_bytes_per_parameter(model: Path) -> int:
    try:
        config = json.loads((model / "config.json").read_text())
    except (OSError, ValueError):
        return 2
    dtype = config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    return 4 if dtype == "float32" else 2


def check_free_disk(cfg: Config) -> None:
    out = Path(cfg.train.output_dir)
    need, how = checkpoint_bytes_estimate(cfg)
    free = shutil.disk_usage(out).free
    if free < need:
        raise PreflightError(
            f"train.output_dir: {out} has {free / 2**20:.0f} MiB free, one checkpoint needs "
            f"about {need / 2**20:.0f} MiB (estimated from {how}); free some space or choose "
            "another train.output_dir")


def check_resume(cfg: Config, world_size: int = 1) -> None:
    """``checkpoint.resume=auto`` over checkpoints that are all damaged (manifests and
    file sizes; the SHA-256 sums are checked when loading): refuse now, never train
    over them."""
    from reference_impl.runlog import checkpoint as ckpt

    from reference_impl.policy.model import model_setup

    resume = cfg.checkpoint.resume
    if resume is None:
        return
    setup = model_setup(cfg, world_size)
    try:
        if resume == "auto":
            ckpt.check_resumable(Path(cfg.train.output_dir) / "checkpoints", setup=setup)
        elif (Path(resume) / ckpt.MANIFEST).exists() or Path(resume).name.startswith("step_"):
            differences = ckpt.setup_differences(
                ckpt.verify_checkpoint(resume, checksums=False), setup)
            if differences:
                raise ckpt.CheckpointError(
                    f"saved with another setup ({'; '.join(differences)}); resume with "
                    "the same settings and number of processes, or start from the weights "
                    "alone (model.path)")
        else:
            ckpt.check_resumable(resume, setup=setup)
            if not ckpt.candidates(resume):
                raise ckpt.CheckpointError(f"{resume}: no checkpoint folder (step_<N>) in it")
    except ckpt.CheckpointError as err:
        raise ckpt.CheckpointError(f"checkpoint.resume={resume}: {err}") from None


# ------------------------------------------------------------------ model folder

def check_model_dir(cfg: Config) -> None:
    if cfg.model.path is None:
        return
    model = Path(cfg.model.path)
    if not model.is_dir():
        raise PreflightError(f"model.path: {model} is not a folder (expected a local "
                             "Qwen2.5-VL checkpoint: weights, config and processor files)")
    missing = []
    if not any(any(model.glob(p)) for p in _WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model*.bin)")
    if not (model / "config.json").is_file():
        missing.append("config.json")
    if not (model / "preprocessor_config.json").is_file():
        missing.append("an image processor (preprocessor_config.json)")
    if not any((model / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json / tokenizer_config.json)")
    if missing:
        raise PreflightError(f"model.path: {model} lacks " + "; ".join(missing))


# ------------------------------------------------------------------ data

def check_data(cfg: Config, *, world_size: int = 1) -> tuple[Any, Any]:
    from reference_impl.data.datasets import build_datasets

    try:
        train, heldout = build_datasets(cfg, world_size=world_size)
    except (OSError, ValueError) as err:
        key = "data.eval_source" if cfg.data.eval_source and cfg.data.eval_source in str(err) \
            else "data.source"
        raise PreflightError(f"{key}: cannot read {getattr(cfg.data, key.split('.')[1])!r}: "
                             f"{err}") from None
    except Exception as err:  # e.g. a damaged Parquet file (pyarrow's own errors)
        raise PreflightError(f"data.source: cannot read {cfg.data.source!r}: "
                             f"{type(err).__name__}: {err}") from None
    if len(train) == 0:
        skipped = getattr(train, "skipped", {})
        detail = f"rows skipped by reason: {skipped}" if skipped else "no rows"
        if cfg.data.eval_source is None and skipped == {} and len(heldout):
            detail = (f"all {len(heldout)} usable rows are held out for evaluation "
                      f"(data.eval_size={cfg.data.eval_size})")
        elif cfg.data.eval_source is None and len(heldout):
            detail += (f"; the {len(heldout)} usable rows are all held out for evaluation "
                       f"(data.eval_size={cfg.data.eval_size})")
        raise PreflightError(f"data.source: no usable training rows in "
                             f"{cfg.data.source!r} ({detail})")
    if len(heldout) == 0:
        key = "data.eval_source" if cfg.data.eval_source is not None else "data.source"
        skipped = getattr(heldout, "skipped", {})
        raise PreflightError(f"{key}: no usable evaluation rows in "
                             f"{getattr(cfg.data, key.split('.')[1])!r}"
                             + (f" (rows skipped by reason: {skipped})" if skipped else ""))
    return train, heldout


__all__ = ["PreflightError", "TINY_CHECKPOINT_BYTES", "check_data", "check_free_disk",
           "check_model_dir", "check_output_dir", "check_resume", "checkpoint_bytes_estimate",
           "run"]
