"""Atomic checkpoints, exact resume and clean shutdown on SIGTERM.

Layout of a checkpoint folder::

    output_dir/checkpoints/
        latest                   # one line: the name of the newest complete checkpoint
        step_00000040/
            model.pt  optimizer.pt  scheduler.pt  rng.pt  data.pt  extra.pt
            manifest.json        # step, and the size and SHA-256 of every file

A checkpoint is written into a hidden temporary folder next to its final place, each
file is flushed to disk, the manifest is written last, and only then is the folder
renamed to ``step_<N>`` and the ``latest`` pointer replaced (write to a temporary
file, fsync, ``os.replace``). A process killed at any moment therefore leaves either
the previous checkpoint as the latest or the new one complete; leftovers of an
interrupted write are hidden ``.tmp-*`` folders that :func:`find_latest` ignores and
the next :func:`save_checkpoint` removes. Re-saving a step that already has a folder
swaps the two folders in one ``renameat2(RENAME_EXCHANGE)`` on Linux, so ``latest``
never names a missing folder. Sizes are checked when looking for the latest
checkpoint and SHA-256 sums when loading, so a truncated or damaged file is reported
instead of being loaded; :func:`load_latest_intact` falls back past damaged
checkpoints (bad hash, truncated, missing or malformed manifest, unreadable
``latest``) to the newest intact one, and refuses, naming the folder, when none is.

Distributed runs: only the main process writes the checkpoint's own files
(``is_main_process``). A sharded (FSDP2) model and optimiser are written by every rank
at once with ``torch.distributed.checkpoint`` into the checkpoint's ``sharded/`` folder
(``sharded_state``; a version-2 manifest lists and hashes its files too), so no rank
gathers the full state. Agreeing across ranks on a stop request from
:class:`GracefulExit` is the trainer's job.
"""

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from reference_impl.runlog.files import (TMP_PREFIX, PathLike, atomic_write_text,
                                         free_bytes, fsync_dir, fsync_file, is_disk_full,
                                         sha256_of)

FORMAT_VERSION = 1
#: Manifests of checkpoints with a ``sharded/`` folder (torch.distributed.checkpoint).
SHARDED_FORMAT_VERSION = 2
SHARDED = "sharded"
MANIFEST = "manifest.json"
LATEST = "latest"
PARTS = ("model", "optimizer", "scheduler", "rng", "data", "extra")
_NAME = re.compile(r"^step_(\d+)$")



class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or damaged."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What :func:`load_checkpoint` returns: the step and each saved state (None if not saved)."""

    path: Path
    step: int
    model_state: Any
    optimizer_state: Any
    scheduler_state: Any
    rng_state: Any
    data_state: Any
    extra: Any
    sharded: Optional[Path] = None
    """The ``torch.distributed.checkpoint`` folder of a sharded model (and optimiser),
    whose states are then None here unless loaded with ``consolidate=True``."""


