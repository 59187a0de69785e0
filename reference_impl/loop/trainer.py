"""The PGPO reference trainer: rollouts, rewards, group advantages, dynamic sampling, the
blind pass and PGPO reshaping, and DAPO's clipped loss with PPO mini-batch updates.

One RL step (Ye et al., 2026, arXiv 2604.01840, Sec. 3-5; DAPO, Yu et al., 2025)::

    sample prompts -> G responses each (temperature / top-p)         rollout.py
    rewards 0.9 * accuracy + 0.1 * format                            rewards.py
    A_i = group-normalised reward; drop all-equal groups             pgpo_core.group_advantages
      (more rollout rounds until the batch is full)
    old log-probs + blind pass -> S_t -> A~_{i,t} = A_i * w~_t        pgpo_torch.compute_pgpo_advantages,
                                                                     pgpo_core (Eqs. 1, 4-8)
    for each mini-batch: clipped surrogate (0.2 / 0.28, token-mean)  pgpo_core.policy_loss
      AdamW step with gradient clipping; NaN/inf steps are skipped

Every equation lives in ``pgpo_core``; this module only moves tensors between the model
and it. The tiny default (no ``model.path``) gets a short supervised warm-up on the
synthetic task first, so that RL starts with some reward signal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import pgpo_core
from reference_impl.runlog import checkpoint as ckpt
from reference_impl.loop import preflight
from reference_impl.rollout import engines
from reference_impl.config import Config
from reference_impl.policy.distributed import DistEnv, all_reduce, any_process, parallel_strategy
from reference_impl.runlog.metrics import MetricsLogger, read_metrics
from reference_impl.loop.timing import (Timer, is_timing_key, marked_timer, no_timer, phase_timer,
                                   timing_metrics)
from reference_impl.data.rewards import verifiable_rewards
from reference_impl.loop.warmup import supervised_warmup, warmup_optimizer
from reference_impl.rollout.batch import (RolloutBatch, concat_batches, pad_token_id,
                                    response_logprobs, teacher_forced_batch)

# Size of the built-in tiny Qwen2.5-VL (pgpo_torch.tiny), chosen so that the default run
# (warm-up + RL + evaluations) finishes in minutes on 2 CPU cores and still learns.
TINY_MODEL = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  intermediate_size=128, vision_hidden_size=64, vision_depth=2)


def resolve_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """The compute dtype: ``auto`` is bfloat16 on CUDA, float32 on CPU."""
    if cfg.model.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.model.dtype]


def parameter_dtype(cfg: Config) -> torch.dtype:
    """The dtype the trained weights (and AdamW's state) are kept in.

    ``auto`` keeps float32 master weights and computes in bfloat16 on CUDA (autocast,
    or FSDP2's mixed precision), since AdamW updates at the paper's lr of 1e-6 are
    below bfloat16's resolution; ``bfloat16`` stores the weights in bfloat16 (less
    memory, e.g. with LoRA, whose adapters peft keeps in float32)."""
    return torch.bfloat16 if cfg.model.dtype == "bfloat16" else torch.float32


def model_setup(cfg: Config, world_size: int) -> dict[str, Any]:
    """What a checkpoint's weights and optimiser state depend on, recorded in its
    manifest so that a resume can check it before the model is built: the model (the
    built-in tiny one's sizes, or the architecture in ``model.path``'s config.json),
    LoRA, the frozen vision tower and the process count."""
    if cfg.model.path is None:
        model: Any = {"tiny": dict(TINY_MODEL)}
    else:
        import json

        try:
            config = json.loads((Path(cfg.model.path) / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        model = {k: config.get(k, text.get(k)) for k in
                 ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")}
    lora = cfg.lora
    return {"model": model,
            "lora": {"r": lora.r, "target_modules": sorted(lora.target_modules)}
            if lora.enabled else None,
            "freeze_vision_tower": cfg.model.freeze_vision_tower,
            "processes": world_size}


def build_policy(cfg: Config, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """``(model, processor)``: the tiny Qwen2.5-VL built from a config, or a local checkpoint."""
    dtype = parameter_dtype(cfg)
    if cfg.model.path is None:
        from pgpo_torch.tiny import build_tiny_model, build_tiny_processor

        processor = build_tiny_processor(min_pixels=cfg.data.min_pixels,
                                         max_pixels=cfg.data.max_pixels)
        model = build_tiny_model(processor, seed=cfg.train.seed, dtype=dtype, **TINY_MODEL)
        if cfg.algo.blind.mode != "mask":  # the masked blind pass needs eager attention
            model.set_attn_implementation(
                "sdpa" if cfg.model.attn_implementation == "auto" else cfg.model.attn_implementation)
    else:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        processor = AutoProcessor.from_pretrained(
            cfg.model.path, local_files_only=True, min_pixels=cfg.data.min_pixels,
            max_pixels=cfg.data.max_pixels)
        attn = cfg.model.attn_implementation
        if attn == "auto":
            attn = "sdpa"
            if device.type == "cuda":
                import importlib.util
                if importlib.util.find_spec("flash_attn") is not None:
                    attn = "flash_attention_2"
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            cfg.model.path, local_files_only=True, dtype=dtype, attn_implementation=attn)
    model.to(device)
    if cfg.model.freeze_vision_tower:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if cfg.model.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig as PeftLoraConfig, get_peft_model

        model = get_peft_model(model, PeftLoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
    model.train()
    return model, processor


def build_datasets(cfg: Config):
    """``(train, heldout)`` samplers of :class:`reference_impl.data.sources.Example`."""
    from reference_impl.data import sources as data_mod

    d = cfg.data
    if d.source == "synthetic" and d.synthetic_task == "chain":
        from reference_impl.data.chains import ChainCountTask

        train = ChainCountTask(cfg.train.seed, facts=d.chain_facts, max_count=d.chain_max_count,
                               distractors=d.chain_distractors,
                               warmup_noise=d.chain_warmup_noise, image_size=d.image_size)
        return train, train.heldout(d.eval_size)
    if d.source == "synthetic" and d.synthetic_task in ("spatial", "bars"):
        from reference_impl.data.visual_tasks import BarDifferenceTask, GridPlaceTask

        cls = GridPlaceTask if d.synthetic_task == "spatial" else BarDifferenceTask
        train = cls(cfg.train.seed, warmup_noise=d.chain_warmup_noise, image_size=d.image_size)
        return train, train.heldout(d.eval_size)
    if d.source == "synthetic":
        train = data_mod.SyntheticVisualTask(cfg.train.seed, image_size=d.image_size)
        return train, train.heldout(d.eval_size)
    common = dict(question_keys=(cfg.data.prompt_column,) + data_mod.QUESTION_KEYS,
                  answer_keys=(cfg.data.answer_column,) + data_mod.ANSWER_KEYS,
                  image_keys=(cfg.data.image_column,) + data_mod.IMAGE_KEYS,
                  reference_keys=(() if d.reference_column is None else (d.reference_column,))
                  + data_mod.REFERENCE_KEYS)
    train = data_mod.LocalFileDataset(cfg.data.source, seed=cfg.train.seed,
                                      shuffle=cfg.data.shuffle, **common)
    if cfg.data.eval_source is not None:
        heldout = data_mod.LocalFileDataset(cfg.data.eval_source, seed=cfg.train.seed,
                                            shuffle=False, limit=cfg.data.eval_size, **common)
    else:  # hold out the last eval_size rows; train on the rest
        heldout = _subset(train, range(max(len(train) - cfg.data.eval_size, 0), len(train)))
        train = _subset(train, range(0, max(len(train) - cfg.data.eval_size, 0)),
                        seed=cfg.train.seed, shuffle=cfg.data.shuffle)
    return train, heldout


def _subset(base, indices, *, seed: int = 0, shuffle: bool = False):
    """A slice of ``base`` as a resumable :class:`reference_impl.data.sources.ExampleSampler`."""
    from reference_impl.data.sources import ExampleSampler

    class Subset(ExampleSampler):
        def __init__(self) -> None:
            self._indices = list(indices)
            self._seed, self._shuffle = seed, shuffle
            self.skipped = getattr(base, "skipped", {})

        def __len__(self) -> int:
            return len(self._indices)

        def __getitem__(self, i):
            return base[self._indices[int(i)]]

    return Subset()


def build_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, warmup: int,
                       total: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``transformers.get_scheduler``: linear warm-up over ``warmup`` optimiser steps (from
    0), then ``"constant"``, ``"linear"`` decay to 0 or half-period ``"cosine"`` decay to 0
    at ``total`` optimiser steps. The trainer steps it once per *planned* update (see
    ``_scheduler_step``), so the learning rate is a function of the RL step."""
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(schedule, schedule)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


@dataclasses.dataclass(frozen=True)
class Collected:
    """What :meth:`Trainer.collect` kept from its rollout rounds."""

    batch: RolloutBatch | None
    """The kept groups' responses (None if no group was kept)."""
    advantages: torch.Tensor | None
    """``(N,)`` group-normalised advantages of the kept responses."""
    rewards: torch.Tensor | None
    """``(N,)`` rewards of the kept responses."""
    metrics: dict[str, float]
    """Rollout metrics over all sampled responses, kept or not."""


@dataclasses.dataclass(frozen=True)
class Scored:
    """What :meth:`Trainer.score` computed for a kept batch; ``(N, T)`` tensors."""

    old_logprobs: torch.Tensor
    """The rollout policy's response log-probs (``logp_old``)."""
    token_advantages: torch.Tensor
    """The advantages the loss takes (PGPO: ``A~ = A * w~``; else ``A`` broadcast)."""
    dependency: torch.Tensor | None = None
    """PGPO's token visual dependency ``S`` (None without token reweighting)."""
    weights: torch.Tensor | None = None
    """PGPO's token weights ``w~`` (None without token reweighting)."""


class Trainer:
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
        self.engine = engines.build_trainer_engine(self, backend)
        self._engine_weights = engines.weights_version(self.model)
        if self.total_steps < 1 and cfg.train.total_steps is None:
            raise ValueError("train.epochs: gives 0 RL steps for this data")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                           eps=cfg.optim.adam_eps,
                                           weight_decay=cfg.optim.weight_decay)
        updates = self.total_steps * self.minibatches_per_step * cfg.optim.ppo_epochs
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.optim.lr_schedule,
                                            warmup=cfg.optim.lr_warmup_steps, total=updates)
        self.step = 0
        self.consecutive_nonfinite = 0
        self.warmup_done = cfg.model.sft_warmup_steps == 0
        self.warmup_step = 0  # supervised warm-up steps done (checkpointed with its optimiser)
        self.eval_pending = False  # this step's periodic evaluation was stopped: redo it
        # The evaluations before and after the warm-up (and the latter's per-prompt
        # accuracies, for the RL gain), checkpointed so that a resumed run's summary
        # holds what an uninterrupted run's does.
        self.headline: dict[str, Any] = {}
        self.warmup_optimizer = None if self.warmup_done else warmup_optimizer(
            self.model, lr=cfg.model.sft_warmup_lr, vision_lr=cfg.model.sft_warmup_vision_lr)
        self.output_dir = Path(cfg.train.output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"
        self.last_samples: list[dict[str, Any]] = []
        self.last_eval_per_prompt: list[float] = []

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

    @property
    def hf_model(self) -> Any:
        """The ``Qwen2_5_VLForConditionalGeneration`` itself (LoRA layers included), for
        generation and the PGPO adapter, which calls ``model.model`` / ``model.lm_head``."""
        policy = self.policy
        return policy.get_base_model() if hasattr(policy, "get_base_model") else policy

    # ------------------------------------------------------------------ data

    def _next_examples(self, n: int):
        """``n`` examples for this process: every rank draws ``n * world`` and keeps its slice,
        so the data position is the same on every rank."""
        drawn = self.train_data.sample(n * self.env.world_size)
        return drawn[self.env.rank * n:(self.env.rank + 1) * n]

    def _rollout(self, examples, *, group_size: int, temperature: float, top_p: float,
                 max_new_tokens: int | None = None) -> RolloutBatch:
        if self.engine.needs_sync:
            # Weight sync: the engine takes the policy's weights whenever they changed in
            # place since the last sync (optimiser steps, warm-up, a resumed checkpoint).
            version = engines.weights_version(self.model)
            if version != self._engine_weights:
                self.engine.sync_weights(self.model)
                self._engine_weights = version
        return self.engine.generate(
            [e.prompt for e in examples], [e.image for e in examples],
            [e.answer for e in examples], group_size=group_size,
            max_new_tokens=max_new_tokens or self.cfg.rollout.max_response_length,
            temperature=temperature, top_p=top_p)

    def _rewards(self, batch: RolloutBatch):
        parts = verifiable_rewards(batch.texts, batch.answers,
                                   accuracy_weight=self.cfg.reward.accuracy_weight,
                                   format_weight=self.cfg.reward.format_weight)
        as_t = lambda xs: torch.tensor(xs, dtype=torch.float32, device=self.device)  # noqa: E731
        return (as_t([p.reward for p in parts]), as_t([p.accuracy for p in parts]),
                as_t([p.format for p in parts]))

    # ------------------------------------------------------------------ warm-up

    def warmup(self, logger: MetricsLogger, should_stop: Callable[[], bool]) -> bool:
        """Supervised warm-up (:mod:`reference_impl.loop.warmup`) before RL, from step
        ``warmup_step + 1`` (a resumed warm-up goes on where it stopped); False if
        ``should_stop`` (a collective) ended it."""
        steps = self.cfg.model.sft_warmup_steps
        if self.warmup_done or steps == 0:
            return True
        r = self.cfg.rollout

        def on_step(i: int, loss: float) -> None:
            self.warmup_step = i
            logger.log(0, {"sft_step": i, "sft_loss": loss}, kind="sft")
            logger.progress(0, sft=f"{i}/{steps}", loss=loss)

        done = supervised_warmup(
            self.model, self.processor, self._next_examples, optimizer=self.warmup_optimizer,
            steps=steps, start=self.warmup_step,
            batch_size=r.prompts_per_step * r.samples_per_prompt,
            grad_clip=self.cfg.optim.grad_clip, device=self.device,
            world_size=self.env.world_size, autocast=self._autocast,
            should_stop=should_stop, on_step=on_step)
        self.warmup_done = done
        if done:
            self.warmup_optimizer = None  # RL has its own; the warm-up's state is not needed
        return done

    # ------------------------------------------------------------------ RL step

    def collect(self, timer: Timer = no_timer) -> Collected:
        """Rollout rounds until ``prompts_per_step`` informative groups are kept (dynamic
        sampling) or the round budget is spent. Returns the kept batch (None if nothing
        is kept), its per-response advantages and rewards, and the rollout metrics (over
        all samples). ``timer`` times the ``rollout``, ``reward`` and ``advantages``
        phases of every round."""
        r, a = self.cfg.rollout, self.cfg.algo
        kept: list[RolloutBatch] = []
        kept_cols: dict[str, list[torch.Tensor]] = {"advantages": [], "rewards": []}
        n_kept = 0
        stats = {"reward": [], "accuracy": [], "format": [], "length": [], "truncated": []}
        rounds = 0
        groups_seen = 0
        informative = 0
        skipped_long = 0
        while True:
            rounds += 1
            examples = self._next_examples(r.prompts_per_step)
            with timer("rollout"):
                batch = self._rollout(examples, group_size=r.samples_per_prompt,
                                      temperature=r.temperature, top_p=r.top_p)
            with timer("reward"):
                reward, accuracy, fmt = self._rewards(batch)
            lengths = batch.response_mask.sum(-1).float()
            ended = (batch.responses == _eos_id(self.processor)) & batch.response_mask
            stats["reward"].append(reward)
            stats["accuracy"].append(accuracy)
            stats["format"].append(fmt)
            stats["length"].append(lengths)
            stats["truncated"].append((~ended.any(-1)).float())
            with timer("advantages"):
                ga = pgpo_core.group_advantages(reward, batch.group_ids)
            groups_seen += r.prompts_per_step
            keep = ~ga.all_equal if self.dynamic_sampling else torch.ones_like(ga.all_equal)
            # Prompts longer than rollout.max_prompt_length (image tokens included) are
            # skipped and counted, never trained on.
            too_long = batch.attention_mask[:, :batch.prompt_length].sum(-1) > r.max_prompt_length
            keep = keep & ~too_long
            skipped_long += int(too_long.sum().item()) // r.samples_per_prompt
            group_keep = torch.zeros(r.prompts_per_step, dtype=torch.bool, device=self.device)
            group_keep[batch.group_ids[keep]] = True
            informative += int((~ga.all_equal).sum().item()) // r.samples_per_prompt
            # Take whole groups, no more than the batch still needs.
            room = r.prompts_per_step - n_kept
            chosen = torch.nonzero(group_keep).flatten()[:room]
            if len(chosen):
                rows = torch.nonzero(torch.isin(batch.group_ids, chosen)).flatten()
                kept.append(batch.select(rows))
                kept_cols["advantages"].append(ga.advantages[rows])
                kept_cols["rewards"].append(reward[rows])
                n_kept += len(chosen)
            need_more = self.dynamic_sampling and n_kept < r.prompts_per_step
            if not any_process(need_more and rounds < a.max_sampling_rounds, self.device):
                break
        cat = {k: torch.cat(v) for k, v in stats.items()}
        metrics = {
            "reward": cat["reward"].mean().item(), "accuracy": cat["accuracy"].mean().item(),
            "format": cat["format"].mean().item(),
            "response_length": cat["length"].mean().item(),
            "response_length_max": cat["length"].max().item(),
            "truncated_frac": cat["truncated"].mean().item(),
            "sampling_rounds": float(rounds),
            "kept_groups": float(n_kept),
            "informative_groups_frac": informative / groups_seen,
            "prompts_too_long": float(skipped_long),
        }
        if not kept:
            return Collected(None, None, None, metrics)
        return Collected(concat_batches(kept, pad_token_id=self.pad_id),
                         torch.cat(kept_cols["advantages"]), torch.cat(kept_cols["rewards"]),
                         metrics)

    @torch.no_grad()
    def score(self, batch: RolloutBatch, advantages: torch.Tensor,
              timer: Timer = no_timer) -> Scored:
        """Old log-probs, token advantages ``(N, T)`` and (PGPO) the token dependency
        with its weights (for the step's diagnostics, so they are not computed again).
        ``timer`` times the ``old_logprobs``, ``blind_pass`` (the blind forward and
        ``S``) and ``advantages`` phases of every micro-batch.

        With PGPO, :func:`pgpo_torch.compute_pgpo_advantages` runs the visual pass (which
        gives the old log-probs) and the blind pass on the rollout policy, computes ``S``
        (Eq. 1, exact and chunked from hidden states, or its k1/k2/k3 estimate) and
        ``A~ = A * w~`` (Eqs. 4-8) with pgpo_core. Without PGPO only the old log-probs
        are computed and ``A`` is broadcast over the response tokens."""
        mb = self.cfg.optim.micro_batch_size
        if self.cfg.algo.algorithm.advantages == "vppo":
            return self._vppo_score(batch, advantages, timer)
        old, deps, weights, token_adv = [], [], [], []
        for start in range(0, batch.size, mb):
            rows = list(range(start, min(start + mb, batch.size)))
            sub = batch.select(rows)
            with self._autocast():
                if not self.reshape:
                    with timer("old_logprobs"):
                        logp, _ = response_logprobs(self.model, sub,
                                                    temperature=self.pgpo.temperature)
                    old.append(logp)
                    with timer("advantages"):
                        token_adv.append(advantages[rows][:, None] * sub.response_mask)
                    continue
                result = self._pgpo_advantages(sub, advantages[rows], self.pgpo, timer=timer)
            old.append(result.old_logprobs.float())
            deps.append(result.dependency)
            weights.append(result.weights)
            token_adv.append(result.token_advantages)
        return Scored(torch.cat(old), torch.cat(token_adv),
                      torch.cat(deps) if deps else None, torch.cat(weights) if deps else None)

    def _pgpo_advantages(self, batch: RolloutBatch, advantages: torch.Tensor, config,
                         timer: Timer | None = None):
        """:func:`pgpo_torch.compute_pgpo_advantages` on one micro-batch (``timer``: see
        :meth:`score`)."""
        from pgpo_torch import compute_pgpo_advantages

        a = self.cfg.algo
        with self.strategy.unsharded():
            return compute_pgpo_advantages(
                self.hf_model, batch.model_inputs(), advantages=advantages,
                response_length=batch.response_mask.shape[1], config=config,
                blind=a.blind, response_mask=batch.response_mask, return_logprobs=True,
                with_diagnostics=False,  # rl_step takes them over the whole batch
                timer=timer)

    def _vppo_score(self, batch: RolloutBatch, advantages: torch.Tensor,
                    timer: Timer = no_timer) -> Scored:
        """VPPO's :meth:`score`: old log-probs and the dependency ``S`` (``algo.pgpo``'s
        estimator against ``algo.blind``'s pass: k3 clipped at 10 against blackened
        patches by the record's defaults) micro-batch by micro-batch, then
        :func:`pgpo_core.vppo_advantages` once over the whole rollout batch (its
        trajectory factors need the batch's min, max and mean). Filtered tokens get
        advantage 0 and keep their place in the token-mean's divisor (the loss takes the
        full response mask). ``timer``: as in :meth:`score`."""
        from pgpo_torch import batch_visual_dependency

        mb, old, deps = self.cfg.optim.micro_batch_size, [], []
        for start in range(0, batch.size, mb):
            sub = batch.select(list(range(start, min(start + mb, batch.size))))
            with self._autocast(), self.strategy.unsharded():
                dep, logp = batch_visual_dependency(
                    self.hf_model, sub.model_inputs(), sub.response_mask,
                    response_length=sub.response_mask.shape[1], config=self.pgpo,
                    blind=self.cfg.algo.blind, return_logprobs=True, timer=timer)
            old.append(logp.float())
            deps.append(dep.float())
        vppo = self.cfg.algo.algorithm.vppo
        with timer("advantages"):
            shaped = pgpo_core.vppo_advantages(advantages, torch.cat(deps),
                                               batch.response_mask, **vppo.advantage_kwargs())
        return Scored(torch.cat(old), shaped.advantages, None, None)

    def update(self, batch: RolloutBatch, old_logp: torch.Tensor, token_adv: torch.Tensor
               ) -> dict[str, float]:
        """PPO mini-batch updates over the kept groups; returns averaged loss metrics."""
        o = self.cfg.optim
        mismatch: dict[str, float] = {}
        if batch.rollout_logprobs is not None:  # the engine sampled with its own weights
            mismatch = engines.rollout_mismatch_metrics(old_logp, batch.rollout_logprobs,
                                                        batch.response_mask)
            if self.cfg.rollout.tis_cap is not None:
                tis = engines.truncated_is_weights(old_logp, batch.rollout_logprobs,
                                                   batch.response_mask,
                                                   cap=self.cfg.rollout.tis_cap)
                token_adv = token_adv * tis
                mismatch["tis_weight_mean"] = float(tis[batch.response_mask].mean())
        groups = torch.unique(batch.group_ids)
        n_local = len(groups)
        n_global_min = int(all_reduce(torch.tensor([n_local], device=self.device), "min").item())
        n_chunks = max(min(self.minibatches_per_step, n_global_min), 1)
        sums: dict[str, float] = {}
        count = 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        for _ in range(o.ppo_epochs):
            order = groups[torch.randperm(n_local, device="cpu").to(groups.device)]
            for chunk in torch.tensor_split(order, n_chunks):
                rows = torch.nonzero(torch.isin(batch.group_ids, chunk)).flatten()
                metrics = self._minibatch_step(batch, rows, old_logp, token_adv, params)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
        return {**{k: v / max(count, 1) for k, v in sums.items()}, **mismatch}

    def _minibatch_step(self, batch, rows, old_logp, token_adv, params) -> dict[str, float]:
        o, agg = self.cfg.optim, self.pgpo.aggregation
        mask = batch.response_mask[rows]
        # Normaliser of the aggregation over the whole mini-batch on every rank; the
        # gradient averaging of DDP/FSDP divides by world_size, so multiply it back.
        local = mask.sum() if agg == "token-mean" else torch.tensor(len(rows))
        normalizer = float(all_reduce(local.float().reshape(1).to(self.device)).item())
        normalizer = max(normalizer / self.env.world_size, 1e-8)
        n_micro = max(math.ceil(len(rows) / o.micro_batch_size), 1)
        n_micro_all = int(all_reduce(torch.tensor([n_micro], device=self.device), "max").item())
        self.optimizer.zero_grad(set_to_none=True)
        nonfinite = False
        acc: dict[str, float] = {}
        ent_sum, ent_count = 0.0, 0.0
        for m in range(n_micro_all):
            dummy = m >= n_micro  # keep collectives in step with ranks that have more rows
            mrows = rows[(0 if dummy else m) * o.micro_batch_size:
                         ((0 if dummy else m) + 1) * o.micro_batch_size]
            sub = batch.select(mrows)
            sync = m == n_micro_all - 1
            with self.strategy.no_sync(not sync), self._autocast():
                logp, entropy = response_logprobs(self.model, sub,
                                                  temperature=self.pgpo.temperature,
                                                  with_entropy=True)
            sub_mask = sub.response_mask
            if not bool(torch.isfinite(logp[sub_mask]).all()):
                nonfinite = True
                loss = logp.sum() * 0.0
                metrics = {}
            else:
                loss, metrics = pgpo_core.policy_loss(
                    logp, old_logp[mrows], token_adv[mrows], sub_mask,
                    **self.pgpo.loss_kwargs(), normalizer=normalizer)
                if not bool(torch.isfinite(loss)):
                    nonfinite = True
                    loss = logp.sum() * 0.0
            if dummy:
                loss = loss * 0.0
            with self.strategy.no_sync(not sync):
                loss.backward()
            if not dummy:
                acc["loss"] = acc.get("loss", 0.0) + float(loss.detach())
                for k in ("clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl"):
                    if k in metrics:
                        acc[k] = acc.get(k, 0.0) + float(metrics[k].detach()) * float(sub_mask.sum())
                ent_sum += float(entropy[sub_mask].sum())
                ent_count += float(sub_mask.sum())
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, o.grad_clip if o.grad_clip is not None else float("inf"))
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        nonfinite = nonfinite or not bool(torch.isfinite(grad_norm))
        if any_process(nonfinite, self.device):
            self.optimizer.zero_grad(set_to_none=True)
            self.consecutive_nonfinite += 1
            skipped = 1.0
            if self.consecutive_nonfinite > o.max_nonfinite_steps:
                raise FloatingPointError(
                    f"optim.max_nonfinite_steps: {self.consecutive_nonfinite} consecutive "
                    "updates had a NaN/inf loss or gradient; stopping")
        else:
            self.optimizer.step()
            self.consecutive_nonfinite = 0
            skipped = 0.0
        self._scheduler_step()
        self._updates_this_step += 1
        tokens = max(ent_count, 1.0)
        out = {"loss": acc.get("loss", 0.0), "entropy": ent_sum / tokens,
               "grad_norm": float(grad_norm), "nonfinite_skipped": skipped,
               "lr": self.optimizer.param_groups[0]["lr"]}
        for k in ("clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl"):
            out[k] = acc.get(k, 0.0) / tokens
        return out

    def rl_step(self) -> dict[str, float]:
        """One RL step: collect, score, update. Returns metrics averaged over processes,
        with the wall time of each phase as ``timing_s/<phase>`` (:mod:`.timing`)."""
        timing: dict[str, float] = {}
        timer = phase_timer(timing, self.device)
        with timer("step"):
            metrics = self._rl_step(timer)
        return self._mean_over_ranks({**metrics, **timing_metrics(timing)})

    def _rl_step(self, timer: Timer) -> dict[str, float]:
        self._updates_this_step = 0
        collected = self.collect(timer)
        batch, metrics = collected.batch, collected.metrics
        if not any_process(batch is None, self.device):
            scored = self.score(batch, collected.advantages, timer)
            with timer("update"):
                metrics.update(self.update(batch, scored.old_logprobs, scored.token_advantages))
            metrics["updated"] = 1.0
            if scored.dependency is not None:
                with timer("advantages"):
                    diag = pgpo_core.weight_diagnostics(
                        scored.dependency, batch.response_mask, weights=scored.weights,
                        **self.pgpo.weight_kwargs())
                    metrics.update({k: float(v) for k, v in diag.items()})
        else:
            # Some rank has no informative group after all rounds: nobody updates, so
            # that every rank runs the same collectives.
            metrics["updated"] = 0.0
        # Keep the schedule a function of the RL step: count the planned updates that
        # dynamic sampling left out (fewer groups than mini-batches) as taken.
        for _ in range(self.minibatches_per_step * self.cfg.optim.ppo_epochs
                       - self._updates_this_step):
            self._scheduler_step()
        return metrics

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, *, keep_samples: int = 0,
                 should_stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
        """avg@k accuracy (and reward, format, and where the data knows the image's facts
        the perception accuracy) on the held-out split, sampled at the evaluation
        temperature. Uses its own RNG stream: training is unaffected.

        The per-prompt accuracies (held-out order, gathered over processes) are kept in
        :attr:`last_eval_per_prompt`, so that two evaluations can be compared prompt by
        prompt (a paired interval, :func:`reference_impl.experiments.stats.paired_interval`).

        ``should_stop`` (a collective: every rank calls it equally often) is asked before
        each batch; when it turns true the evaluation is abandoned and None returned, so a
        stop signal never waits for a whole evaluation."""
        from reference_impl.data.chains import perception_accuracy

        e = self.cfg.eval
        examples = list(self.heldout)
        if e.num_prompts is not None:
            examples = examples[:e.num_prompts]
        indices = list(range(len(examples)))[self.env.rank::self.env.world_size]
        mine = [examples[i] for i in indices]
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)
        per_prompt: list[tuple[int, float]] = []
        samples: list[dict[str, Any]] = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.train.seed * 1_000_003 + self.step * 7919 + self.env.rank)
            bs = max(self.cfg.optim.micro_batch_size // e.k, 1) * 4
            # The same number of batches on every rank (the stop check and FSDP's generate
            # are collectives): the largest rank's share.
            per_rank = -(-len(examples) // self.env.world_size)
            for i in range(0, max(per_rank, 1), bs):
                if should_stop is not None and should_stop():
                    return None
                chunk = mine[i:i + bs]
                if not chunk and not self.strategy.collective_generate:
                    continue
                chunk = chunk or examples[:1]  # every rank must take part in generate
                batch = self._rollout(chunk, group_size=e.k, temperature=e.temperature,
                                      top_p=e.top_p)
                reward, accuracy, fmt = self._rewards(batch)
                if i < len(mine):
                    seen = [perception_accuracy(text, chunk[j // e.k].facts)
                            for j, text in enumerate(batch.texts) if chunk[j // e.k].facts]
                    sums += torch.tensor([accuracy.sum().item(), reward.sum().item(),
                                          fmt.sum().item(), float(len(accuracy)), sum(seen)],
                                         dtype=torch.float64, device=self.device)
                    per_prompt += [(indices[i + j], float(a))
                                   for j, a in enumerate(accuracy.view(-1, e.k).mean(-1))]
                if len(samples) < keep_samples:
                    samples.extend(self._samples(batch, reward, chunk, e.k,
                                                 keep_samples - len(samples)))
        sums = all_reduce(sums)
        if self.env.distributed:
            import torch.distributed as dist
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, per_prompt)
            per_prompt = [p for part in gathered for p in part]
        self.last_eval_per_prompt = [a for _, a in sorted(per_prompt)]
        n = max(sums[3].item(), 1.0)
        self.last_samples = samples
        out = {f"accuracy_avg@{e.k}": sums[0].item() / n, "reward": sums[1].item() / n,
               "format": sums[2].item() / n, "responses": n}
        if examples and examples[0].facts:
            out["perception_accuracy"] = sums[4].item() / n
        return out

    def _samples(self, batch: RolloutBatch, reward, examples, k: int, limit: int):
        """Responses for the HTML report, with each token's visual dependency (Eq. 1)."""
        rows = list(range(0, batch.size, k))[:limit]
        sub = batch.select(rows)
        with self._autocast():
            dep = self._pgpo_advantages(
                sub, torch.zeros(sub.size, device=self.device),
                self.pgpo.replace(estimator="exact")).dependency
        from reference_impl.data.chains import perception_token_mask

        tok = self.processor.tokenizer
        out = []
        for j, r in enumerate(rows):
            m = sub.response_mask[j]
            ids = sub.responses[j][m].tolist()
            tokens = [tok.decode([i]) for i in ids]
            facts = examples[r // k].facts
            out.append({"question": examples[r // k].question, "answer": batch.answers[r],
                        "reward": float(reward[r]), "image": examples[r // k].image,
                        "tokens": tokens, "dependency": dep[j][m].tolist(),
                        "perception": perception_token_mask(tokens, list(facts)) if facts else None})
        return out

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs: the model and optimiser as the parallel strategy
        gives them (full on the main process, or each rank's shards), RNG from every rank."""
        # During the warm-up the checkpoint holds the warm-up's optimiser (RL's has done
        # nothing yet), so that a stopped warm-up resumes exactly.
        warming = not self.warmup_done
        weights = self.strategy.checkpoint_state(
            self.warmup_optimizer if warming else self.optimizer)
        rng = ckpt.capture_rng_state()
        if self.env.distributed:
            import torch.distributed as dist
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, rng)
            rng = {"per_rank": gathered}
        else:
            rng = {"per_rank": [rng]}
        return dict(**weights,
                    scheduler_state=self.scheduler.state_dict(), rng_state=rng,
                    data_state=self.train_data.state_dict(),
                    extra={"step": self.step, "consecutive_nonfinite": self.consecutive_nonfinite,
                           "warmup_done": self.warmup_done, "warmup_step": self.warmup_step,
                           "eval_pending": self.eval_pending, "headline": self.headline,
                           "world_size": self.env.world_size,
                           "algo": self.cfg.algo.name})

    def save(self) -> Path | None:
        """Checkpoint the current step (all ranks call it). Weights that are NaN/inf, or
        so large that their square overflows, are refused: they would replace the last
        good checkpoint as ``latest``."""
        state = self.state()
        if "sharded_state" in state:  # every rank checks its own shards
            bad = ckpt.first_nonfinite({k: v.to_local() if hasattr(v, "to_local") else v
                                        for k, v in state["sharded_state"]["model"].items()})
        else:
            bad = ckpt.first_nonfinite(state["model_state"]) if self.env.is_main else None
        if any_process(bad is not None, self.device):
            last = ckpt.read_latest_pointer(self.ckpt_dir)
            raise FloatingPointError(
                f"step {self.step}: the weights are not finite (first: {bad or 'on another rank'}"
                f"), so they are not saved; the last good checkpoint is "
                f"{self.ckpt_dir / last if last else 'none'}. The run diverged: lower optim.lr "
                f"(now {self.cfg.optim.lr:g}) or set optim.grad_clip, then resume from it")
        path = ckpt.save_checkpoint(self.ckpt_dir, self.step, keep_last=self.cfg.checkpoint.keep_last,
                                    is_main_process=self.env.is_main,
                                    setup=model_setup(self.cfg, self.env.world_size), **state)
        if self.env.distributed:
            import torch.distributed as dist
            dist.barrier()
        self._saved = (self.step, self.warmup_done)
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
            self._load(c, extra)
        except ckpt.CheckpointError:
            raise
        except (RuntimeError, ValueError, KeyError) as err:  # e.g. Missing key(s) in state_dict
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ckpt.CheckpointError(
                f"checkpoint.resume={where}: {c.path} does not fit this run's model setup "
                f"(LoRA, model or frozen parts differ?): {first}") from None
        return True

    def _load(self, c: Any, extra: dict[str, Any]) -> None:
        """Restore the state of checkpoint ``c`` (see :meth:`resume`)."""
        # Before the first RL step (a warm-up checkpoint) the RL optimiser and schedule
        # have done nothing: they stay as this run's config built them, so RL runs that
        # start from one warm-up may use their own optim.* settings.
        rl_started = int(extra["step"]) > 0
        self.warmup_done = bool(extra.get("warmup_done", True))
        warming = not self.warmup_done
        self.warmup_step = int(extra.get("warmup_step", 0)) if warming else 0
        if warming and self.warmup_step > 0:  # the warm-up's optimiser, to go on exactly
            if self.warmup_optimizer is None:
                raise ckpt.CheckpointError(f"checkpoint.resume: {c.path} stopped during the warm-up "
                                 f"(step {self.warmup_step}); model.sft_warmup_steps must "
                                 "be > 0 to finish it")
            self.strategy.load_checkpoint_state(self.warmup_optimizer, c, with_optimizer=True)
        else:
            self.strategy.load_checkpoint_state(self.optimizer, c, with_optimizer=rl_started)
        if not warming:
            self.warmup_optimizer = None
        if rl_started:
            self.scheduler.load_state_dict(c.scheduler_state)
        ckpt.restore_rng_state(c.rng_state["per_rank"][self.env.rank], strict=False)
        self.train_data.load_state_dict(c.data_state)
        self.step = int(extra["step"])
        self.consecutive_nonfinite = int(extra.get("consecutive_nonfinite", 0))
        self.eval_pending = bool(extra.get("eval_pending", False))
        self.headline = dict(extra.get("headline") or {})
        self._saved = (self.step, self.warmup_done)

    # ------------------------------------------------------------------ main loop

    def _logged_after_checkpoint(self, row: dict[str, Any]) -> bool:
        """Whether a metrics row was written after the checkpoint of the current step
        was saved (so a resume from that checkpoint writes it again): later steps, the
        evaluations that follow a save (after the warm-up, final), the periodic
        evaluation of a checkpoint saved with it pending (a resume runs it again), and
        the rows of a warm-up that a resume runs again."""
        step = row.get("step", -1)
        if step != self.step:
            return step > self.step
        if row.get("kind") == "sft":
            return not self.warmup_done and row.get("sft_step", 0) > self.warmup_step
        if row.get("kind") != "eval":
            return False
        if "phase" not in row and "sft_step" not in row:  # a periodic evaluation
            return self.eval_pending
        return row.get("phase") in ("warmed_up", "final")

    def fit(self) -> dict[str, Any]:
        """Warm-up, RL steps with periodic evaluation and checkpoints, final report.

        Returns a summary: steps run, final evaluation, whether a stop signal ended it.
        The logs follow the checkpoints: a resumed run first drops what was logged after
        the checkpoint it resumes from, and a run that resumes a finished run (final
        evaluation logged) logs nothing."""
        cfg = self.cfg
        resumed = self.resume()
        final_row = None
        metrics_file = self.output_dir / "metrics.jsonl"
        if resumed and self.step >= self.total_steps and self.env.is_main \
                and metrics_file.exists():
            final_row = next((r for r in read_metrics(str(metrics_file))
                              if r.get("kind") == "eval" and r.get("phase") == "final"
                              and r.get("step") == self.step), None)
        finished = any_process(final_row is not None, self.device)
        logger = MetricsLogger(str(self.output_dir), enabled=self.env.is_main and cfg.logging.jsonl,
                               tensorboard=cfg.logging.tensorboard and not finished,
                               progress_total=self.total_steps,
                               progress=cfg.logging.progress_bar and not finished,
                               initial=self.step,
                               purge_step=None if finished else self.step + 1 if resumed else 0)
        summary: dict[str, Any] = {"resumed_from": self.step if resumed else None,
                                   "stopped_by_signal": False}
        summary.update({k: v for k, v in self.headline.items() if k.startswith("eval_")})
        if finished:
            logger.write(f"resumed a finished run (step {self.step}): nothing to do")
            return self._finish_again(logger, summary, final_row)
        if resumed:
            logger.truncate(lambda row: not self._logged_after_checkpoint(row))
            logger.write(f"resumed from step {self.step}")
        else:  # starting over: an earlier attempt's rows must not stay in the history
            logger.reset()
        with ckpt.GracefulExit() as stop:
            stopping = lambda: any_process(stop.requested, self.device)  # noqa: E731

            def stopped(message: str) -> dict[str, Any]:
                summary["stopped_by_signal"] = True
                summary["steps"] = self.step
                logger.write(message)
                logger.close()
                return summary

            if not resumed and cfg.eval.at_start:
                ev, took = self._timed_evaluate(should_stop=stopping)
                if ev is None:  # nothing trained yet: nothing to save
                    return stopped("stop signal during the first evaluation: nothing trained "
                                   "or saved yet; exiting")
                logger.log(self.step, {**ev, "phase": "untrained", "sft_step": 0, **took},
                           kind="eval")
                logger.write(f"eval (untrained): {_fmt(ev)}")
                summary["eval_untrained"] = self.headline["eval_untrained"] = ev
            warming = not self.warmup_done and cfg.model.sft_warmup_steps > 0
            if not self.warmup(logger, stopping):
                self._timed_save(logger)  # weights, warm-up optimiser, data, RNG: resumes exactly
                return stopped(f"stop signal during warm-up: saved warm-up step "
                               f"{self.warmup_step} of {cfg.model.sft_warmup_steps} (a resume "
                               "goes on from there) and exiting")
            if warming:
                self._timed_save(logger)  # the warm-up is never lost to a crash early in RL
            if self.step == 0 and cfg.model.sft_warmup_steps and cfg.eval.at_start:
                ev, took = self._timed_evaluate(should_stop=stopping)
                if ev is None:  # the warm-up's checkpoint is saved; a resume evaluates it
                    return stopped("stop signal during the evaluation after the warm-up: the "
                                   "warm-up is saved; exiting")
                logger.log(self.step, {**ev, "phase": "warmed_up",
                                       "sft_step": cfg.model.sft_warmup_steps, **took},
                           kind="eval")
                logger.write(f"eval (after warm-up): {_fmt(ev)}")
                summary["eval_warmed_up"] = self.headline["eval_warmed_up"] = ev
                self.headline["warmed_up_per_prompt"] = list(self.last_eval_per_prompt)
            if self.total_steps == 0:  # warm-up only: its checkpoint is saved; stop
                if getattr(self, "_saved", None) != (self.step, self.warmup_done):
                    self._timed_save(logger)
                summary["steps"] = 0
                logger.close()
                return summary
            if self.eval_pending and not self._periodic_eval(logger, stopping):
                return stopped(f"stop signal during the evaluation at step {self.step} "
                               "(still pending in its checkpoint); exiting")
            while self.step < self.total_steps:
                if stopping():
                    summary["stopped_by_signal"] = True
                    break
                try:
                    metrics = self.rl_step()
                except RuntimeError as err:  # e.g. sampling from inf/nan probabilities
                    bad = ckpt.first_nonfinite(self.policy.state_dict())
                    if bad is None:
                        raise
                    last = ckpt.read_latest_pointer(self.ckpt_dir)
                    raise FloatingPointError(
                        f"step {self.step + 1}: the weights are not finite (first: {bad}), "
                        f"so the step failed ({err}); the last good checkpoint is "
                        f"{self.ckpt_dir / last if last else 'none'}. The run diverged: lower "
                        f"optim.lr (now {cfg.optim.lr:g}), then resume from it") from err
                self.step += 1
                if self.step % cfg.logging.log_every == 0 or self.step == self.total_steps:
                    logger.log(self.step, metrics)
                if metrics.get("nonfinite_skipped", 0.0) > 0:
                    logger.write(
                        f"step {self.step}: skipped an update with a NaN/inf loss or gradient "
                        f"({self.consecutive_nonfinite} in a row; the run stops after "
                        f"optim.max_nonfinite_steps={cfg.optim.max_nonfinite_steps})")
                logger.progress(1, reward=metrics["reward"], acc=metrics["accuracy"])
                if cfg.eval.every and self.step % cfg.eval.every == 0 \
                        and self.step != self.total_steps:
                    self.eval_pending = True
                    if not self._periodic_eval(logger, stopping):
                        summary["stopped_by_signal"] = True
                        break  # saved below with the evaluation pending
                if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0:
                    self._timed_save(logger)
            if getattr(self, "_saved", None) != (self.step, self.warmup_done):
                self._timed_save(logger)
            summary["steps"] = self.step
            if summary["stopped_by_signal"]:
                return stopped(f"stop signal: saved step {self.step} and exiting")
            ev, took = self._timed_evaluate(
                keep_samples=cfg.logging.html_samples if cfg.logging.html_report else 0,
                should_stop=stopping)
            if ev is None:
                return stopped(f"stop signal during the final evaluation: step {self.step} is "
                               "saved, a resume evaluates it; exiting")
            logger.log(self.step, {**ev, "phase": "final", **took}, kind="eval")
            logger.write(f"eval (final) @ step {self.step}: {_fmt(ev)}")
            self._final_summary(ev, summary, logger.write)
            logger.close()
            # Still inside the signal handler: a SIGTERM now lets the report finish.
            if self.env.is_main:
                self._report(logger.path)
        return summary

    def _final_summary(self, ev: dict[str, Any], summary: dict[str, Any],
                       write: Callable[[str], None]) -> None:
        """The summary's entries from the final evaluation ``ev`` (just run: its samples
        and per-prompt accuracies are this trainer's last)."""
        summary["eval_final"] = ev
        concentration = _dependency_concentration(self.last_samples)
        if concentration:
            summary["dependency_on_perception_tokens"] = concentration
            write("visual dependency of the final samples: " + _fmt(concentration))
        warmed_up_per_prompt = self.headline.get("warmed_up_per_prompt") or []
        if warmed_up_per_prompt and len(warmed_up_per_prompt) == len(self.last_eval_per_prompt):
            # RL's own effect: the same held-out prompts after RL and after the
            # warm-up, a paired t-interval over prompts (eval sampling noise included).
            from reference_impl.experiments.stats import paired_interval
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
        logger.log(self.step, {**ev, **took}, kind="eval")
        logger.write(f"eval @ step {self.step}: {_fmt(ev)}")
        self.eval_pending = False
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
        logger.log(self.step, timing_metrics(timing), kind="timing")

    def _finish_again(self, logger: MetricsLogger, summary: dict[str, Any],
                      final_row: dict[str, Any] | None) -> dict[str, Any]:
        """A resumed run that had already finished: redo the report (its files may be
        missing after a kill) and the summary, append nothing to the logs. The final
        evaluation runs again for them (same weights, same seed: the same samples and
        per-prompt accuracies, so the same RL gain)."""
        summary["steps"] = self.step
        with ckpt.GracefulExit():
            cfg = self.cfg
            ev = self.evaluate(keep_samples=cfg.logging.html_samples if cfg.logging.html_report
                               else 0)
            self._final_summary(ev, summary, logger.write)
            if final_row is not None:  # the logged values, as they were
                summary["eval_final"] = {k: v for k, v in final_row.items()
                                         if k not in ("step", "kind", "phase")
                                         and not is_timing_key(k)}
            logger.close()
            if self.env.is_main:
                self._report(logger.path)
        return summary

    def _report(self, metrics_path: str) -> None:
        from reference_impl.runlog import report

        target = self.output_dir / "learning_curves.png"
        try:
            if self.cfg.logging.plot and os.path.exists(metrics_path):
                report.plot_learning_curves(metrics_path, target)
            target = self.output_dir / "samples.html"
            if self.cfg.logging.html_report and self.last_samples:
                report.write_samples_html(self.last_samples, target,
                                          title=f"{self.cfg.algo.name}: held-out samples at "
                                                f"step {self.step}")
        except OSError as err:  # e.g. a full disk: say which file
            raise OSError(err.errno, f"{target}: cannot write the report "
                                     f"({err.strerror or err})") from err

    # ------------------------------------------------------------------ helpers

    def _autocast(self):
        if self.device.type == "cuda" and resolve_dtype(self.cfg, self.device) == torch.bfloat16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _scheduler_step(self) -> None:
        """Advance the schedule once per planned update, taken or skipped (NaN/inf,
        nothing to learn from), so the learning rate depends on the step only."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            warnings.filterwarnings("ignore", message="Seems like `optimizer.step")
            self.scheduler.step()

    def _first_forward(self) -> None:
        """One forward on a held-out example (no RNG drawn), for the strategy's
        ``prepare`` (FSDP2 initialises on the first forward through the root)."""
        example = self.heldout[0]
        batch = teacher_forced_batch(self.processor, [example.prompt], [example.image],
                                     ["ok"], device=self.device)
        with self._autocast():
            self.model(**batch.model_inputs(), logits_to_keep=1, use_cache=False)

    def _mean_over_ranks(self, metrics: dict[str, float]) -> dict[str, float]:
        if not self.env.distributed:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                              device=self.device)
        values = all_reduce(values) / self.env.world_size
        return dict(zip(keys, values.tolist()))


def _eos_id(processor) -> int:
    from reference_impl.rollout.batch import end_of_turn_id
    return end_of_turn_id(processor)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _dependency_concentration(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Where the visual dependency of sampled responses sits, for tasks that mark their
    perception tokens: mean ``S`` on those tokens and on the others, and how often a
    response's most dependent token is a perception token (empty if none are marked)."""
    marked = [s for s in samples if s.get("perception") and any(s["perception"])]
    if not marked:
        return {}
    on = [d for s in marked for d, m in zip(s["dependency"], s["perception"]) if m]
    off = [d for s in marked for d, m in zip(s["dependency"], s["perception"]) if not m]
    top = [s["perception"][int(np.argmax(s["dependency"]))] for s in marked]
    return {"mean_S_perception_tokens": float(np.mean(on)),
            "mean_S_other_tokens": float(np.mean(off)) if off else 0.0,
            "top_token_is_perception_frac": float(np.mean(top)), "responses": len(marked)}


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in metrics.items())


__all__ = ["TINY_MODEL", "Collected", "Scored", "Trainer", "build_datasets", "build_policy",
           "parameter_dtype", "resolve_dtype"]
