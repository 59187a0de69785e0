"""One RL step in named phases, the part of :class:`reference_impl.loop.trainer.Trainer`
that samples, scores and updates (verl's ``fit()`` step, one method per phase)::

    collect   rollout -> reward -> group advantages; dynamic sampling    (rollout rounds)
    score     old log-probs -> blind pass and dependency S -> A~ = A w~  (pgpo_torch, pgpo_core)
    update    PPO mini-batches of DAPO's clipped loss, AdamW, NaN/inf steps skipped

Each phase runs inside the step's timer and is logged as ``timing_s/<phase>``
(:mod:`reference_impl.loop.timing`). Every equation lives in ``pgpo_core``; this module
moves tensors between the model and it.

:class:`RLStepPhases` is mixed into the trainer and reads its parts: ``cfg``, ``env``,
``device``, ``model``, ``strategy``, ``processor``, ``engine``, ``optimizer``,
``scheduler``, ``train_data``, ``pgpo``, ``reshape``, ``dynamic_sampling``, ``pad_id``
and the run state ``run``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch

import pgpo_core
from reference_impl.config import ConfigError
from reference_impl.data.rewards import verifiable_rewards
from reference_impl.loop.timing import Timer, no_timer, phase_timer, timing_metrics
from reference_impl.policy.distributed import all_reduce, any_process, reduce_metrics
from reference_impl.rollout import engines
from reference_impl.rollout.batch import (RolloutBatch, concat_batches, end_of_turn_id,
                                          prompts_that_fit, response_logprobs)


MAX_DRAWS = 16
"""Draws in a row :meth:`RLStepPhases._draw_examples` may spend replacing over-long prompts
before it stops with an error naming ``rollout.max_prompt_length``."""


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
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    """Diagnostics the scoring computed on its way (VPPO: :func:`pgpo_core.vppo_diagnostics`)."""


class RLStepPhases:
    """The RL step's phases (see the module); mixed into the trainer."""


    def _next_examples(self, n: int):
        """``n`` examples for this process (the warm-up's and the rollouts' draw)."""
        return self._draw_examples(n)[0]

    def _draw_examples(self, n: int) -> tuple[list, int]:
        """``n`` examples for this process and how many drawn prompts were skipped as
        longer than ``rollout.max_prompt_length`` before any was sampled or trained on.

        Every rank draws ``n * world`` and keeps its slice, so the data position is the
        same on every rank. A prompt whose text alone (the image as one placeholder
        token, :func:`~reference_impl.rollout.batch.prompts_that_fit`) is over the
        limit is skipped here and replaced by the next draw: the rollout pads its batch to
        the longest prompt, so one over-long question would otherwise cost memory in the
        square of its length before it is skipped (a 20,000-word question was OOM-killed
        at 17 GiB). Prompts over the limit only with their image's tokens are still
        skipped after sampling (:meth:`collect`). A data stream without over-long prompts
        is drawn exactly as before."""
        need, limit = n * self.env.world_size, self.cfg.rollout.max_prompt_length
        kept: list = []
        skipped = 0
        for _ in range(MAX_DRAWS):
            drawn = self.train_data.sample(need - len(kept))
            fits = prompts_that_fit(self.processor, [e.prompt for e in drawn], limit)
            kept += [e for e, ok in zip(drawn, fits) if ok]
            skipped += fits.count(False)
            if len(kept) == need:
                if skipped and not self._warned_long_prompts:  # once; counts are metrics
                    self._warned_long_prompts = True
                    warnings.warn(f"prompts longer than rollout.max_prompt_length={limit} "
                                  "tokens are skipped before sampling (counted in "
                                  "prompts_too_long)", RuntimeWarning, stacklevel=2)
                return kept[self.env.rank * n:(self.env.rank + 1) * n], skipped
        raise ConfigError(f"rollout.max_prompt_length: {skipped} of the last "
                          f"{skipped + len(kept)} prompts drawn from data.source are longer "
                          f"than {limit} tokens (text alone); raise it or filter the data")

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
            examples, too_long_drawn = self._draw_examples(r.prompts_per_step)
            skipped_long += too_long_drawn / self.env.world_size  # per process, as below
            with timer("rollout"):
                batch = self._rollout(examples, group_size=r.samples_per_prompt,
                                      temperature=r.temperature, top_p=r.top_p)
            with timer("reward"):
                reward, accuracy, fmt = self._rewards(batch)
            lengths = batch.response_mask.sum(-1).float()
            ended = (batch.responses == end_of_turn_id(self.processor)) & batch.response_mask
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
                result = self.pgpo_advantages(sub, advantages[rows], self.pgpo, timer=timer)
            old.append(result.old_logprobs.float())
            deps.append(result.dependency)
            weights.append(result.weights)
            token_adv.append(result.token_advantages)
        return Scored(torch.cat(old), torch.cat(token_adv),
                      torch.cat(deps) if deps else None, torch.cat(weights) if deps else None)

    def pgpo_advantages(self, batch: RolloutBatch, advantages: torch.Tensor, config,
                         timer: Timer | None = None):
        """:func:`pgpo_torch.compute_pgpo_advantages` on one micro-batch (``timer``: see
        :meth:`score`)."""
        from pgpo_torch import compute_pgpo_advantages

        a = self.cfg.algo
        with self.strategy.unsharded():
            return compute_pgpo_advantages(
                self.strategy.hf_model, batch.model_inputs(), advantages=advantages,
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
                    self.strategy.hf_model, sub.model_inputs(), sub.response_mask,
                    response_length=sub.response_mask.shape[1], config=self.pgpo,
                    blind=self.cfg.algo.blind, return_logprobs=True, timer=timer)
            old.append(logp.float())
            deps.append(dep.float())
        vppo = self.cfg.algo.algorithm.vppo
        dependency = torch.cat(deps)
        with timer("advantages"):
            shaped = pgpo_core.vppo_advantages(advantages, dependency,
                                               batch.response_mask, **vppo.advantage_kwargs())
            diag = pgpo_core.vppo_diagnostics(dependency, batch.response_mask,
                                              scale=shaped.scale, token_mask=shaped.token_mask)
        return Scored(torch.cat(old), shaped.advantages,
                      metrics={k: float(v) for k, v in diag.items()})

    def update(self, batch: RolloutBatch, old_logp: torch.Tensor, token_adv: torch.Tensor
               ) -> tuple[dict[str, float], int]:
        """PPO mini-batch updates over the kept groups; returns the loss metrics averaged
        over them and how many there were."""
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
        return {**{k: v / max(count, 1) for k, v in sums.items()}, **mismatch}, count

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
            self.run.consecutive_nonfinite += 1
            skipped = 1.0
            if self.run.consecutive_nonfinite > o.max_nonfinite_steps:
                raise FloatingPointError(
                    f"optim.max_nonfinite_steps: {self.run.consecutive_nonfinite} consecutive "
                    "updates had a NaN/inf loss or gradient; stopping")
        else:
            self.optimizer.step()
            self.run.consecutive_nonfinite = 0
            skipped = 0.0
        self._scheduler_step()
        tokens = max(ent_count, 1.0)
        out = {"loss": acc.get("loss", 0.0), "entropy": ent_sum / tokens,
               "grad_norm": float(grad_norm), "nonfinite_skipped": skipped,
               "lr": self.optimizer.param_groups[0]["lr"]}
        for k in ("clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl"):
            out[k] = acc.get(k, 0.0) / tokens
        return out

    def rl_step(self) -> dict[str, float]:
        """One RL step: collect, score, update. Returns metrics over all processes
        (means; ``*_max`` / ``*_min`` the extremes, :func:`reduce_metrics`),
        with the wall time of each phase as ``timing_s/<phase>`` (:mod:`.timing`)."""
        timing: dict[str, float] = {}
        timer = phase_timer(timing, self.device)
        with timer("step"):
            metrics = self._rl_step(timer)
        return reduce_metrics({**metrics, **timing_metrics(timing)}, self.env, self.device)

    def _rl_step(self, timer: Timer) -> dict[str, float]:
        updates = 0
        collected = self.collect(timer)
        batch, metrics = collected.batch, collected.metrics
        if not any_process(batch is None, self.device):
            scored = self.score(batch, collected.advantages, timer)
            with timer("update"):
                update_metrics, updates = self.update(batch, scored.old_logprobs,
                                                      scored.token_advantages)
                metrics.update(update_metrics)
            metrics["updated"] = 1.0
            metrics.update(scored.metrics)
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
        for _ in range(self.minibatches_per_step * self.cfg.optim.ppo_epochs - updates):
            self._scheduler_step()
        return metrics

    def _scheduler_step(self) -> None:
        """Advance the schedule once per planned update, taken or skipped (NaN/inf,
        nothing to learn from), so the learning rate depends on the step only."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            warnings.filterwarnings("ignore", message="Seems like `optimizer.step")
            self.scheduler.step()


__all__ = ["Collected", "RLStepPhases", "Scored"]
