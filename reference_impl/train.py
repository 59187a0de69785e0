"""Train a Qwen2.5-VL policy with PGPO (or DAPO / GRPO / a PGPO ablation).

    python reference_impl/train.py                        # tiny model, synthetic task, CPU
    python reference_impl/train.py --help                 # every option, grouped
    python reference_impl/train.py --algo.name dapo rollout.temperature=0.7
    torchrun --nproc_per_node 8 reference_impl/train.py \\
        --config reference_impl/configs/paper_qwen2_5_vl_7b.yaml \\
        --model.path /models/Qwen2.5-VL-7B-Instruct --data.source /data/ViRL39K

Writes ``<train.output_dir>/``: ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``,
``learning_curves.png`` and ``samples.html``. SIGTERM (or Ctrl-C) saves a checkpoint
and exits with status 0 (during the end-of-run report: the report and ``summary.json``
are finished first); ``checkpoint.resume=auto`` continues from it exactly, with the
logs cut back to that checkpoint; a signal during start-up (before training began)
exits 0 having written nothing. Faults the user can fix end with one line naming the
config field or file, never a traceback: a bad configuration (also one found when the
rollout engine is set up, e.g. ``rollout.tis_cap`` without vLLM) with exit status 2;
output folder, free disk, model folder, data, damaged or incompatible checkpoints,
diverged weights, a full disk during any write, and another process of a torchrun job
failing, with exit status 1, before the model is built where possible.
"""

from __future__ import annotations

import signal

# Signals that arrive before :func:`main` installs its handlers (the imports, reading the
# config): remembered here, as the script's first statement, and handled as a stop
# during start-up. Only the interpreter's own start (before this line) is left to the
# default action, and nothing has been written then.
_EARLY_SIGNALS: list[int] = []
if __name__ == "__main__":
    for _sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(_sig, lambda signum, frame: _EARLY_SIGNALS.append(signum))

import errno  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# A path of the run's that the file system refuses: a folder where a file is written (or
# the reverse), a forbidden or read-only place. The user's to fix, like a full disk.
PATH_REFUSED = (errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EROFS)


