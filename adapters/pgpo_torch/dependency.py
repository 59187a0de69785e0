"""Token visual dependency from last hidden states, chunked so no (T, V) logits exist.

PGPO (Ye et al., 2026, arXiv 2604.01840, Eq. 1) scores token ``t`` by
``S_t = KL(pi_I || pi_0)`` over the whole vocabulary (Qwen2.5-VL: V = 152,064). Done
naively, both passes' ``(B, T, V)`` logits are materialised: at T = 2048 that is 2.5 GB in
float32 per pass, per response. Here the LM head is applied to ``chunk_size`` tokens at a
time and each chunk's logits go straight to :func:`pgpo_core.token_visual_dependency`
(the one implementation of the KL), so the extra memory is ``O(chunk_size * V)`` and the
result is the core's on the full logits.
"""

from __future__ import annotations

import array_api_compat.torch as torch_xp
import torch

import pgpo_core
from pgpo_core import validation
from pgpo_torch.logprobs import logprobs_from_logits

__all__ = ["dependency_from_hidden_states", "token_logprobs_from_hidden_states"]


def _check_hidden(hidden_visual, hidden_blind, lm_head_weight, response_mask, chunk_size,
                  lm_head_bias, logits_dtype) -> None:
    for name, x in (("hidden_visual", hidden_visual), ("hidden_blind", hidden_blind),
                    ("lm_head_weight", lm_head_weight), ("response_mask", response_mask)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if hidden_visual.ndim != 3:
        raise ValueError(f"hidden_visual: expected (B, T, H), got shape "
                         f"{tuple(hidden_visual.shape)}")
    if hidden_blind.shape != hidden_visual.shape:
        raise ValueError(f"hidden_blind: shape {tuple(hidden_blind.shape)} does not match "
                         f"hidden_visual's {tuple(hidden_visual.shape)} (nothing is broadcast)")
    for name, x in (("hidden_visual", hidden_visual), ("hidden_blind", hidden_blind),
                    ("lm_head_weight", lm_head_weight)):
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}")
    if hidden_blind.dtype != hidden_visual.dtype:
        raise TypeError(f"hidden_blind: dtype {hidden_blind.dtype} differs from "
                        f"hidden_visual's {hidden_visual.dtype}")
    if lm_head_weight.ndim != 2 or lm_head_weight.shape[1] != hidden_visual.shape[-1]:
        raise ValueError(f"lm_head_weight: expected (V, H) with H = {hidden_visual.shape[-1]}, "
                         f"got shape {tuple(lm_head_weight.shape)}")
    if lm_head_bias is not None and (not isinstance(lm_head_bias, torch.Tensor)
                                     or tuple(lm_head_bias.shape) != (lm_head_weight.shape[0],)):
        raise ValueError(f"lm_head_bias: expected a ({lm_head_weight.shape[0]},) tensor")
    validation.check_response_mask(torch_xp, response_mask, hidden_visual.shape[:2],
                                "hidden_visual")
    validation.check_chunk_size(chunk_size)
    if logits_dtype is not None and (not isinstance(logits_dtype, torch.dtype)
                                     or not logits_dtype.is_floating_point):
        raise TypeError(f"logits_dtype: expected a floating torch.dtype or None, got "
                        f"{logits_dtype!r}")


def _head(lm_head_weight, lm_head_bias, logits_dtype):
    """The LM head's weight and bias in the dtype the logits are computed in."""
    dtype = lm_head_weight.dtype if logits_dtype is None else logits_dtype
    weight = lm_head_weight.to(dtype)  # no copy when the dtype already matches
    bias = None if lm_head_bias is None else lm_head_bias.to(dtype)
    return weight, bias, dtype


