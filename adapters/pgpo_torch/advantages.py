"""One call from a rollout batch to PGPO's token-level advantages.

Blind pass (:mod:`pgpo_torch.blind_pass`) -> token visual dependency (exact, chunked from
hidden states, or a k1/k2/k3 estimate) -> group advantages -> PGPO's reshaping
(Eqs. 1-8 of Ye et al., 2026, arXiv 2604.01840). All the math is pgpo_core's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ContextManager, Mapping

import torch

import pgpo_core
from pgpo_core import PGPOConfig
from pgpo_torch.blind_pass import (BlindPassConfig, _check_batch, _untimed,
                                   visual_and_blind_outputs)
from pgpo_torch.dependency import (dependency_from_hidden_states,
                                   token_logprobs_from_hidden_states)

__all__ = ["PGPOAdvantages", "batch_visual_dependency", "compute_pgpo_advantages"]


@dataclasses.dataclass(frozen=True)
class PGPOAdvantages:
    """Result of :func:`compute_pgpo_advantages`; tensors are ``(B, T)`` unless noted."""

    token_advantages: torch.Tensor
    """``A~ = A * w~`` (Eq. 8), 0 on padding: what the policy loss takes."""
    advantages: torch.Tensor
    """The per-response (``(B,)``) or per-token advantages before reshaping."""
    dependency: torch.Tensor
    """Token visual dependency ``S`` (Eq. 1, exact or estimated), 0 on padding."""
    weights: torch.Tensor
    """PGPO's token weights ``w~`` (Eqs. 4-7), 0 on padding."""
    response_mask: torch.Tensor
    """Boolean, True on real response tokens."""
    old_logprobs: torch.Tensor | None
    """Log-probs of the response tokens in the visual pass (the rollout policy's
    ``logp_old``) when computed (``return_logprobs=True`` or a sampled estimator)."""
    diagnostics: dict[str, float]
    """``pgpo_core.weight_diagnostics`` as Python floats, plus group statistics."""


def _response_mask(batch: Mapping[str, Any], response_length: int,
                   response_mask: torch.Tensor | None) -> torch.Tensor:
    if response_mask is None:
        return batch["attention_mask"][:, -response_length:].bool()
    if not isinstance(response_mask, torch.Tensor) or response_mask.dtype != torch.bool:
        raise TypeError("response_mask: expected a boolean tensor (True = real response token)")
    expected = (batch["input_ids"].shape[0], response_length)
    if tuple(response_mask.shape) != expected:
        raise ValueError(f"response_mask: shape {tuple(response_mask.shape)}, expected "
                         f"(B, response_length) = {expected}")
    return response_mask


