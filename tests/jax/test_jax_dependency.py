"""Chunked exact KL (Eq. 1): same numbers as pgpo_core, bounded memory, jit/vmap/grad."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax_test_data import ragged_mask

import pgpo_core
import pgpo_jax

B, T, V, H = 3, 7, 33, 6  # B * T = 21 tokens: no chunk size below tried divides it


def _logits(seed: int, shape=(B, T, V), scale: float = 2.0):
    rng = np.random.default_rng(seed)
    visual = rng.normal(0.0, scale, size=shape)
    blind = visual + rng.normal(0.0, scale / 2, size=shape)
    return visual, blind, ragged_mask(rng, shape[0], shape[1])


@pytest.mark.parametrize("chunk_size,temperature,x64", [(5, 1.0, False), (8, 0.7, True),
                                                         (64, 1.0, False)],
                         ids=["21=4x5+1", "21=2x8+5-x64", "chunk>tokens"])
def test_chunked_equals_core_unchunked_for_ragged_chunk_counts(chunk_size, temperature, x64,
                                                               set_x64):
    set_x64(x64)
    visual, blind, mask = _logits(0)
    dtype = jnp.float64 if x64 else jnp.float32
    got = pgpo_jax.token_visual_dependency_chunked(
        jnp.asarray(visual, dtype=dtype), jnp.asarray(blind, dtype=dtype), jnp.asarray(mask),
        chunk_size=chunk_size, temperature=temperature)
    assert got.dtype == dtype and got.shape == (B, T)
    ref_np = pgpo_core.token_visual_dependency(visual, blind, mask, temperature=temperature)
    ref_torch = pgpo_core.token_visual_dependency(torch.asarray(visual), torch.asarray(blind),
                                                  torch.asarray(mask), temperature=temperature)
    tol = dict(rtol=1e-12, atol=1e-14) if x64 else dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(got), ref_np, **tol)
    np.testing.assert_allclose(np.asarray(got), ref_torch.numpy(), **tol)
    assert (np.asarray(got)[~mask] == 0).all() and (np.asarray(got)[mask] > 0).all()


def test_hand_worked_kl_from_logits_and_from_hidden_states():
    # pi_I = (1/2, 1/2), pi_0 = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3).
    visual = jnp.zeros((1, 2, 2), dtype=jnp.float32)
    blind = jnp.asarray([[[0.0, math.log(3.0)], [5.0, -5.0]]], dtype=jnp.float32)
    mask = jnp.asarray([[True, False]])
    want = [[0.5 * math.log(4.0 / 3.0), 0.0]]
    got = pgpo_jax.token_visual_dependency_chunked(visual, blind, mask, chunk_size=1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    # Hidden states with an identity LM head are the logits themselves.
    got = pgpo_jax.dependency_from_hidden_states(visual, blind, jnp.eye(2, dtype=jnp.float32),
                                                 mask, chunk_size=1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def _hidden(seed: int, dtype):
    rng = np.random.default_rng(seed)
    hv = rng.normal(size=(B, T, H))
    hb = hv + rng.normal(0.0, 0.5, size=(B, T, H))
    head = rng.normal(0.0, 1.0, size=(H, V))
    mask = ragged_mask(rng, B, T)
    return [jnp.asarray(a, dtype=dtype) for a in (hv, hb, head)] + [jnp.asarray(mask)]


def test_hidden_states_bf16_are_computed_in_float32_and_match_core():
    hv, hb, head, mask = _hidden(1, jnp.bfloat16)
    got = pgpo_jax.dependency_from_hidden_states(hv, hb, head, mask, chunk_size=4,
                                                 temperature=0.8)
    assert got.dtype == jnp.float32
    # Reference: the core on full float64 logits of the same (bf16-rounded) numbers.
    f64 = lambda a: np.asarray(a.astype(jnp.float32), dtype=np.float64)  # noqa: E731
    ref = pgpo_core.token_visual_dependency(f64(hv) @ f64(head), f64(hb) @ f64(head),
                                            np.asarray(mask), temperature=0.8)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)
    # bf16 logits go through the float32 path too (as 16-bit rows inside the loop on CPU).
    zv, zb = (hv @ head).astype(jnp.bfloat16), (hb @ head).astype(jnp.bfloat16)
    got = pgpo_jax.token_visual_dependency_chunked(zv, zb, mask, chunk_size=4, temperature=0.8)
    assert got.dtype == jnp.float32
    ref = pgpo_core.token_visual_dependency(f64(zv), f64(zb), np.asarray(mask), temperature=0.8)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)


def test_hidden_states_match_the_torch_adapter_with_a_head_bias():
    import pgpo_torch

    hv, hb, head, mask = _hidden(8, jnp.float32)
    bias = jnp.asarray(np.random.default_rng(9).normal(size=V), dtype=jnp.float32)
    got = pgpo_jax.dependency_from_hidden_states(hv, hb, head, mask, chunk_size=5,
                                                 temperature=1.3, lm_head_bias=bias)
    t = lambda a: torch.asarray(np.array(a))  # noqa: E731
    want = pgpo_torch.dependency_from_hidden_states(
        t(hv), t(hb), t(head).T, t(mask), temperature=1.3, chunk_size=4, lm_head_bias=t(bias))
    assert want.dtype == torch.float32
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-5, atol=1e-6)
    # and the bias matters (the test would notice it being dropped)
    unbiased = pgpo_jax.dependency_from_hidden_states(hv, hb, head, mask, chunk_size=5,
                                                      temperature=1.3)
    assert np.abs(np.asarray(unbiased) - np.asarray(got)).max() > 1e-3


def test_hidden_state_dependency_has_no_gradient_and_logits_one_matches_core_gradient():
    hv, hb, head, mask = _hidden(2, jnp.float32)
    grads = jax.jit(jax.grad(lambda h, w: pgpo_jax.dependency_from_hidden_states(
        h, hb, w, mask, chunk_size=4).sum(), argnums=(0, 1)))(hv, head)
    assert all((np.asarray(g) == 0).all() for g in grads)
    # The logits-level function stays differentiable, like the core it calls.
    zv, zb = hv @ head, hb @ head
    chunked = jax.jit(jax.grad(lambda z: pgpo_jax.token_visual_dependency_chunked(
        z, zb, mask, chunk_size=4).sum()))(zv)
    core = jax.jit(jax.grad(lambda z: pgpo_core.token_visual_dependency(z, zb, mask).sum()))(zv)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(core), rtol=1e-5, atol=1e-7)
    assert np.abs(np.asarray(core)).max() > 1e-3


def test_vmap_over_stacked_batches_equals_a_loop():
    stacks = [_hidden(seed, jnp.float32) for seed in (3, 4, 5)]
    hv, hb, mask = (jnp.stack([s[i] for s in stacks]) for i in (0, 1, 3))
    head = stacks[0][2]
    fn = functools.partial(pgpo_jax.dependency_from_hidden_states, chunk_size=5)
    batched = jax.vmap(fn, in_axes=(0, 0, None, 0))(hv, hb, head, mask)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(fn(hv[i], hb[i], head,
                                                                          mask[i])),
                                   rtol=1e-6, atol=1e-7)


def test_chunking_bounds_compiled_temporary_memory():
    """A memory property of the compiled programs (deterministic), not a timing."""
    b, t, h, v, chunk = 4, 128, 16, 2048, 32  # 512 tokens: full logits are 4 MiB per pass
    rng = np.random.default_rng(6)
    hv = jnp.asarray(rng.normal(size=(b, t, h)), dtype=jnp.float32)
    hb = jnp.asarray(rng.normal(size=(b, t, h)), dtype=jnp.float32)
    head = jnp.asarray(rng.normal(0.0, 0.3, size=(h, v)), dtype=jnp.float32)
    mask = jnp.asarray(ragged_mask(rng, b, t))

    def naive(hv, hb, head, mask):
        return pgpo_core.token_visual_dependency(hv @ head, hb @ head, mask)

    def from_hidden(hv, hb, head, mask):
        return pgpo_jax.dependency_from_hidden_states(hv, hb, head, mask, chunk_size=chunk)

    def from_logits(zv, zb, mask):
        return pgpo_jax.token_visual_dependency_chunked(zv, zb, mask, chunk_size=chunk)

    def temp_bytes(fn, *args):
        compiled = jax.jit(fn).lower(*args).compile()
        return compiled.memory_analysis().temp_size_in_bytes, compiled(*args)

    full_logits = b * t * v * 4
    naive_bytes, want = temp_bytes(naive, hv, hb, head, mask)
    hidden_bytes, got_hidden = temp_bytes(from_hidden, hv, hb, head, mask)
    logits_bytes, got_logits = temp_bytes(from_logits, hv @ head, hb @ head, mask)
    assert naive_bytes >= 2 * full_logits  # both passes' logits exist at once
    assert hidden_bytes < naive_bytes / 4, (hidden_bytes, naive_bytes)
    assert hidden_bytes < full_logits / 2  # not even one pass's logits
    assert logits_bytes < naive_bytes / 4, (logits_bytes, naive_bytes)
    np.testing.assert_allclose(np.asarray(got_hidden), np.asarray(want), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_logits), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_bad_input_names_the_argument():
    hv, hb, head, mask = _hidden(7, jnp.float32)
    with pytest.raises(ValueError, match="^chunk_size: must be a positive int"):
        pgpo_jax.dependency_from_hidden_states(hv, hb, head, mask, chunk_size=0)
    with pytest.raises(ValueError, match="^lm_head: shape"):
        pgpo_jax.dependency_from_hidden_states(hv, hb, head.T, mask, chunk_size=4)
    with pytest.raises(TypeError, match="^hidden_blind: dtype"):
        pgpo_jax.dependency_from_hidden_states(hv, hb.astype(jnp.bfloat16), head, mask,
                                               chunk_size=4)
    with pytest.raises(ValueError, match="^lm_head_bias: shape"):
        pgpo_jax.dependency_from_hidden_states(hv, hb, head, mask, chunk_size=4,
                                               lm_head_bias=head[:, 0])
    with pytest.raises(ValueError, match="^response_mask: shape"):
        pgpo_jax.token_visual_dependency_chunked(hv, hb, mask[:, :-1], chunk_size=4)
    with pytest.raises(ValueError, match="^temperature: must be > 0"):
        pgpo_jax.token_visual_dependency_chunked(hv, hb, mask, chunk_size=4, temperature=0.0)
    with pytest.raises(ValueError, match="^logits_visual/logits_blind: the KL is NaN or inf"):
        pgpo_jax.token_visual_dependency_chunked(hv.at[0, 0, 0].set(jnp.nan), hb, mask,
                                                 chunk_size=4)
