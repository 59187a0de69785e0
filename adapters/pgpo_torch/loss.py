"""PGPO's policy loss as a ``torch.nn.Module`` (a thin wrapper over ``pgpo_core.policy_loss``)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

import pgpo_core
from pgpo_core import PGPOConfig
from pgpo_torch.blind_pass import response_outputs
from pgpo_torch.logprobs import logprobs_from_logits

__all__ = ["PGPOLoss", "response_token_logprobs"]


class PGPOLoss(torch.nn.Module):
    """The clipped surrogate of PGPO (Eq. 9, the DAPO recipe) with token advantages ``A~``.

    Calls :func:`pgpo_core.policy_loss` with ``config.loss_kwargs()`` (``clip_low``,
    ``clip_high``, ``dual_clip``, ``aggregation``); see there for the equation. Usage::

        loss_fn = PGPOLoss(PGPOConfig())
        loss, metrics = loss_fn(logp, logp_old, result.token_advantages, result.response_mask)

    ``forward`` returns ``(loss, metrics)``; the metrics are detached 0-d tensors
    (``clip_frac``, ``approx_kl``, ``ratio_mean``, ...), ready for logging.
    """

    def __init__(self, config: PGPOConfig | None = None) -> None:
        super().__init__()
        config = PGPOConfig() if config is None else config
        if not isinstance(config, PGPOConfig):
            raise TypeError(f"config: expected a pgpo_core.PGPOConfig, got "
                            f"{type(config).__name__}")
        self.config = config

    def forward(self, logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                response_mask: torch.Tensor, *, normalizer: float | None = None,
                norm_length: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``logp``/``logp_old``/``response_mask`` ``(B, T)``, ``advantages`` ``(B, T)`` or
        ``(B,)``; ``normalizer``/``norm_length`` as in :func:`pgpo_core.aggregate`."""
        loss, metrics = pgpo_core.policy_loss(
            logp, logp_old, advantages, response_mask, normalizer=normalizer,
            norm_length=norm_length, **self.config.loss_kwargs())
        return loss, {name: value.detach() for name, value in metrics.items()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.loss_kwargs().items())


def response_token_logprobs(model, inputs: Mapping[str, Any], *, response_length: int,
                            temperature: float = 1.0) -> torch.Tensor:
    """``(B, T)`` log-probs of the response tokens (the last ``response_length`` ids of
    ``inputs["input_ids"]``) under ``model``, with gradients if enabled.

    The ``log pi_theta`` of the policy loss. It materialises the ``(B, T, V)`` response
    logits, as TRL and verl do for the trained pass.
    """
    logits = response_outputs(model, inputs, response_length=response_length)
    tokens = inputs["input_ids"][:, -response_length:]
    return logprobs_from_logits(logits, tokens, temperature=temperature)[0]