def _write_text(path: Path, text: str) -> None:
    """:func:`~reference_impl.runlog.files.atomic_write_text` of a checkpoint's own file;
    a directory in its place (e.g. ``latest`` made a folder by hand or a sync tool) is
    the user's to fix: one :class:`CheckpointError` naming it."""
    try:
        atomic_write_text(path, text)
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, where a file is written; remove or "
                              "rename it") from None


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint of ``step`` (zero-padded so names sort by step)."""
    return f"step_{step:08d}"


# ---------------------------------------------------------------------- listing

def list_checkpoints(directory: PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_<N>`` folder in ``directory``, oldest first
    (complete or not; temporary folders excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {MANIFEST} (incomplete checkpoint)") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{manifest_path}: unreadable manifest: {err}") from None
    versions = (FORMAT_VERSION, SHARDED_FORMAT_VERSION)
    if not isinstance(manifest, dict) or manifest.get("format_version") not in versions:
        raise CheckpointError(f"{manifest_path}: not a version-{FORMAT_VERSION} or "
                              f"-{SHARDED_FORMAT_VERSION} manifest")
    step, files = manifest.get("step"), manifest.get("files")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{manifest_path}: malformed manifest: 'step' must be an "
                              f"int >= 0, got {step!r}")
    sharded = manifest.get("format_version") == SHARDED_FORMAT_VERSION
    if not isinstance(files, dict) or not (sharded or "model" in files):
        raise CheckpointError(f"{manifest_path}: malformed manifest: 'files' must map each "
                              f"saved state (at least 'model') to its file, got {files!r}")
    shards = manifest.get(SHARDED)
    if sharded and not (isinstance(shards, dict) and shards and all(
            isinstance(name, str) and not name.startswith(("/", ".."))
            and isinstance(e, dict) and isinstance(e.get("bytes"), int)
            and not isinstance(e["bytes"], bool) and isinstance(e.get("sha256"), str)
            for name, e in shards.items())):
        raise CheckpointError(f"{manifest_path}: malformed manifest: '{SHARDED}' must map "
                              f"each file of the sharded state to its size and hash, got "
                              f"{shards!r}")
    for part, entry in files.items():
        ok = (part in PARTS and isinstance(entry, dict)
              and isinstance(entry.get("file"), str) and entry["file"] == f"{part}.pt"
              and isinstance(entry.get("bytes"), int) and not isinstance(entry["bytes"], bool)
              and isinstance(entry.get("sha256"), str))
        if not ok:
            raise CheckpointError(f"{manifest_path}: malformed manifest entry for "
                                  f"{part!r}: {entry!r}")
    return manifest


def verify_checkpoint(path: PathLike, *, checksums: bool = True) -> dict[str, Any]:
    """Check that the checkpoint folder ``path`` is complete: a manifest, and every file it
    lists present with its recorded size (and SHA-256 when ``checksums``). Returns the
    manifest; raises :class:`CheckpointError` naming the first problem."""
    path = Path(path)
    manifest = _read_manifest(path)
    entries = [(part, path / entry["file"], entry) for part, entry in manifest["files"].items()]
    entries += [("sharded", path / SHARDED / name, entry)
                for name, entry in manifest.get(SHARDED, {}).items()]
    for part, file, entry in entries:
        if not file.is_file():
            raise CheckpointError(f"{file}: missing ({part} state)")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(f"{file}: {size} bytes, manifest says {entry['bytes']} "
                                  "(truncated or overwritten)")
        if checksums and sha256_of(file) != entry["sha256"]:
            raise CheckpointError(f"{file}: SHA-256 differs from the manifest (damaged file)")
    return manifest


def find_latest(directory: PathLike, *, checksums: bool = False) -> Optional[Path]:
    """The newest complete checkpoint under ``directory``, or None if there is none.

    The ``latest`` pointer is followed when it names a complete checkpoint; otherwise
    (missing pointer, or its target incomplete) the ``step_<N>`` folders are tried from
    the highest step down, with a warning for each incomplete one skipped. A
    ``directory`` that is itself a checkpoint is returned as is (when complete).
    """
    directory = Path(directory)
    if (directory / MANIFEST).exists():
        verify_checkpoint(directory, checksums=checksums)
        return directory
    for path in candidates(directory):
        try:
            verify_checkpoint(path, checksums=checksums)
            return path
        except CheckpointError as err:
            warnings.warn(f"skipping unusable checkpoint, looking for an older one: {err}",
                          RuntimeWarning, stacklevel=2)
    return None


def read_latest_pointer(directory: PathLike) -> Optional[str]:
    """The ``step_<N>`` name the ``latest`` file holds, or None when it is missing,
    unreadable or holds anything else (e.g. bytes that are not UTF-8)."""
    try:
        raw = (Path(directory) / LATEST).read_bytes()
    except OSError:
        return None
    name = raw.decode("utf-8", errors="replace").strip()
    return name if _NAME.match(name) else None


def candidates(directory: PathLike) -> list[Path]:
    """Checkpoint folders under ``directory`` in the order a resume tries them: the one
    ``latest`` names first (when it exists), then every ``step_<N>`` from the highest
    step down. Nothing is verified here."""
    directory = Path(directory)
    found = [path for _, path in reversed(list_checkpoints(directory))]
    name = read_latest_pointer(directory)
    if name is not None and (directory / name).is_dir():
        found = [directory / name] + [p for p in found if p.name != name]
    return found


def load_latest_intact(directory: PathLike, *, map_location: Any = "cpu",
                       weights_only: bool = True,
                       setup: Optional[dict[str, Any]] = None) -> Optional["Checkpoint"]:
    """Load the newest checkpoint under ``directory`` that passes every check (manifest,
    sizes, SHA-256, unpickling), falling back past damaged ones with a warning each.

    Returns None when ``directory`` holds no checkpoint at all; raises
    :class:`CheckpointError` naming ``directory`` and each problem when checkpoints
    exist but none is intact, so a caller never silently starts over damaged files.
    With ``setup``, a checkpoint saved with another setup (:func:`setup_differences`)
    is skipped like a damaged one, before its files are read."""
    directory = Path(directory)
    problems = []
    for path in candidates(directory):
        try:
            differences = setup_differences(_read_manifest(path), setup)
            if differences:
                raise _incompatible(path, differences)
            return load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except CheckpointError as err:
            problems.append(str(err))
            warnings.warn(f"skipping unusable checkpoint, looking for an older one: {err}",
                          RuntimeWarning, stacklevel=2)
    if not problems and not (directory / LATEST).exists():
        return None
    raise _no_intact_checkpoint(directory, problems)


def repair_latest(directory: PathLike, found: PathLike) -> Optional[str]:
    """Point a broken ``latest`` (missing, unreadable, or naming a folder that is gone or
    incomplete) at ``found``, the checkpoint a resume took instead; returns a warning
    line saying so, or None when the pointer was sound (also when it names an intact
    checkpoint of another setup: a later save moves it)."""
    directory, found = Path(directory), Path(found)
    name = read_latest_pointer(directory)
    if name == found.name:
        return None
    if name is not None:
        try:
            verify_checkpoint(directory / name, checksums=False)
            return None
        except CheckpointError:
            pass
    raw = "missing" if not (directory / LATEST).exists() else \
        f"naming {name!r}" if name is not None else "unreadable"
    _write_text(directory / LATEST, found.name + "\n")
    return (f"{directory / LATEST} was broken ({raw}); repaired: it now names "
            f"{found.name}, the checkpoint resumed from")


def check_resumable(directory: PathLike, *, setup: Optional[dict[str, Any]] = None) -> None:
    """Raise :class:`CheckpointError` (as :func:`load_latest_intact` would) when
    ``directory`` holds checkpoints but none with a sound manifest and file sizes (and,
    with ``setup``, saved with that setup); cheap (no hashing), for a check before a
    model is built."""
    directory = Path(directory)
    problems = []
    for path in candidates(directory):
        try:
            differences = setup_differences(verify_checkpoint(path, checksums=False), setup)
            if differences:
                raise _incompatible(path, differences)
            return
        except CheckpointError as err:
            problems.append(str(err))
    if problems or (directory / LATEST).exists():
        raise _no_intact_checkpoint(directory, problems)


def setup_differences(manifest: dict[str, Any], setup: Optional[dict[str, Any]]) -> list[str]:
    """How the setup a checkpoint was saved with (its manifest's ``setup``) differs from
    ``setup``, one ``"key: saved X, this run Y"`` per key; empty when they agree or
    either is unknown (checkpoints written before the setup was recorded)."""
    saved = manifest.get("setup")
    if not isinstance(saved, dict) or setup is None:
        return []
    return [f"{key}: saved {saved.get(key)!r}, this run {setup.get(key)!r}"
            for key in sorted(set(saved) | set(setup))
            if json.loads(json.dumps(saved.get(key))) != json.loads(json.dumps(setup.get(key)))]


def _incompatible(path: Path, differences: list[str]) -> CheckpointError:
    return CheckpointError(f"{path}: saved with another setup ({'; '.join(differences)})")


def _no_intact_checkpoint(directory: Path, problems: list[str]) -> CheckpointError:
    if not problems:
        problems = [f"{directory / LATEST}: names no checkpoint folder"]
    return CheckpointError(
        f"{directory}: no intact checkpoint to resume from ("
        + "; ".join(problems) + "). Move the damaged checkpoints away, or start fresh "
        "with checkpoint.resume=none (which overwrites them)")


# ------------------------------------------------------------------ save / load

def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the platform or file system cannot, so the caller falls back to two renames."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def _state_bytes(state: Any) -> int:
    """Bytes of the tensors in a (nested) state: about what ``torch.save`` writes."""
    if torch.is_tensor(state):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_state_bytes(v) for v in state)
    return 0


def first_nonfinite(state: Any, prefix: str = "") -> Optional[str]:
    """The name of the first floating-point tensor in a (nested) state that holds NaN
    or inf, or whose squared norm overflows float32 (some ``|w|`` near 1e19 or more:
    diverged weights whose products overflow in any forward pass); None when all are
    sound. One reduction per tensor: cheap next to writing the tensor to disk."""
    if torch.is_tensor(state):
        if state.is_floating_point() and state.numel():
            if not bool(torch.isfinite(state.detach().float().square().sum())):
                return prefix or "<tensor>"
        return None
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = first_nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def _remove_stale_temporaries(directory: Path) -> None:
    for child in directory.iterdir():
        if child.name.startswith(TMP_PREFIX):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def save_checkpoint(
    directory: PathLike,
    step: int,
    *,
    model_state: Any = None,
    sharded_state: Any = None,
    optimizer_state: Any = None,
    scheduler_state: Any = None,
    rng_state: Any = None,
    data_state: Any = None,
    extra: Any = None,
    keep_last: Optional[int] = None,
    is_main_process: bool = True,
    setup: Optional[dict[str, Any]] = None,
) -> Optional[Path]:
    """Write the checkpoint of ``step`` to ``directory/step_<N>`` atomically and point
    ``directory/latest`` at it; return its path (None on non-main processes, which
    write nothing).

    Each state is saved with ``torch.save`` to its own file (``model.pt``, ...), so keep
    them to tensors, numbers, strings, lists, tuples and dicts: those load back with
    ``torch.load(weights_only=True)``. States given as None are not written and load
    back as None. Saving a step that already has a checkpoint replaces it. With
    ``keep_last``, older checkpoints beyond the newest ``keep_last`` are deleted
    afterwards (see :func:`prune_checkpoints`). ``setup`` (JSON values) goes into the
    manifest: what a resume must match (e.g. the model and the process count), checked
    with :func:`setup_differences` before anything is loaded.

    ``sharded_state`` instead of ``model_state`` (and ``optimizer_state``): a state dict
    of sharded tensors (FSDP2's DTensors, e.g. ``{"model": ..., "optimizer": ...}`` from
    ``torch.distributed.checkpoint.state_dict.get_state_dict``), written by every rank at
    once with ``torch.distributed.checkpoint.save`` into the checkpoint's ``sharded/``
    folder. Then every rank must call this function (it is a collective); the main one
    writes the other states, hashes every file and renames the folder into place.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: expected an int >= 0, got {step!r}")
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
        raise ValueError(f"keep_last: expected an int >= 1 or None, got {keep_last!r}")
    if (model_state is None) == (sharded_state is None):
        raise ValueError("model_state, sharded_state: give exactly one")
    if sharded_state is not None and optimizer_state is not None:
        raise ValueError("optimizer_state: with sharded_state, the optimiser's state goes "
                         "into sharded_state")
    if not is_main_process and sharded_state is None:
        return None
    directory = Path(directory)
    name = checkpoint_name(step)
    final = directory / name
    states = dict(model=model_state, optimizer=optimizer_state, scheduler=scheduler_state,
                  rng=rng_state, data=data_state, extra=extra)
    tmp = None
    if is_main_process:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(directory)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}-", dir=directory))
    if sharded_state is not None:
        try:
            tmp = _save_sharded(sharded_state, tmp)
        except BaseException as err:
            if is_main_process and tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if is_disk_full(err):
                raise _disk_full(directory, step, sharded_state) from err
            raise
        if not is_main_process:
            return None
    displaced = None
    try:
        files = {}
        for part, state in states.items():
            if state is None:
                continue
            file = tmp / f"{part}.pt"
            torch.save(state, file)
            fsync_file(file)
            files[part] = {"file": file.name, "bytes": file.stat().st_size,
                           "sha256": sha256_of(file)}
        manifest = {"format_version": FORMAT_VERSION, "step": step,
                    "saved_at_unix": time.time(), "files": files}
        if setup is not None:
            manifest["setup"] = setup
        if sharded_state is not None:
            manifest["format_version"] = SHARDED_FORMAT_VERSION
            manifest[SHARDED] = {
                str(file.relative_to(tmp / SHARDED)): {"bytes": file.stat().st_size,
                                                       "sha256": sha256_of(file)}
                for file in sorted((tmp / SHARDED).rglob("*")) if file.is_file()}
        _write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        fsync_dir(tmp)
        if final.exists():  # re-saving a step: swap the two folders in one rename
            if _exchange(tmp, final):
                displaced = tmp  # now holds the old checkpoint
            else:  # no atomic exchange here: move the old one aside, then rename
                displaced = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-{name}-",
                                                  dir=directory))
                os.replace(final, displaced / name)
                os.replace(tmp, final)
        else:
            os.replace(tmp, final)
        fsync_dir(directory)
    except BaseException as err:
        if displaced is not tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(err):
            raise _disk_full(directory, step, [states, sharded_state]) from err
        raise
    _write_text(directory / LATEST, name + "\n")
    if displaced is not None:
        shutil.rmtree(displaced, ignore_errors=True)
    if keep_last is not None:
        prune_checkpoints(directory, keep_last=keep_last)
    return final


