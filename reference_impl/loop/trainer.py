"""The PGPO reference trainer: the run's lifecycle, read top to bottom in :meth:`Trainer.fit`.

A run goes through named phases (verl's ``fit()``, open-r1's stages)::

    resume          the newest intact checkpoint of this setup, logs cut back to it
    evaluate        the untrained policy (eval.at_start)
    warm up         supervised steps on reference responses (model.sft_warmup_steps)
    evaluate        after the warm-up: the RL gain's baseline
    RL steps        collect -> score -> update (:mod:`reference_impl.loop.rl_step`),
                    periodic evaluations and checkpoints
    finish          checkpoint, final evaluation, summary (RL gain), report

Where the run is lives in one :class:`reference_impl.loop.state.RunState`, saved whole in
every checkpoint. The RL step's phases and the evaluation are the trainer's parts in
:mod:`~reference_impl.loop.rl_step` and :mod:`~reference_impl.loop.evaluation`; the
policy is built by :mod:`reference_impl.policy.model`, the data by
:mod:`reference_impl.data.datasets`. Every equation lives in ``pgpo_core``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from reference_impl.config import Config, ConfigError
from reference_impl.data.datasets import Subset
from reference_impl.loop import preflight
from reference_impl.loop.evaluation import HeldOutEvaluation, dependency_concentration
from reference_impl.loop.rl_step import RLStepPhases
from reference_impl.loop.state import RunState
from reference_impl.loop.timing import is_timing_key, marked_timer, timing_metrics
from reference_impl.loop.warmup import supervised_warmup, warmup_optimizer
from reference_impl.policy.distributed import (DistEnv, any_process, gather_objects,
                                               parallel_strategy)
from reference_impl.policy.model import build_lr_scheduler, build_policy, model_setup, resolve_dtype
from reference_impl.rollout import engines
from reference_impl.rollout.batch import pad_token_id, prompts_that_fit, teacher_forced_batch
from reference_impl.runlog import checkpoint as ckpt
from reference_impl.runlog import report
from reference_impl.runlog.metrics import MetricsLogger, read_metrics
from reference_impl.runlog.rng import capture_rng_state, restore_rng_state
from reference_impl.runlog.signals import GracefulExit


class Trainer(RLStepPhases, HeldOutEvaluation):
    """Runs the whole training: warm-up, RL steps, evaluation, checkpoints, report."""

    def __init__(self, cfg: Config, env: DistEnv) -> None:
        self.cfg, self.env = cfg, env
        self.device = env.device
        _seed_everything(cfg.train.seed + env.rank)
        # Refuse a rollout setup the engine cannot serve before any work (names the field).
        backend = engines.check_trainer_setup(cfg, self.device, env.world_size)
        self.pgpo = cfg.pgpo_config()
        self.reshape = cfg.algo.reweights_tokens
        self.dynamic_sampling = cfg.algo.uses_dynamic_sampling
        # Output folder, free disk, model folder and data, before the model is built.
        self.train_data, self.heldout = preflight.run(cfg, env)
        model, self.processor = build_policy(cfg, self.device)
        self.strategy = parallel_strategy(
            model, env, fsdp=cfg.dist.fsdp, cpu_offload=cfg.dist.cpu_offload,
            compute_dtype=resolve_dtype(cfg, self.device))
        self.model = self.strategy.model
        self.pad_id = pad_token_id(self.processor)
        self.strategy.prepare(self._first_forward)
        self.engine = engines.build_trainer_engine(backend, cfg=cfg, env=env,
                                                   strategy=self.strategy,
                                                   processor=self.processor)
        self._engine_weights = engines.weights_version(self.model)
        self._warned_long_prompts = False  # the once-per-run note of _draw_examples
        self.heldout = self._heldout_that_fits(self.heldout)
        if self.total_steps < 1 and cfg.train.total_steps is None:
            raise ValueError("train.epochs: gives 0 RL steps for this data")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                           eps=cfg.optim.adam_eps,
                                           weight_decay=cfg.optim.weight_decay)
        updates = self.total_steps * self.minibatches_per_step * cfg.optim.ppo_epochs
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.optim.lr_schedule,
                                            warmup=cfg.optim.lr_warmup_steps, total=updates)
        self.run = RunState(warmup_done=cfg.model.sft_warmup_steps == 0)
        self.saved_at: tuple[int, bool] | None = None  # (step, warmup_done) last saved
        self.warmup_optimizer = None if self.run.warmup_done else warmup_optimizer(
            self.model, lr=cfg.model.sft_warmup_lr, vision_lr=cfg.model.sft_warmup_vision_lr)
        self.output_dir = Path(cfg.train.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"
        self.last_samples: list[dict[str, Any]] = []
        self.last_eval_per_prompt: list[float] = []

    def _heldout_that_fits(self, heldout):
        """The held-out prompts whose text alone fits ``rollout.max_prompt_length`` (all of
        them, the same object, for the synthetic tasks): an evaluation batch is padded to
        its longest prompt, so one over-long question would cost memory in the square of
        its length. Those left out are said once; none left is an error."""
        limit = self.cfg.rollout.max_prompt_length
        fits = prompts_that_fit(self.processor, [e.prompt for e in heldout], limit)
        keep = [i for i, ok in enumerate(fits) if ok]
        if len(keep) == len(fits):
            return heldout
        if not keep:
            raise ConfigError(f"rollout.max_prompt_length: all {len(fits)} held-out prompts "
                              f"are longer than {limit} tokens (text alone); raise it or "
                              "filter data.eval_source / data.source")
        warnings.warn(f"{len(fits) - len(keep)} of {len(fits)} held-out prompts are "
                      f"longer than rollout.max_prompt_length={limit} tokens and are left "
                      "out of the evaluations", RuntimeWarning, stacklevel=2)
        return Subset(heldout, keep)

    # ------------------------------------------------------------------ sizes

    @property
    def total_steps(self) -> int:
        t = self.cfg.train
        if t.total_steps is not None:
            return t.total_steps
        per_step = self.cfg.rollout.prompts_per_step * self.env.world_size
        return int(math.ceil(t.epochs * len(self.train_data) / per_step))

    @property
    def minibatches_per_step(self) -> int:
        return self.cfg.rollout.prompts_per_step // self.cfg.optim.mini_batch_size

    @property
    def policy(self) -> Any:
        """The trained module without its DDP wrapper (a peft model under LoRA)."""
        return self.strategy.policy

    # ------------------------------------------------------------------ warm-up

    def warmup(self, logger: MetricsLogger, should_stop: Callable[[], bool]) -> bool:
        """Supervised warm-up (:mod:`reference_impl.loop.warmup`) before RL, from step
        ``warmup_step + 1`` (a resumed warm-up goes on where it stopped); False if
        ``should_stop`` (a collective) ended it."""
        steps = self.cfg.model.sft_warmup_steps
        if self.run.warmup_done or steps == 0:
            return True
        r = self.cfg.rollout

        def on_step(i: int, loss: float) -> None:
            self.run.warmup_step = i
            logger.log(0, {"sft_step": i, "sft_loss": loss}, kind="sft")
            logger.progress(0, sft=f"{i}/{steps}", loss=loss)

        done = supervised_warmup(
            self.model, self.processor, self._next_examples, optimizer=self.warmup_optimizer,
            steps=steps, start=self.run.warmup_step,
            batch_size=r.prompts_per_step * r.samples_per_prompt,
            grad_clip=self.cfg.optim.grad_clip, device=self.device,
            world_size=self.env.world_size, autocast=self._autocast,
            should_stop=should_stop, on_step=on_step,
            max_response_length=r.max_response_length)
        self.run.warmup_done = done
        if done:
            self.warmup_optimizer = None  # RL has its own; the warm-up's state is not needed
        return done

    # ------------------------------------------------------------------ state

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything a resumed run needs: the model and optimiser as the parallel strategy
        gives them (full on the main process, or each rank's shards), RNG from every rank."""
        # During the warm-up the checkpoint holds the warm-up's optimiser (RL's has done
        # nothing yet), so that a stopped warm-up resumes exactly.
        warming = not self.run.warmup_done
        weights = self.strategy.checkpoint_state(
            self.warmup_optimizer if warming else self.optimizer)
        rng = {"per_rank": gather_objects(capture_rng_state(), self.env)}
        return dict(**weights,
                    scheduler_state=self.scheduler.state_dict(), rng_state=rng,
                    data_state=self.train_data.state_dict(),
                    extra=self.run.to_checkpoint(world_size=self.env.world_size,
                                                 algo=self.cfg.algo.name))

    def save(self) -> Path | None:
        """Checkpoint the current step (all ranks call it). Weights that are NaN/inf, or
        so large that their square overflows, are refused: they would replace the last
        good checkpoint as ``latest``."""
        state = self.checkpoint_state()
        if "sharded_state" in state:  # every rank checks its own shards
            bad = ckpt.first_nonfinite({k: v.to_local() if hasattr(v, "to_local") else v
                                        for k, v in state["sharded_state"]["model"].items()})
        else:
            bad = ckpt.first_nonfinite(state["model_state"]) if self.env.is_main else None
        if any_process(bad is not None, self.device):
            raise self._diverged(f"step {self.run.step}: the weights are not finite (first: "
                                 f"{bad or 'on another rank'}), so they are not saved",
                                 "lower optim.lr (now {lr}) or set optim.grad_clip")
        path = ckpt.save_checkpoint(self.ckpt_dir, self.run.step, keep_last=self.cfg.checkpoint.keep_last,
                                    is_main_process=self.env.is_main,
                                    setup=model_setup(self.cfg, self.env.world_size), **state)
        if self.env.distributed:
            import torch.distributed as dist
            dist.barrier()
        self.saved_at = (self.run.step, self.run.warmup_done)
        return path

    def resume(self) -> bool:
        """Load ``checkpoint.resume``: 'auto' takes the newest intact checkpoint under
        output_dir (falling back past damaged ones; an error naming the folder when
        checkpoints exist but none is intact), a path takes that checkpoint."""
        where = self.cfg.checkpoint.resume
        if where is None:
            return False
        setup = model_setup(self.cfg, self.env.world_size)
        if where == "auto":
            try:
                c = ckpt.load_latest_intact(self.ckpt_dir, setup=setup) \
                    if self.ckpt_dir.exists() else None
            except ckpt.CheckpointError as err:
                raise ckpt.CheckpointError(f"checkpoint.resume=auto: {err}") from None
            if c is None:
                return False
            repaired = ckpt.repair_latest(self.ckpt_dir, c.path) if self.env.is_main else None
            if repaired:
                warnings.warn(repaired, RuntimeWarning, stacklevel=2)
        else:
            c = ckpt.load_checkpoint(where, map_location="cpu")
        extra = c.extra or {}
        if extra.get("world_size", 1) != self.env.world_size:  # checkpoints before the setup
            raise ckpt.CheckpointError(
                f"checkpoint.resume={where}: {c.path} was saved with "
                f"{extra.get('world_size')} process(es), this run has {self.env.world_size}; "
                "resume with the same number of processes")
        try:
            run = RunState.from_checkpoint(extra)
        except (KeyError, TypeError, ValueError) as err:
            raise ckpt.CheckpointError(
                f"checkpoint.resume={where}: {c.path} has no readable run state (extra.pt): "
                f"{type(err).__name__} {err}") from None
        try:
            self._load(c, run)
        except ckpt.CheckpointError:
            raise
        except (RuntimeError, ValueError, KeyError) as err:  # e.g. Missing key(s) in state_dict
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ckpt.CheckpointError(
                f"checkpoint.resume={where}: {c.path} does not fit this run's model setup "
                f"(LoRA, model or frozen parts differ?): {first}") from None
        return True

    def _load(self, c: Any, run: RunState) -> None:
        """Restore the state of checkpoint ``c``, whose run state is ``run`` (see
        :meth:`resume`)."""
        # Before the first RL step (a warm-up checkpoint) the RL optimiser and schedule
        # have done nothing: they stay as this run's config built them, so RL runs that
        # start from one warm-up may use their own optim.* settings.
        rl_started = run.step > 0
        if not run.warmup_done and run.warmup_step > 0:  # the warm-up's optimiser, to go on
            if self.warmup_optimizer is None:
                raise ckpt.CheckpointError(
                    f"checkpoint.resume: {c.path} stopped during the warm-up (step "
                    f"{run.warmup_step}); model.sft_warmup_steps must be > 0 to finish it")
            self.strategy.load_checkpoint_state(self.warmup_optimizer, c, with_optimizer=True)
        else:
            self.strategy.load_checkpoint_state(self.optimizer, c, with_optimizer=rl_started)
        if run.warmup_done:
            self.warmup_optimizer = None
        if rl_started:
            self.scheduler.load_state_dict(c.scheduler_state)
        restore_rng_state(c.rng_state["per_rank"][self.env.rank], strict=False)
        self.train_data.load_state_dict(c.data_state)
        self.run = run
        self.saved_at = (run.step, run.warmup_done)

    # ------------------------------------------------------------------ main loop

    def _logged_after_checkpoint(self, row: dict[str, Any]) -> bool:
        """Whether a metrics row was written after the checkpoint of the current step
        was saved (so a resume from that checkpoint writes it again): later steps, the
        evaluations that follow a save (after the warm-up, final), the periodic
        evaluation of a checkpoint saved with it pending (a resume runs it again), and
        the rows of a warm-up that a resume runs again."""
        step = row.get("step", -1)
        if step != self.run.step:
            return step > self.run.step
        if row.get("kind") == "sft":
            return not self.run.warmup_done and row.get("sft_step", 0) > self.run.warmup_step
        if row.get("kind") != "eval":
            return False
        if "phase" not in row and "sft_step" not in row:  # a periodic evaluation
            return self.run.eval_pending
        return row.get("phase") in ("warmed_up", "final")

    def fit(self) -> dict[str, Any]:
        """The run, phase by phase: resume, evaluate the untrained policy, warm up,
        evaluate after the warm-up, RL steps (with periodic evaluations and checkpoints),
        finish (checkpoint, final evaluation, summary, report).

        Returns a summary: steps run, the evaluations, the RL gain, whether a stop signal
        ended it. A stop signal ends the phase it comes in, saving what a resume needs.
        The logs follow the checkpoints: a resumed run first drops what was logged after
        the checkpoint it resumes from, and a run that resumes a finished run (final
        evaluation logged) logs nothing."""
        resumed = self.resume()
        final_row = self._logged_final_evaluation() if resumed else None
        finished = any_process(final_row is not None, self.device)
        logger = self._open_logs(resumed, finished)
        summary: dict[str, Any] = {"resumed_from": self.run.step if resumed else None,
                                   "stopped_by_signal": False}
        summary.update({k: v for k, v in self.run.headline.items() if k.startswith("eval_")})
        if finished:
            logger.write(f"resumed a finished run (step {self.run.step}): nothing to do")
            return self._finish_again(logger, summary, final_row)
        phases = [self._evaluate_untrained] if not resumed else []
        phases += [self._warm_up, self._evaluate_warmed_up, self._rl_steps, self._finish]
        with GracefulExit() as stop:
            stopping = lambda: any_process(stop.requested, self.device)  # noqa: E731
            for phase in phases:
                end = phase(logger, summary, stopping)
                if end is None:
                    continue
                summary["steps"] = self.run.step
                if end.message is not None:  # a stop signal
                    summary["stopped_by_signal"] = True
                    logger.write(end.message)
                logger.close()
                break
        return summary

    # ------------------------------------------------------------------ phases
    # Each takes (logger, summary, stopping) and returns None to go on, or an _End.

    def _evaluate_untrained(self, logger: MetricsLogger, summary: dict[str, Any],
                            stopping: Callable[[], bool]) -> "_End | None":
        if not self.cfg.eval.at_start:
            return None
        ev, took = self._timed_evaluate(should_stop=stopping)
        if ev is None:  # nothing trained yet: nothing to save
            return _End("stop signal during the first evaluation: nothing trained or saved "
                        "yet; exiting")
        logger.log(self.run.step, {**ev, "phase": "untrained", "sft_step": 0, **took},
                   kind="eval")
        logger.write(f"eval (untrained): {_fmt(ev)}")
        summary["eval_untrained"] = self.run.headline["eval_untrained"] = ev
        return None

    def _warm_up(self, logger: MetricsLogger, summary: dict[str, Any],
                 stopping: Callable[[], bool]) -> "_End | None":
        warming = not self.run.warmup_done and self.cfg.model.sft_warmup_steps > 0
        if not self.warmup(logger, stopping):
            self._timed_save(logger)  # weights, warm-up optimiser, data, RNG: resumes exactly
            return _End(f"stop signal during warm-up: saved warm-up step {self.run.warmup_step} "
                        f"of {self.cfg.model.sft_warmup_steps} (a resume goes on from there) "
                        "and exiting")
        if warming:
            self._timed_save(logger)  # the warm-up is never lost to a crash early in RL
        return None

    def _evaluate_warmed_up(self, logger: MetricsLogger, summary: dict[str, Any],
                            stopping: Callable[[], bool]) -> "_End | None":
        cfg = self.cfg
        if not (self.run.step == 0 and cfg.model.sft_warmup_steps and cfg.eval.at_start):
            return None
        ev, took = self._timed_evaluate(should_stop=stopping)
        if ev is None:  # the warm-up's checkpoint is saved; a resume evaluates it
            return _End("stop signal during the evaluation after the warm-up: the warm-up is "
                        "saved; exiting")
        logger.log(self.run.step, {**ev, "phase": "warmed_up",
                                   "sft_step": cfg.model.sft_warmup_steps, **took}, kind="eval")
        logger.write(f"eval (after warm-up): {_fmt(ev)}")
        summary["eval_warmed_up"] = self.run.headline["eval_warmed_up"] = ev
        self.run.headline["warmed_up_per_prompt"] = list(self.last_eval_per_prompt)
        return None

    def _rl_steps(self, logger: MetricsLogger, summary: dict[str, Any],
                  stopping: Callable[[], bool]) -> "_End | None":
        """RL steps to ``total_steps``, each followed by its periodic evaluation and
        checkpoint when due; then the last step is saved (if it is not yet)."""
        cfg = self.cfg
        if self.total_steps == 0:  # warm-up only: its checkpoint is saved; stop
            if self.saved_at != (self.run.step, self.run.warmup_done):
                self._timed_save(logger)
            return _End(None)
        if self.run.eval_pending and not self._periodic_eval(logger, stopping):
            return _End(f"stop signal during the evaluation at step {self.run.step} (still "
                        "pending in its checkpoint); exiting")
        stopped = False
        while self.run.step < self.total_steps and not stopped:
            if stopping():
                stopped = True
                break
            metrics = self._diverged_step_is_clear(self.rl_step)
            self.run.step += 1
            if self.run.step % cfg.logging.log_every == 0 or self.run.step == self.total_steps:
                logger.log(self.run.step, metrics)
            if metrics.get("nonfinite_skipped", 0.0) > 0:
                logger.write(
                    f"step {self.run.step}: skipped an update with a NaN/inf loss or gradient "
                    f"({self.run.consecutive_nonfinite} in a row; the run stops after "
                    f"optim.max_nonfinite_steps={cfg.optim.max_nonfinite_steps})")
            logger.progress(1, reward=metrics["reward"], acc=metrics["accuracy"])
            if cfg.eval.every and self.run.step % cfg.eval.every == 0 \
                    and self.run.step != self.total_steps:
                self.run.eval_pending = True
                stopped = not self._periodic_eval(logger, stopping)  # saved below if so
            if not stopped and cfg.checkpoint.every and self.run.step % cfg.checkpoint.every == 0:
                self._timed_save(logger)
        if self.saved_at != (self.run.step, self.run.warmup_done):
            self._timed_save(logger)
        summary["steps"] = self.run.step
        return _End(f"stop signal: saved step {self.run.step} and exiting") if stopped else None

    def _finish(self, logger: MetricsLogger, summary: dict[str, Any],
                stopping: Callable[[], bool]) -> "_End | None":
        """The final evaluation, the summary (RL gain) and the report."""
        cfg = self.cfg
        ev, took = self._timed_evaluate(
            keep_samples=cfg.logging.html_samples if cfg.logging.html_report else 0,
            should_stop=stopping)
        if ev is None:
            return _End(f"stop signal during the final evaluation: step {self.run.step} is "
                        "saved, a resume evaluates it; exiting")
        logger.log(self.run.step, {**ev, "phase": "final", **took}, kind="eval")
        logger.write(f"eval (final) @ step {self.run.step}: {_fmt(ev)}")
        self._final_summary(ev, summary, logger.write)
        logger.close()
        # Still inside the signal handler: a SIGTERM now lets the report finish.
        if self.env.is_main:
            self._report(logger.path)
        return None

    # ------------------------------------------------------------------ phase helpers

    def _logged_final_evaluation(self) -> dict[str, Any] | None:
        """The final evaluation row of a resumed run that had already finished, if any."""
        metrics_file = self.output_dir / "metrics.jsonl"
        if self.run.step < self.total_steps or not self.env.is_main \
                or not metrics_file.exists():
            return None
        return next((r for r in read_metrics(str(metrics_file))
                     if r.get("kind") == "eval" and r.get("phase") == "final"
                     and r.get("step") == self.run.step), None)

    def _open_logs(self, resumed: bool, finished: bool) -> MetricsLogger:
        """metrics.jsonl and TensorBoard, cut back to the checkpoint a resumed run starts
        from (or emptied for a run that starts over); untouched for a finished run."""
        cfg = self.cfg
        logger = MetricsLogger(str(self.output_dir), enabled=self.env.is_main and cfg.logging.jsonl,
                               tensorboard=cfg.logging.tensorboard and not finished,
                               progress_total=self.total_steps,
                               progress=cfg.logging.progress_bar and not finished,
                               initial=self.run.step,
                               purge_step=None if finished else self.run.step + 1 if resumed else 0)
        if finished:
            return logger
        if resumed:
            logger.truncate(lambda row: not self._logged_after_checkpoint(row))
            logger.write(f"resumed from step {self.run.step}")
        else:  # starting over: an earlier attempt's rows must not stay in the history
            logger.reset()
        return logger

    def _diverged_step_is_clear(self, step: Callable[[], dict[str, float]]) -> dict[str, float]:
        """``step()``; an error from weights that went NaN/inf (e.g. sampling from inf/nan
        probabilities) becomes one FloatingPointError naming the last good checkpoint."""
        try:
            return step()
        except RuntimeError as err:
            bad = ckpt.first_nonfinite(self.policy.state_dict())
            if bad is None:
                raise
            raise self._diverged(f"step {self.run.step + 1}: the weights are not finite "
                                 f"(first: {bad}), so the step failed ({err})",
                                 "lower optim.lr (now {lr})") from err

    def _diverged(self, what: str, fix: str) -> FloatingPointError:
        """The one error of a run whose weights went NaN/inf: ``what`` happened, the last
        good checkpoint, and ``fix`` (``{lr}`` is the learning rate)."""
        last = ckpt.read_latest_pointer(self.ckpt_dir)
        return FloatingPointError(
            f"{what}; the last good checkpoint is {self.ckpt_dir / last if last else 'none'}. "
            f"The run diverged: {fix.format(lr=f'{self.cfg.optim.lr:g}')}, then resume from it")

    def _final_summary(self, ev: dict[str, Any], summary: dict[str, Any],
                       write: Callable[[str], None]) -> None:
        """The summary's entries from the final evaluation ``ev`` (just run: its samples
        and per-prompt accuracies are this trainer's last)."""
        summary["eval_final"] = ev
        concentration = dependency_concentration(self.last_samples)
        if concentration:
            summary["dependency_on_perception_tokens"] = concentration
            write("visual dependency of the final samples: " + _fmt(concentration))
        warmed_up_per_prompt = self.run.headline.get("warmed_up_per_prompt") or []
        if warmed_up_per_prompt and len(warmed_up_per_prompt) == len(self.last_eval_per_prompt):
            # RL's own effect: the same held-out prompts after RL and after the
            # warm-up, a paired t-interval over prompts (eval sampling noise included).
            from reference_impl.stats import paired_interval
            gain = paired_interval(self.last_eval_per_prompt, warmed_up_per_prompt)
            summary["rl_gain"] = gain.as_dict()
            write(f"RL gain over the warm-up (held-out, paired over "
                  f"{gain.n} prompts, 95% CI): {gain}")

    def _periodic_eval(self, logger: MetricsLogger, should_stop: Callable[[], bool]) -> bool:
        """The evaluation every ``eval.every`` steps; False if a stop signal cut it short
        (``eval_pending`` then stays set, is saved, and a resume runs it first: the
        evaluation depends on the weights and the step only, so the row is the same)."""
        ev, took = self._timed_evaluate(should_stop=should_stop)
        if ev is None:
            return False
        logger.log(self.run.step, {**ev, **took}, kind="eval")
        logger.write(f"eval @ step {self.run.step}: {_fmt(ev)}")
        self.run.eval_pending = False
        return True

    def _timed_evaluate(self, **kwargs: Any
                        ) -> tuple[dict[str, float] | None, dict[str, float]]:
        """:meth:`evaluate` and its wall time as ``{"timing_s/eval": seconds}`` (kept out
        of the evaluation itself: the summary and the printed line stay as they were)."""
        timing: dict[str, float] = {}
        with marked_timer("eval", timing, device=self.device):
            ev = self.evaluate(**kwargs)
        return ev, timing_metrics(timing)

    def _timed_save(self, logger: MetricsLogger) -> None:
        """:meth:`save`, then its wall time as a ``kind="timing"`` row of this step. The row
        follows the checkpoint (the step's train and evaluation rows precede it, so that
        a resume from it keeps them), hence a row of its own."""
        timing: dict[str, float] = {}
        with marked_timer("save", timing, device=self.device):
            self.save()
        logger.log(self.run.step, timing_metrics(timing), kind="timing")

    def _finish_again(self, logger: MetricsLogger, summary: dict[str, Any],
                      final_row: dict[str, Any] | None) -> dict[str, Any]:
        """A resumed run that had already finished: append nothing to the logs; give the
        summary of the finished run. When its ``summary.json`` and report files are all
        there (the usual case) they are kept and nothing is run again; when a kill left
        one missing, the final evaluation runs again for them (same weights, same seed:
        the same samples and per-prompt accuracies, so the same RL gain)."""
        summary["steps"] = self.run.step
        logged = None if final_row is None else {
            k: v for k, v in final_row.items()
            if k not in ("step", "kind", "phase") and not is_timing_key(k)}
        kept = self._finished_summary(logged) if self.env.is_main else None
        if not any_process(kept is None, self.device):
            logger.close()
            return {**kept, "resumed_from": summary["resumed_from"], "stopped_by_signal": False,
                    "steps": self.run.step}
        with GracefulExit():
            cfg = self.cfg
            ev = self.evaluate(keep_samples=cfg.logging.html_samples if cfg.logging.html_report
                               else 0)
            self._final_summary(ev, summary, logger.write)
            if logged is not None:  # the logged values, as they were
                summary["eval_final"] = logged
            logger.close()
            if self.env.is_main:
                self._report(logger.path)
        return summary

    def _finished_summary(self, logged: dict[str, Any] | None) -> dict[str, Any] | None:
        """The ``summary.json`` a finished run wrote, if it is there with its final
        evaluation equal to the logged one and the report files it promises exist."""
        if logged is None:
            return None
        import json

        try:
            kept = json.loads((self.output_dir / "summary.json").read_text())
        except (OSError, ValueError):
            return None
        files = [("learning_curves.png", self.cfg.logging.plot),
                 ("samples.html", self.cfg.logging.html_report)]
        if not isinstance(kept, dict) or kept.get("steps") != self.run.step \
                or kept.get("eval_final") != logged \
                or any(wanted and not (self.output_dir / name).exists() for name, wanted in files):
            return None
        return kept

    def _report(self, metrics_path: str) -> None:
        report.write_report(self.output_dir, metrics_path, self.last_samples,
                            plot=self.cfg.logging.plot, html=self.cfg.logging.html_report,
                            title=f"{self.cfg.algo.name}: held-out samples at step "
                                  f"{self.run.step}")

    # ------------------------------------------------------------------ helpers

    def _autocast(self):
        if self.device.type == "cuda" and resolve_dtype(self.cfg, self.device) == torch.bfloat16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _first_forward(self) -> None:
        """One forward on a held-out example (no RNG drawn), for the strategy's
        ``prepare`` (FSDP2 initialises on the first forward through the root)."""
        example = self.heldout[0]
        batch = teacher_forced_batch(self.processor, [example.prompt], [example.image],
                                     ["ok"], device=self.device)
        with self._autocast():
            self.model(**batch.model_inputs(), logits_to_keep=1, use_cache=False)



@dataclasses.dataclass(frozen=True)
class _End:
    """What a phase of :meth:`Trainer.fit` returns to end the run there: ``message`` is
    the stop signal's line, or None when the run is complete (a warm-up-only run)."""

    message: str | None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in metrics.items())


__all__ = ["Trainer"]
