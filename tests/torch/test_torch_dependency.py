"""Chunked hidden-state KL == pgpo_core's KL on the full logits (and torch's own KL)."""

from __future__ import annotations

import pytest
import torch

import pgpo_core
import pgpo_torch.dependency as dep_module
from pgpo_torch.dependency import (
    dependency_from_hidden_states,
    token_logprobs_from_hidden_states,
)

B, T, H, V = 2, 37, 16, 1000


def _inputs(dtype=torch.float32, seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    hv = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    hb = hv + 0.5 * torch.randn(B, T, H, generator=g, dtype=torch.float64)
    w = torch.randn(V, H, generator=g, dtype=torch.float64) / H**0.5 * 3
    b = torch.randn(V, generator=g, dtype=torch.float64) if bias else None
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 30:] = False  # right padding
    mask[1, 11:] = False
    cast = (lambda x: None if x is None else x.to(dtype))
    return cast(hv), cast(hb), cast(w), mask, cast(b)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_core_on_full_logits_float32(chunk_size, temperature):
    hv, hb, w, mask, b = _inputs(bias=True)
    got = dependency_from_hidden_states(hv, hb, w, mask, temperature=temperature,
                                        chunk_size=chunk_size, lm_head_bias=b)
    full = pgpo_core.token_visual_dependency(torch.nn.functional.linear(hv, w, b),
                                             torch.nn.functional.linear(hb, w, b), mask,
                                             temperature=temperature)
    assert got.dtype == torch.float32 and got.shape == (B, T)
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)
    assert torch.all(got[~mask] == 0) and torch.all(got[mask] > 0)


def test_matches_torch_distributions_kl_float64():
    """Independent route: torch.distributions' categorical KL, in float64."""
    hv, hb, w, mask, _ = _inputs(torch.float64)
    got = dependency_from_hidden_states(hv, hb, w, mask, chunk_size=16)
    p = torch.distributions.Categorical(logits=hv @ w.T)
    q = torch.distributions.Categorical(logits=hb @ w.T)
    expected = torch.where(mask, torch.distributions.kl_divergence(p, q), 0.0)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_bf16_inputs_accumulate_in_float32():
    hv, hb, w, mask, _ = _inputs(torch.bfloat16)
    got = dependency_from_hidden_states(hv, hb, w, mask, chunk_size=5)
    # Default: the logits a bf16 lm_head returns, KL by the core in float32.
    full = pgpo_core.token_visual_dependency(hv @ w.T, hb @ w.T, mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-6)
    # logits_dtype=float32: float32 logits from the bf16 hidden states and head.
    got32 = dependency_from_hidden_states(hv, hb, w, mask, chunk_size=5,
                                          logits_dtype=torch.float32)
    full32 = pgpo_core.token_visual_dependency(hv.float() @ w.float().T,
                                               hb.float() @ w.float().T, mask)
    torch.testing.assert_close(got32, full32, rtol=1e-5, atol=1e-6)


def test_calls_the_core_one_chunk_at_a_time(monkeypatch):
    hv, hb, w, mask, _ = _inputs()
    seen = []
    core = pgpo_core.token_visual_dependency

    def spy(zv, zb, m, **kwargs):
        seen.append(tuple(zv.shape))
        return core(zv, zb, m, **kwargs)

    monkeypatch.setattr(dep_module.pgpo_core, "token_visual_dependency", spy)
    dependency_from_hidden_states(hv, hb, w, mask, chunk_size=10)
    n = B * T  # 74 tokens -> 7 chunks of 10 and one of 4
    assert seen == [(1, 10, V)] * 7 + [(1, 4, V)]
    assert sum(s[1] for s in seen) == n


def test_no_grad_and_bad_inputs():
    hv, hb, w, mask, _ = _inputs()
    hv.requires_grad_(True)
    assert not dependency_from_hidden_states(hv, hb, w, mask).requires_grad
    with pytest.raises(ValueError, match="hidden_blind"):
        dependency_from_hidden_states(hv, hb[:, :-1], w, mask)
    with pytest.raises(TypeError, match="response_mask"):
        dependency_from_hidden_states(hv, hb, w, mask.long())
    with pytest.raises(ValueError, match="lm_head_weight"):
        dependency_from_hidden_states(hv, hb, w[:, :-1], mask)
    with pytest.raises(ValueError, match="chunk_size"):
        dependency_from_hidden_states(hv, hb, w, mask, chunk_size=0)
    with pytest.raises(TypeError, match="hidden_blind"):
        dependency_from_hidden_states(hv, hb.double(), w, mask)
    with pytest.raises(ValueError, match="temperature"):
        dependency_from_hidden_states(hv, hb, w, mask, temperature=0.0)
    bad = hb.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        dependency_from_hidden_states(hv, bad, w, mask)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_token_logprobs_match_full_log_softmax(temperature):
    hv, _, w, _, b = _inputs(bias=True)
    tokens = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(3))
    got = token_logprobs_from_hidden_states(hv, w, tokens, temperature=temperature,
                                            chunk_size=9, lm_head_bias=b)
    full = torch.log_softmax((hv @ w.T + b) / temperature, -1)
    expected = full.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