@torch.no_grad()
def batch_visual_dependency(
    model,
    batch: Mapping[str, Any],
    response_mask: torch.Tensor,
    *,
    response_length: int,
    config: PGPOConfig,
    blind: BlindPassConfig | str = "drop",
    generator: torch.Generator | None = None,
    return_logprobs: bool = False,
    timer: Callable[[str], ContextManager[Any]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Blind pass and token visual dependency ``S`` (Eq. 1) of one batch, under ``no_grad``.

    Runs the visual and blind passes (last hidden states only; ``blind`` a
    :class:`BlindPassConfig` or a mode name), then
    ``config.estimator == "exact"``: the full-vocabulary KL chunked from hidden states;
    ``"k1"``/``"k2"``/``"k3"``: :func:`pgpo_core.sampled_token_dependency` on the
    generated tokens' log-probs (k1, which can be negative, clamped at 0). Both at
    ``config.temperature`` with ``config.chunk_size`` tokens per chunk.

    ``timer(name)``, if given, is a context manager around the visual pass and its
    log-probs (``"old_logprobs"``) and around the blind pass and ``S`` (``"blind_pass"``).

    Returns:
      ``(dependency, old_logprobs)``: ``(B, T)`` ``S``, 0 off ``response_mask``, and the
      visual pass's response log-probs (``logp_old``) when ``return_logprobs`` or a
      sampled estimator needs them, else ``None``.
    """
    timed = timer or _untimed
    hidden_visual, hidden_blind = visual_and_blind_outputs(
        model, batch, response_length=response_length, blind=blind, output="hidden",
        generator=generator, timer=timed)
    head = model.get_output_embeddings()
    head_kwargs = dict(temperature=config.temperature,
                       chunk_size=config.chunk_size or max(1, response_mask.numel()),
                       lm_head_bias=getattr(head, "bias", None))
    tokens = batch["input_ids"][:, -response_length:]
    old_logprobs = None
    if return_logprobs or config.estimator != "exact":
        with timed("old_logprobs"):
            old_logprobs = token_logprobs_from_hidden_states(hidden_visual, head.weight,
                                                             tokens, **head_kwargs)
    if config.estimator == "exact":
        with timed("blind_pass"):
            dependency = dependency_from_hidden_states(hidden_visual, hidden_blind,
                                                       head.weight, response_mask,
                                                       **head_kwargs)
        return dependency, old_logprobs
    with timed("blind_pass"):
        logp_blind = token_logprobs_from_hidden_states(hidden_blind, head.weight, tokens,
                                                       **head_kwargs)
        dependency = pgpo_core.sampled_token_dependency(
            old_logprobs, logp_blind, response_mask, estimator=config.estimator,
            clip=config.estimate_clip)
    # k1 is unbiased but can be negative; the weights of Eqs. 4-7 need S >= 0.
    return (dependency.clamp_min(0.0) if config.estimator == "k1" else dependency), old_logprobs


def compute_pgpo_advantages(
    model,
    batch: Mapping[str, Any],
    rewards: torch.Tensor | None = None,
    group_ids: torch.Tensor | None = None,
    *,
    response_length: int,
    advantages: torch.Tensor | None = None,
    config: PGPOConfig | None = None,
    blind: BlindPassConfig | str = "drop",
    response_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    normalize_std: bool = True,
    return_logprobs: bool = False,
    with_diagnostics: bool = True,
    timer: Callable[[str], ContextManager[Any]] | None = None,
) -> PGPOAdvantages:
    """PGPO token advantages for a rollout batch, usable from any PyTorch loop.

    1. Visual and blind passes (``blind``: a :class:`pgpo_torch.BlindPassConfig`, or the
       mode name ``"drop"``, ``"mask"``, ``"blacken"`` for its defaults; see
       :mod:`pgpo_torch.blind_pass`), last hidden states only, under ``torch.no_grad``.
    2. ``S_t`` (Eq. 1): ``config.estimator == "exact"`` -> the full-vocabulary KL,
       chunked (:func:`pgpo_torch.dependency_from_hidden_states`); ``"k1"``/``"k2"``/
       ``"k3"`` -> :func:`pgpo_core.sampled_token_dependency` on the generated tokens'
       log-probs (k1, which can be negative, is clamped at 0).
    3. ``A_i`` (Eq. 2): :func:`pgpo_core.group_advantages` of ``rewards`` by
       ``group_ids``, unless ``advantages`` (``(B,)`` or ``(B, T)``) are given.
    4. ``w~`` (Eqs. 4-7): :func:`pgpo_core.token_weights` with ``config.weight_kwargs()``,
       once; ``A~ = A * w~`` (Eq. 8): :func:`pgpo_core.weighted_advantages`; the
       diagnostics: :func:`pgpo_core.weight_diagnostics` on those same weights.

    Args:
      model: a ``Qwen2_5_VLForConditionalGeneration`` (the rollout policy).
      batch: ``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values``,
        ``image_grid_thw`` of left-padded prompts + right-padded responses.
      rewards: ``(B,)`` float rewards; with ``group_ids`` ``(B,)`` ints (same prompt, same id).
      response_length: ``T``, the width of the response block.
      advantages: precomputed advantages instead of ``rewards``/``group_ids``.
      config: :class:`pgpo_core.PGPOConfig` (tau, beta, estimator, temperature, chunk_size,
        ...); the paper's defaults if ``None``.
      blind: the blind pass (:class:`pgpo_torch.BlindPassConfig` or a mode name).
      generator: RNG of the ``"blacken"`` mode.
      response_mask: ``(B, T)`` boolean; default: the response block's attention mask.
      normalize_std: divide by the group std (GRPO, DAPO) or not (Dr. GRPO).
      return_logprobs: also return the visual pass's response log-probs (``logp_old``).
      with_diagnostics: fill ``diagnostics`` (Python floats: one host sync per value);
        ``False`` for a caller that computes them over a larger batch itself.
      timer: ``timer(name)`` a context manager (e.g. a trainer's phase timer) around
        the visual pass and its log-probs (``"old_logprobs"``), the blind pass and ``S``
        (``"blind_pass"``), and steps 3-4 (``"advantages"``); none if ``None``.

    Returns:
      :class:`PGPOAdvantages`.
    """
    config = PGPOConfig() if config is None else config
    if not isinstance(config, PGPOConfig):
        raise TypeError(f"config: expected a pgpo_core.PGPOConfig, got {type(config).__name__}")
    blind = BlindPassConfig.of(blind)
    if (advantages is None) == (rewards is None):
        raise ValueError("rewards: pass either rewards (with group_ids) or advantages, "
                         "exactly one of them")
    if rewards is not None and group_ids is None:
        raise ValueError("group_ids: needed with rewards (responses with equal ids share a "
                         "prompt)")
    _check_batch(batch, response_length)
    mask = _response_mask(batch, response_length, response_mask)

    timed = timer or _untimed
    dependency, old_logprobs = batch_visual_dependency(
        model, batch, mask, response_length=response_length, config=config, blind=blind,
        generator=generator, return_logprobs=return_logprobs, timer=timed)
    with timed("advantages"):
        return _reshaped_advantages(dependency, old_logprobs, mask, config, rewards, group_ids,
                                    advantages, normalize_std, with_diagnostics)


def _reshaped_advantages(dependency, old_logprobs, mask, config, rewards, group_ids,
                         advantages, normalize_std, with_diagnostics) -> PGPOAdvantages:
    """Steps 3-4 of :func:`compute_pgpo_advantages`."""
    diagnostics: dict[str, float] = {}
    if advantages is None:
        for name, x in (("rewards", rewards), ("group_ids", group_ids)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        groups = pgpo_core.group_advantages(rewards.to(mask.device), group_ids.to(mask.device),
                                            normalize_std=normalize_std)
        advantages = groups.advantages
        diagnostics["reward_mean"] = float(rewards.float().mean())
        diagnostics["frac_groups_all_equal"] = float(groups.all_equal.float().mean())
    elif not isinstance(advantages, torch.Tensor):
        raise TypeError(f"advantages: expected a torch.Tensor, got {type(advantages).__name__}")
    else:
        advantages = advantages.to(mask.device)

    # The weights once: Eq. 8 and the diagnostics take them as computed here.
    weight_kwargs = config.weight_kwargs()
    weights = pgpo_core.token_weights(dependency, mask, **weight_kwargs)
    token_advantages = pgpo_core.weighted_advantages(advantages, weights, mask)
    if with_diagnostics:
        stats = pgpo_core.weight_diagnostics(dependency, mask, weights=weights, **weight_kwargs)
        diagnostics.update({name: float(value) for name, value in stats.items()})
    return PGPOAdvantages(token_advantages=token_advantages, advantages=advantages,
                          dependency=dependency, weights=weights, response_mask=mask,
                          old_logprobs=old_logprobs, diagnostics=diagnostics)
