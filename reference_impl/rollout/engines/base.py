"""The rollout-engine interface, and the rollout-vs-trainer mismatch math.

Rollout log-probs. An engine that samples with its own copy of the weights (vLLM) also
returns ``log pi_rollout(o_t)``, the engine's log-prob of each sampled token. With
``rollout.temperature = 1`` (the paper's) it is the trainer's quantity exactly,
``log_softmax(logits)`` over the whole vocabulary (vLLM's ``raw_logprobs``), so the two
differ only by kernel numerics and precision (bfloat16 rollouts). At another temperature
vLLM offers only the processed distribution (temperature, top-p and the banned vision
tokens applied), so the difference then also holds the sampling-time truncation.
Two uses:

- :func:`rollout_mismatch_metrics`: ``|log pi_train - log pi_rollout|`` over response
  tokens, mean and max (verl's / TRL's rollout-vs-training diagnostics).
- :func:`truncated_is_weights`: truncated importance sampling (TIS; Yao et al., 2025, as
  in verl and TRL) ``w_t = min(pi_train(o_t) / pi_rollout(o_t), C)``, a constant
  (no gradient) that multiplies each token's advantage. For the clipped surrogate
  ``max(-r A, -clip(r) A)`` (and its dual clip) a factor ``w >= 0`` on ``A`` is the
  same as the factor on each token's loss, so applying it to the token advantages is
  the whole correction. (It lives here, next to the engines, because it is a property of
  the rollout; if ``pgpo_core.policy_loss`` grows a per-token weight, this moves there.)
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import torch

from reference_impl.rollout.batch import RolloutBatch


class RolloutEngine(abc.ABC):
    """Samples G responses per prompt; keeps its weights in step with the trainer's.

    Contract of :meth:`generate`: responses ``i*G ... (i+1)*G - 1`` belong to prompt
    ``i`` (``group_ids == i``); each response ends at the first end-of-turn token (kept,
    ``finish_reasons == 'stop'``) or after ``max_new_tokens`` (``'length'``); responses
    never contain vision placeholder tokens; ``rollout_logprobs`` is ``(N, T)`` float32
    (zero under padding) or None when the engine samples with the trained module itself.
    """

    #: Registry name (``rollout.backend``).
    name: str = ""
    #: True when the engine holds its own copy of the weights (sync after each update).
    needs_sync: bool = False
    #: True when it returns ``rollout_logprobs`` (what ``rollout.tis_cap`` needs).
    reports_logprobs: bool = False
    #: True when :meth:`sleep` frees memory (what ``rollout.vllm_sleep`` asks for).
    can_sleep: bool = False

    @classmethod
    def check_setup(cls, cfg: Any, *, device: torch.device, world_size: int) -> None:
        """Refuse, before the model is built, a setup this engine cannot serve: a
        :class:`~reference_impl.config.ConfigError` naming the field (the command line
        reports it in one line, exit status 2). Here: the options that need a capability
        the engine does not have; engines add their own checks."""
        from reference_impl.config.fields import ConfigError

        r = cfg.rollout
        if r.tis_cap is not None and not cls.reports_logprobs:
            raise ConfigError(
                f"rollout.tis_cap: truncated importance sampling needs an engine that reports "
                f"its log-probs (rollout.backend=vllm); the {cls.name!r} engine samples with "
                "the trained module itself")
        if r.vllm_sleep and not cls.can_sleep:
            raise ConfigError(f"rollout.vllm_sleep: only for the vllm engine; this run uses "
                              f"{cls.name!r}")

    @classmethod
    @abc.abstractmethod
    def for_trainer(cls, *, cfg: Any, env: Any, strategy: Any, processor: Any
                    ) -> "RolloutEngine":
        """The engine for the trainer's policy, after the model is built and wrapped by
        ``strategy`` (:mod:`reference_impl.policy.distributed`), on the processes of
        ``env`` (a :class:`~reference_impl.policy.distributed.DistEnv`)."""

    @abc.abstractmethod
    def generate(self, questions: Sequence[str], images: Sequence[Any], answers: Sequence[str],
                 *, group_size: int, max_new_tokens: int, temperature: float, top_p: float,
                 system_prompt: str | None = None, min_new_tokens: int = 0) -> RolloutBatch:
        """``len(questions) * group_size`` sampled responses as a :class:`RolloutBatch`
        (``min_new_tokens``: the end-of-turn token is not sampled before that many tokens;
        benchmarks use it to generate the same number of tokens with every engine)."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load ``model``'s current weights into the engine (no-op when it samples with
        the trained module)."""

    def sleep(self) -> None:
        """Free the engine's memory between rollouts, where supported (no-op otherwise)."""

    def wake_up(self) -> None:
        """Undo :meth:`sleep` before the next rollout (no-op otherwise)."""

    def close(self) -> None:
        """Release the engine."""


def rollout_mismatch_metrics(trainer_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                             mask: torch.Tensor) -> dict[str, float]:
    """``rollout_logprob_diff_mean`` / ``_max``: ``|log pi_train - log pi_rollout|`` over
    the response tokens (``mask`` True), both ``(N, T)``."""
    if trainer_logprobs.shape != rollout_logprobs.shape or trainer_logprobs.shape != mask.shape:
        raise ValueError(f"rollout_logprobs: shape {tuple(rollout_logprobs.shape)} does not "
                         f"match the trainer's {tuple(trainer_logprobs.shape)} / mask "
                         f"{tuple(mask.shape)}")
    diff = (trainer_logprobs.float() - rollout_logprobs.float()).abs()[mask]
    if diff.numel() == 0:
        return {"rollout_logprob_diff_mean": 0.0, "rollout_logprob_diff_max": 0.0}
    return {"rollout_logprob_diff_mean": float(diff.mean()),
            "rollout_logprob_diff_max": float(diff.max())}


def truncated_is_weights(trainer_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                         mask: torch.Tensor, *, cap: float) -> torch.Tensor:
    """``w_t = min(exp(log pi_train - log pi_rollout), cap)`` on response tokens, 0 under
    padding; ``(N, T)`` float32, no gradient. ``cap`` is C > 0 (e.g. 2)."""
    if not cap > 0:
        raise ValueError(f"cap: must be > 0, got {cap!r}")
    if trainer_logprobs.shape != rollout_logprobs.shape or trainer_logprobs.shape != mask.shape:
        raise ValueError(f"rollout_logprobs: shape {tuple(rollout_logprobs.shape)} does not "
                         f"match the trainer's {tuple(trainer_logprobs.shape)} / mask "
                         f"{tuple(mask.shape)}")
    log_ratio = (trainer_logprobs.detach().float() - rollout_logprobs.detach().float())
    log_ratio = log_ratio.masked_fill(~mask, 0.0)
    if not bool(torch.isfinite(log_ratio).all()):
        raise FloatingPointError("rollout_logprobs: non-finite log-prob on a response token")
    # min(exp(x), C) = exp(min(x, log C)): no overflow for large ratios.
    w = torch.exp(torch.clamp(log_ratio, max=float(torch.log(torch.tensor(cap)))))
    return w * mask


__all__ = ["RolloutEngine", "rollout_mismatch_metrics", "truncated_is_weights"]