def _disk_full(directory: Path, step: int, states: Any) -> CheckpointError:
    return CheckpointError(
        f"{directory}: no space left on the device while writing the checkpoint of "
        f"step {step} ({free_bytes(directory) / 2**20:.0f} MiB free; one checkpoint "
        f"needs about {_state_bytes(states) / 2**20:.0f} MiB). Free some space or "
        "set train.output_dir elsewhere, then resume with checkpoint.resume=auto")


def _save_sharded(state: Any, tmp: Optional[Path]) -> Path:
    """Every rank: ``torch.distributed.checkpoint.save`` of ``state`` into the main
    rank's temporary folder ``tmp`` (its name broadcast), then a barrier, so that every
    shard is on disk before the main rank hashes the files. Returns ``tmp``."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    name = [str(tmp) if tmp is not None else None]
    if dist.is_initialized():
        dist.broadcast_object_list(name, src=0)
    tmp = Path(name[0])
    dcp.save(state, checkpoint_id=str(tmp / SHARDED))
    if dist.is_initialized():
        dist.barrier()
    for file in (tmp / SHARDED).rglob("*"):
        if file.is_file():
            fsync_file(file)
    return tmp


def prune_checkpoints(directory: PathLike, *, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` highest-step checkpoints; the one ``latest``
    points to is always kept. Returns the deleted paths."""
    if not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 1:
        raise ValueError(f"keep_last: expected an int >= 1, got {keep_last!r}")
    directory = Path(directory)
    protected = read_latest_pointer(directory)
    checkpoints = list_checkpoints(directory)
    deleted = []
    for _, path in checkpoints[:max(len(checkpoints) - keep_last, 0)]:
        if path.name == protected:
            continue
        # Rename first, so a kill during the deletion leaves a hidden temporary folder
        # (removed by the next save) rather than a half-deleted step_<N>.
        doomed = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}pruned-{path.name}-", dir=directory))
        os.replace(path, doomed / path.name)
        shutil.rmtree(doomed)
        deleted.append(path)
    return deleted


