"""pgpo_torch.logprobs_from_logits: the one route from logits to sampled-token log-probs."""

import math

import pytest
import torch

from pgpo_torch import logprobs_from_logits


def test_values_by_hand():
    # Logits (0, ln 3): p = (1/4, 3/4). At temperature 2: (0, ln 3 / 2), p = (1, sqrt 3)/(1 + sqrt 3).
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]], dtype=torch.float64)
    tokens = torch.tensor([[1, 0]])
    logp, entropy = logprobs_from_logits(logits, tokens, with_entropy=True)
    torch.testing.assert_close(logp, torch.tensor([[math.log(0.75), math.log(0.25)]],
                                                  dtype=torch.float64), rtol=0, atol=1e-15)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(entropy, torch.full((1, 2), h, dtype=torch.float64),
                               rtol=0, atol=1e-15)
    logp2, none = logprobs_from_logits(logits, tokens, temperature=2.0)
    assert none is None
    s = math.sqrt(3.0)
    torch.testing.assert_close(logp2, torch.tensor([[math.log(s / (1 + s)), math.log(1 / (1 + s))]],
                                                   dtype=torch.float64), rtol=0, atol=1e-15)


def test_half_precision_logits_are_upcast_and_gradients_flow():
    logits = torch.randn(2, 3, 11, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 11, (2, 3), generator=torch.Generator().manual_seed(1))
    low = logits.to(torch.bfloat16).requires_grad_(True)
    logp, _ = logprobs_from_logits(low, tokens)
    assert logp.dtype == torch.float32
    want = torch.log_softmax(low.detach().float(), -1).gather(-1, tokens[..., None])[..., 0]
    torch.testing.assert_close(logp.detach(), want, rtol=0, atol=0)
    logp.sum().backward()
    assert low.grad is not None and torch.isfinite(low.grad.float()).all()


def test_bad_arguments_name_themselves():
    logits, tokens = torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        logprobs_from_logits(logits, tokens, temperature=0.0)
    with pytest.raises(ValueError, match="tokens"):
        logprobs_from_logits(logits, tokens[:, :2])
