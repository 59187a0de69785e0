"""Log-probabilities of sampled tokens from logits: the one route, for old and new log-probs."""

from __future__ import annotations

import torch

__all__ = ["logprobs_from_logits"]


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, *,
                         temperature: float = 1.0, with_entropy: bool = False,
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log softmax(logits / temperature)[token]`` per position, in float32 (or wider).

    ``logits`` ``(..., V)`` (bf16/fp16 upcast to float32 before the softmax), ``tokens``
    ``(...)`` integer ids. Returns ``(logp, entropy)``: ``logp`` with gradients if
    enabled; with ``with_entropy`` also ``H = -sum_v p_v log p_v`` of the same
    distribution (no gradient), else ``None``. The one route from logits to the log-probs
    of the sampled tokens, for old and new log-probs alike.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature!r}")
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"tokens: shape {tuple(tokens.shape)} does not match logits "
                         f"{tuple(logits.shape)} without the vocabulary axis")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    logp_all = torch.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
    logp = logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy
