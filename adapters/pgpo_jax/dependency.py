"""Exact token visual dependency (PGPO Eq. 1) over token chunks, under ``jax.jit``.

``S_t = KL(pi_I || pi_0)`` over the full vocabulary needs both passes' next-token
distributions. Done at once that is two ``(B*T, V)`` float32 arrays (and their
temporaries); at Qwen2.5-VL's ``V = 152,064`` that dominates a step's memory.
Here the flattened token axis is cut into chunks of ``chunk_size`` tokens and
``jax.lax.map`` runs :func:`pgpo_core.token_visual_dependency` on one chunk at a
time, so the working memory is ``O(chunk_size * V)``.
:func:`dependency_from_hidden_states` goes further and never forms the full
logits: each chunk's logits are made from the last hidden states and the LM head
inside the loop.

Shapes stay static: there are ``ceil(N / chunk_size)`` windows of exactly
``chunk_size`` tokens; the last window starts at ``N - chunk_size`` instead of
being padded (it overlaps its predecessor, whose rows it recomputes identically),
so no padded copy of the inputs is ever made.

Ye et al., "Not All Tokens See Equally: Perception-Grounded Policy Optimization
for Large Vision-Language Models", arXiv 2604.01840 (2026).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

import pgpo_core
from pgpo_core import validation

from pgpo_jax import _validate


def _as_bits(x: Any) -> Any:
    if (jax.default_backend() == "cpu" and jnp.issubdtype(x.dtype, jnp.floating)
            and jnp.finfo(x.dtype).bits < 32):
        return jax.lax.bitcast_convert_type(x, jnp.uint16)
    return x


def _from_bits(x: Any, dtype: Any) -> Any:
    return jax.lax.bitcast_convert_type(x, dtype) if x.dtype != dtype else x


def _map_token_chunks(chunk_fn: Callable[..., Any], n: int, chunk_size: int,
                      *rows: Any) -> Any:
    """``chunk_fn`` over windows of ``chunk_size`` rows of the ``(n, ...)`` arrays ``rows``.

    ``chunk_fn`` maps ``chunk_size`` rows of each array to ``(chunk_size,)`` values.
    Returns the ``(n,)`` values, each row taken from the first window that holds it.
    """
    size = min(chunk_size, n)
    count = -(-n // size)
    starts = jnp.minimum(jnp.arange(count, dtype=jnp.int32) * size, n - size)

    # On CPU, XLA upcasts a half-precision array that a loop slices to float32 *before*
    # the loop, a full-size float32 copy that undoes the chunking; there the rows travel
    # as raw 16-bit integers and become floats again per window (one 16-bit copy).
    dtypes = [r.dtype for r in rows]
    rows = [_as_bits(r) for r in rows]

    def one_window(start):
        window = [jax.lax.dynamic_slice_in_dim(r, start, size, axis=0) for r in rows]
        return chunk_fn(*(_from_bits(w, d) for w, d in zip(window, dtypes)))

    values = jax.lax.map(one_window, starts)  # (count, size)
    overlap = count * size - n  # rows of the last window already covered by the one before
    return jnp.concatenate([jnp.reshape(values[: count - 1], (-1,)), values[count - 1, overlap:]])


def _core_kl(z_visual: Any, z_blind: Any, mask: Any, temperature: float) -> Any:
    """:func:`pgpo_core.token_visual_dependency` on one ``(C, V)`` chunk."""
    return pgpo_core.token_visual_dependency(z_visual[None], z_blind[None], mask[None],
                                             temperature=temperature)[0]


@functools.partial(jax.jit, static_argnames=("chunk_size", "temperature"))
def _chunked(logits_visual, logits_blind, response_mask, *, chunk_size, temperature):
    batch, length, vocab = logits_visual.shape
    n = batch * length
    out_dtype = validation.compute_dtype(jnp, logits_visual.dtype)
    if n == 0:
        return jnp.zeros((batch, length), dtype=out_dtype)
    kl = _map_token_chunks(
        lambda zv, zb, m: _core_kl(zv, zb, m, temperature), n, chunk_size,
        jnp.reshape(logits_visual, (n, vocab)), jnp.reshape(logits_blind, (n, vocab)),
        jnp.reshape(response_mask, (n,)))
    return jnp.reshape(kl, (batch, length))


def token_visual_dependency_chunked(
    logits_visual: jax.Array,
    logits_blind: jax.Array,
    response_mask: jax.Array,
    *,
    chunk_size: int,
    temperature: float = 1.0,
) -> jax.Array:
    """Exact ``S_t = KL(pi_I || pi_0)`` (Eq. 1) from the two passes' logits, a chunk at a time.

    Each chunk is computed by :func:`pgpo_core.token_visual_dependency` (stable
    log-softmax, float32 for half-precision input); ``jax.lax.map`` runs the chunks,
    so the float32 temporaries are ``O(chunk_size * V)``. Same numbers as the core on
    the whole array; differentiable like it. Jitted, ``chunk_size`` and ``temperature``
    static; ``jax.vmap``-able.

    Args:
      logits_visual: ``(B, T, V)`` logits of the pass with the image, ``[b, t]``
        predicting response token ``t``.
      logits_blind: ``(B, T, V)`` logits of the blind pass, same dtype.
      response_mask: ``(B, T)`` boolean, True on response tokens.
      chunk_size: tokens per chunk (a positive Python int); need not divide ``B * T``.
      temperature: sampling temperature of both distributions (> 0).

    Returns:
      ``(B, T)`` float32 (float64 for float64 input) dependencies, >= 0, 0 on padding.
    """
    validation.namespace(logits_visual=logits_visual, logits_blind=logits_blind,
                      response_mask=response_mask)
    validation.check_logits(jnp, logits_visual, logits_blind, response_mask)
    validation.check_chunk_size(chunk_size)
    validation.check_positive("temperature", temperature)
    out = _chunked(logits_visual, logits_blind, response_mask, chunk_size=chunk_size,
                   temperature=temperature)
    if _validate.concrete(logits_visual, logits_blind, response_mask):
        validation.check_kl_finite("logits_visual/logits_blind", jnp, out,
                                jnp.asarray(response_mask))
    return out


@functools.partial(jax.jit, static_argnames=("chunk_size", "temperature"))
def _from_hidden(hidden_visual, hidden_blind, lm_head, lm_head_bias, response_mask, *,
                 chunk_size, temperature):
    batch, length, width = hidden_visual.shape
    n = batch * length
    dtype = validation.compute_dtype(jnp, jnp.result_type(hidden_visual.dtype, lm_head.dtype))
    if n == 0:
        return jnp.zeros((batch, length), dtype=dtype)

    def chunk_kl(h_visual, h_blind, mask):
        # (C, H) @ (H, V), accumulated in float32 (or float64): one chunk of logits at a time.
        z_visual = jnp.matmul(h_visual, lm_head, preferred_element_type=dtype)
        z_blind = jnp.matmul(h_blind, lm_head, preferred_element_type=dtype)
        if lm_head_bias is not None:
            bias = lm_head_bias.astype(dtype)
            z_visual, z_blind = z_visual + bias, z_blind + bias
        return _core_kl(z_visual, z_blind, mask, temperature)

    kl = _map_token_chunks(chunk_kl, n, chunk_size, jnp.reshape(hidden_visual, (n, width)),
                           jnp.reshape(hidden_blind, (n, width)),
                           jnp.reshape(response_mask, (n,)))
    return jax.lax.stop_gradient(jnp.reshape(kl, (batch, length)))


def dependency_from_hidden_states(
    hidden_visual: jax.Array,
    hidden_blind: jax.Array,
    lm_head: jax.Array,
    response_mask: jax.Array,
    *,
    chunk_size: int,
    temperature: float = 1.0,
    lm_head_bias: jax.Array | None = None,
) -> jax.Array:
    """Exact ``S_t = KL(pi_I || pi_0)`` (Eq. 1) from last hidden states, never forming ``(T, V)``.

    For each chunk of ``chunk_size`` tokens: ``logits = hidden @ lm_head (+ bias)`` (float32
    accumulation for bf16/f16 inputs), then :func:`pgpo_core.token_visual_dependency`
    on that chunk. Peak extra memory is ``O(chunk_size * V)`` instead of ``O(B * T * V)``.
    The result is wrapped in ``jax.lax.stop_gradient``: ``S`` is a constant for the
    optimiser (computed once per rollout batch with the rollout policy).

    Args:
      hidden_visual: ``(B, T, H)`` final hidden states (after the final norm) of the pass
        with the image, ``[b, t]`` predicting response token ``t``.
      hidden_blind: ``(B, T, H)`` the same for the blind pass, same dtype.
      lm_head: ``(H, V)`` output projection (a tied embedding ``E`` of shape ``(V, H)``
        is passed as ``E.T``).
      response_mask: ``(B, T)`` boolean, True on response tokens.
      chunk_size: tokens per chunk (a positive Python int); need not divide ``B * T``.
      temperature: sampling temperature of both distributions (> 0).
      lm_head_bias: ``(V,)`` bias of the output projection, if it has one.

    Returns:
      ``(B, T)`` float32 (float64 for float64 input) dependencies, >= 0, 0 on padding,
      without gradient.
    """
    validation.namespace(hidden_visual=hidden_visual, hidden_blind=hidden_blind, lm_head=lm_head,
                      lm_head_bias=lm_head_bias, response_mask=response_mask)
    validation.check_ndim("hidden_visual", hidden_visual, 3)
    validation.check_same_shape("hidden_blind", hidden_blind, "hidden_visual", hidden_visual)
    validation.check_floating("hidden_visual", jnp, hidden_visual)
    if hidden_blind.dtype != hidden_visual.dtype:
        raise TypeError(f"hidden_blind: dtype {hidden_blind.dtype} differs from "
                        f"hidden_visual's {hidden_visual.dtype}")
    validation.check_ndim("lm_head", lm_head, 2)
    validation.check_floating("lm_head", jnp, lm_head)
    if lm_head.shape[0] != hidden_visual.shape[2]:
        raise ValueError(f"lm_head: shape {tuple(lm_head.shape)} must be (H, V) with H = "
                         f"{hidden_visual.shape[2]}, the hidden size of hidden_visual "
                         "(pass a tied (V, H) embedding transposed)")
    if lm_head_bias is not None:
        validation.check_floating("lm_head_bias", jnp, lm_head_bias)
        if tuple(lm_head_bias.shape) != (lm_head.shape[1],):
            raise ValueError(f"lm_head_bias: shape {tuple(lm_head_bias.shape)} must be (V,) = "
                             f"({lm_head.shape[1]},), the vocabulary of lm_head")
    validation.check_response_mask(jnp, response_mask, hidden_visual.shape[:2], "hidden_visual")
    validation.check_chunk_size(chunk_size)
    validation.check_positive("temperature", temperature)
    out = _from_hidden(hidden_visual, hidden_blind, lm_head, lm_head_bias, response_mask,
                       chunk_size=chunk_size, temperature=temperature)
    if _validate.concrete(hidden_visual, hidden_blind, lm_head, lm_head_bias, response_mask):
        validation.check_kl_finite("hidden_visual/hidden_blind/lm_head", jnp, out,
                                jnp.asarray(response_mask))
    return out