def main(argv: list[str] | None = None, *, early_stop: list[int] | None = None) -> dict:
    """Train; returns the summary (also written to ``summary.json``). ``early_stop``:
    signals received before this function installed its handlers (see :func:`cli`)."""
    from reference_impl.config import ConfigError, load_config

    try:
        cfg = load_config(argv, prog="train.py")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    import torch

    from reference_impl.policy.distributed import init_distributed, peer_failure, shutdown
    from reference_impl.runlog.checkpoint import CheckpointError
    from reference_impl.runlog.files import atomic_write_text
    from reference_impl.runlog.numerics import numerical_environment
    from reference_impl.runlog.signals import GracefulExit
    from reference_impl.loop.trainer import Trainer

    if torch.get_num_threads() > (os.cpu_count() or 1):
        torch.set_num_threads(os.cpu_count() or 1)
    # SIGTERM/SIGINT are handled from here to the end of the process: the trainer polls
    # the flag (and saves) while training; during the report and the summary a signal
    # only marks the stop, so summary.json is still written and the exit status is 0.
    with GracefulExit() as stop:
        if early_stop:
            stop.request(early_stop[0])
        env = init_distributed(device=cfg.train.device, backend=cfg.dist.backend,
                               timeout_minutes=cfg.dist.timeout_minutes)
        if env.distributed and env.device.type == "cpu":
            # Split the cores between the processes instead of oversubscribing them.
            torch.set_num_threads(max((os.cpu_count() or 1) // env.world_size, 1))
        finished = False
        trainer = None
        try:
            if not _stopped_at_start_up(stop, env):
                trainer = Trainer(cfg, env)
            if trainer is None or _stopped_at_start_up(stop, env):
                finished = True
                return {"resumed_from": None, "stopped_by_signal": True, "steps": None}
            summary = trainer.fit()
            finished = True
        except RuntimeError as err:  # a peer process gone: say which, and how to resume
            failure = None if isinstance(err, CheckpointError) or not env.distributed \
                else peer_failure(err, env, _last_checkpoint(cfg))
            if failure is None:
                raise
            raise failure from None
        finally:
            # Free the model (and with it DDP's hold on the process group) while the
            # interpreter is fully alive, then leave the group in step with the others.
            # The rollout engine goes first: vLLM tears down a group of its own.
            if trainer is not None:
                trainer.engine.close()
            del trainer
            gc.collect()
            shutdown(synchronize=finished)
        if env.is_main:
            # What decides the run's floating-point results besides the seed and the
            # configuration (threads, CPU kernels, versions): paths compare only where equal.
            summary["numerics"] = numerical_environment()
            os.makedirs(cfg.train.output_dir, exist_ok=True)
            atomic_write_text(os.path.join(cfg.train.output_dir, "summary.json"),
                              json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _last_checkpoint(cfg) -> str | None:
    from reference_impl.runlog.checkpoint import read_latest_pointer

    folder = os.path.join(cfg.train.output_dir, "checkpoints")
    name = read_latest_pointer(folder)
    return os.path.join(folder, name) if name else None


def _stopped_at_start_up(stop, env) -> bool:
    """Whether a stop signal came (on any process) before training began: nothing is
    trained or saved yet, so the run just ends (exit status 0, no summary written)."""
    from reference_impl.policy.distributed import any_process

    if not any_process(stop.requested, env.device):
        return False
    if env.is_main:
        print(f"stop signal ({stop.signal_name or 'from another process'}) during start-up: "
              "nothing trained or saved yet; exiting", flush=True)
    return True


def _quiet_disk_full(previous):
    """A ``threading.excepthook`` that leaves a full disk in a background thread (e.g.
    TensorBoard's writer) to the main thread, which reports it in one line."""
    def hook(args):
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL:
            return
        previous(args)
    return hook


def cli(argv: list[str] | None = None) -> int:
    """``main`` for the command line: a fault the user can fix ends with one line naming
    the field or file, not a traceback: a bad configuration with exit status 2; bad
    data, output folder, model folder, damaged or incompatible checkpoints, diverged
    weights, a full disk, a failed peer process with exit status 1. A stop signal
    (SIGTERM, Ctrl-C) exits 0, also during start-up."""
    early: list[int] = []  # signals before main() installs its handlers (imports, config)
    previous = {sig: signal.signal(sig, lambda signum, frame: early.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    early[:0] = _EARLY_SIGNALS  # and those that came before cli() ran
    _EARLY_SIGNALS.clear()
    previous_hook = threading.excepthook
    threading.excepthook = _quiet_disk_full(previous_hook)
    try:
        from reference_impl.runlog.checkpoint import CheckpointError
        from reference_impl.config import ConfigError
        from reference_impl.policy.distributed import PeerProcessError
        from reference_impl.loop.preflight import PreflightError

        main(argv, early_stop=early)
    except ConfigError as err:  # found after the config was read (e.g. the rollout engine)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (PreflightError, CheckpointError, FloatingPointError, PeerProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno in PATH_REFUSED:
            where = f"{err.filename}: {err.strerror}" if err.filename else str(err)
            print(f"error: {where}; fix that path (or choose another train.output_dir), "
                  "then resume with checkpoint.resume=auto", file=sys.stderr)
            return 1
        if err.errno not in DISK_FULL:
            raise
        print(f"error: no space left on the device: {err}. Free some space, then resume "
              "with checkpoint.resume=auto (from the last checkpoint saved)", file=sys.stderr)
        return 1
    finally:
        threading.excepthook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(cli())
    except KeyboardInterrupt:  # Ctrl-C in the first instant, before any handler exists
        print("stop signal (SIGINT) during start-up: nothing trained or saved yet; exiting",
              file=sys.stderr)
        sys.exit(0)
    finally:
        # The run is over. While the interpreter tears itself down it resets every
        # Python-level handler to the default action (ignored signals stay ignored), so a
        # stop signal then would end the process with status 130/143 instead of 0.
        for _sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(_sig, signal.SIG_IGN)
