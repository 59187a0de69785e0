"""Held-out evaluation, the part of :class:`reference_impl.loop.trainer.Trainer` that
measures the policy: avg@k accuracy, reward, format and perception accuracy on the
held-out split (its own RNG stream: training is unaffected), the responses kept for the
report with each token's visual dependency, and where that dependency sits.

:class:`HeldOutEvaluation` is mixed into the trainer and reads ``cfg``, ``env``,
``device``, ``strategy``, ``processor``, ``heldout``, ``pgpo`` and ``run``; it uses the
rollout and reward of :class:`reference_impl.loop.rl_step.RLStepPhases`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from reference_impl.data.chains import perception_accuracy, perception_token_mask
from reference_impl.policy.distributed import all_reduce
from reference_impl.rollout.batch import RolloutBatch


class HeldOutEvaluation:
    """Evaluation on the held-out split (see the module); mixed into the trainer."""

    last_samples: list[dict[str, Any]]
    """The responses the last evaluation kept for the report."""
    last_eval_per_prompt: list[float]
    """The last evaluation's accuracy per held-out prompt (held-out order)."""


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
            torch.manual_seed(self.cfg.train.seed * 1_000_003 + self.run.step * 7919 + self.env.rank)
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
            dep = self.pgpo_advantages(
                sub, torch.zeros(sub.size, device=self.device),
                self.pgpo.replace(estimator="exact")).dependency
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


def dependency_concentration(samples: list[dict[str, Any]]) -> dict[str, float]:
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


__all__ = ["HeldOutEvaluation", "dependency_concentration"]