def load_checkpoint(path_or_dir: PathLike, *, map_location: Any = "cpu",
                    checksums: bool = True, weights_only: bool = True,
                    consolidate: bool = False) -> Checkpoint:
    """Load a checkpoint folder, or the latest complete one under a parent directory.

    Every file is checked against the manifest (size, and SHA-256 when ``checksums``)
    before it is unpickled; ``weights_only=True`` restricts unpickling to tensors and
    plain containers. Raises ``FileNotFoundError`` when there is no checkpoint and
    :class:`CheckpointError` when it is incomplete or damaged.

    A sharded checkpoint's model and optimiser stay on disk (``Checkpoint.sharded``
    names their folder; a sharded run loads them into its own shards) unless
    ``consolidate``: then they are assembled into full state dicts in this one process
    (``torch.distributed.checkpoint``'s offline converter), e.g. for inference or export.
    """
    given = Path(path_or_dir)
    if not given.exists():
        raise FileNotFoundError(f"path_or_dir: no such checkpoint or directory: {given}")
    path = given if (given / MANIFEST).exists() or _NAME.match(given.name) else find_latest(given)
    if path is None:
        raise FileNotFoundError(f"path_or_dir: no complete checkpoint under {given}")
    manifest = verify_checkpoint(path, checksums=checksums)
    states = {part: None for part in PARTS}
    for part, entry in manifest["files"].items():
        try:
            states[part] = torch.load(path / entry["file"], map_location=map_location,
                                      weights_only=weights_only)
        except Exception as err:
            raise CheckpointError(f"{path / entry['file']}: cannot be loaded: {err}") from err
    sharded = path / SHARDED if SHARDED in manifest else None
    if sharded is not None and consolidate:
        full = _consolidate(sharded)
        states["model"], states["optimizer"] = full.get("model"), full.get("optimizer")
    return Checkpoint(path=path, step=int(manifest["step"]), model_state=states["model"],
                      optimizer_state=states["optimizer"], scheduler_state=states["scheduler"],
                      rng_state=states["rng"], data_state=states["data"], extra=states["extra"],
                      sharded=sharded)


def _consolidate(folder: Path) -> dict[str, Any]:
    """The full (unsharded) state dicts saved in a ``torch.distributed.checkpoint``
    folder, assembled in this process."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / "full.pt"
        try:
            dcp_to_torch_save(str(folder), str(file))
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CheckpointError(f"{folder}: cannot be consolidated: {err}") from err

__all__ = [
    "Checkpoint", "CheckpointError",
    "candidates", "check_resumable", "repair_latest",
    "setup_differences", "checkpoint_name", "find_latest",
    "first_nonfinite",
    "list_checkpoints", "load_checkpoint", "load_latest_intact", "prune_checkpoints",
    "read_latest_pointer", "save_checkpoint", "verify_checkpoint",
]