@torch.no_grad()
def dependency_from_hidden_states(
    hidden_visual: torch.Tensor,
    hidden_blind: torch.Tensor,
    lm_head_weight: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 256,
    lm_head_bias: torch.Tensor | None = None,
    logits_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Exact ``S_t = KL(pi_I || pi_0)`` (PGPO Eq. 1) from the passes' last hidden states.

    For each chunk of ``chunk_size`` tokens (over the flattened ``B * T``)::

        z_I = h_I W^T + b,   z_0 = h_0 W^T + b          (chunk, V)
        S   = pgpo_core.token_visual_dependency(z_I, z_0, mask, temperature=temperature)

    The core upcasts bf16/fp16 logits to float32 before the log-softmax, so the KL is
    accumulated in float32. No ``(T, V)`` logits of either pass exist at once: the peak
    extra memory is a few ``chunk_size x V`` float32 buffers. Runs under
    ``torch.no_grad`` (``S`` is a constant for the optimiser).

    Args:
      hidden_visual: ``(B, T, H)`` final-normed hidden states (the LM head's input) of the
        visual pass, aligned so that ``[b, t]`` predicts response token ``t``
        (:func:`pgpo_torch.response_outputs` with ``output="hidden"``).
      hidden_blind: ``(B, T, H)`` the same for the blind pass.
      lm_head_weight: ``(V, H)`` the LM head's weight (``model.lm_head.weight``).
      response_mask: ``(B, T)`` boolean, True on real response tokens.
      temperature: the sampling temperature the distributions are taken at (> 0).
      chunk_size: tokens per chunk (a positive int; static, so it is compile friendly).
      lm_head_bias: ``(V,)`` the LM head's bias, if it has one.
      logits_dtype: dtype of the chunk logits. ``None``: the weight's dtype, i.e. exactly
        what ``model.lm_head`` returns (on GPU a bf16 GEMM accumulates in float32).
        ``torch.float32`` with a bf16 head: float32 logits, at the cost of one float32
        copy of the weight (``V x H x 4`` bytes) for the call.

    Returns:
      ``(B, T)`` float32 (float64 for float64 inputs) dependencies, >= 0, 0 on padding;
      equal to ``pgpo_core.token_visual_dependency`` on the full logits.
    """
    _check_hidden(hidden_visual, hidden_blind, lm_head_weight, response_mask, chunk_size,
                  lm_head_bias, logits_dtype)
    weight, bias, dtype = _head(lm_head_weight, lm_head_bias, logits_dtype)
    batch, length, width = hidden_visual.shape
    n = batch * length
    flat_visual = hidden_visual.reshape(n, width)
    flat_blind = hidden_blind.reshape(n, width)
    flat_mask = response_mask.reshape(1, n)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty(n, dtype=out_dtype, device=hidden_visual.device)
    for start in range(0, n, chunk_size):  # Python ints only: static under torch.compile
        stop = min(start + chunk_size, n)
        z_visual = torch.nn.functional.linear(flat_visual[start:stop].to(dtype), weight, bias)
        z_blind = torch.nn.functional.linear(flat_blind[start:stop].to(dtype), weight, bias)
        out[start:stop] = pgpo_core.token_visual_dependency(
            z_visual.unsqueeze(0), z_blind.unsqueeze(0), flat_mask[:, start:stop],
            temperature=temperature)[0]
    return out.reshape(batch, length)


@torch.no_grad()
def token_logprobs_from_hidden_states(
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    tokens: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 256,
    lm_head_bias: torch.Tensor | None = None,
    logits_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``log softmax(h W^T + b / temperature)[token]`` per position, chunked over tokens.

    The inputs of :func:`pgpo_core.sampled_token_dependency` (the k1/k2/k3 estimators)
    without materialising ``(T, V)`` logits. ``hidden`` is ``(B, T, H)`` aligned with
    ``tokens`` ``(B, T)`` (``[b, t]`` predicts ``tokens[b, t]``). Returns ``(B, T)``
    float32 log-probabilities (float64 for float64 inputs).
    """
    mask = torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device) \
        if isinstance(tokens, torch.Tensor) else None
    _check_hidden(hidden, hidden, lm_head_weight, mask, chunk_size, lm_head_bias,
                  logits_dtype)
    if tokens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"tokens: expected an integer dtype, got {tokens.dtype}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature!r}")
    weight, bias, dtype = _head(lm_head_weight, lm_head_bias, logits_dtype)
    batch, length, width = hidden.shape
    n = batch * length
    flat = hidden.reshape(n, width)
    flat_tokens = tokens.reshape(n).long()
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty(n, dtype=out_dtype, device=hidden.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        logits = torch.nn.functional.linear(flat[start:stop].to(dtype), weight, bias)
        out[start:stop] = logprobs_from_logits(logits.to(out_dtype), flat_tokens[start:stop],
                                               temperature=temperature)[0]
    return out.reshape(batch, length)
