"""compute_pgpo_advantages and PGPOLoss on the tiny Qwen2.5-VL, against the core by hand."""

from __future__ import annotations

import math

import pytest
import torch

import pgpo_core
from pgpo_core import PGPOConfig
from pgpo_torch import (
    PGPOLoss,
    compute_pgpo_advantages,
    response_token_logprobs,
    visual_and_blind_outputs,
    visual_inputs,
)

QUESTIONS = ("How many triangles are there?", "Area?", "x", "What is shown?")
SIZES = [(56, 56), (84, 112), (56, 84), (56, 56)]
REWARDS = torch.tensor([1.0, 0.0, 1.0, 0.0])
GROUPS = torch.tensor([0, 0, 1, 1])


@pytest.fixture
def rollout(tiny_processor, rollout_factory):
    g = torch.Generator().manual_seed(5)
    responses = [torch.randint(0, 500, (n,), generator=g).tolist() for n in (6, 3, 8, 5)]
    return rollout_factory(tiny_processor, QUESTIONS, responses, image_sizes=SIZES)


def test_tau0_beta0_gives_group_advantages_broadcast(tiny_model, rollout):
    batch, T, rmask = rollout
    out = compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                  config=PGPOConfig.ablation("base"))
    # Two groups of two, rewards (1, 0): mean 1/2, unbiased std sqrt(1/2).
    a = 0.5 / (math.sqrt(0.5) + 1e-6)  # (1 - 1/2) / (std + eps)
    expected = torch.tensor([a, -a, a, -a]).unsqueeze(1) * rmask
    torch.testing.assert_close(out.token_advantages, expected, rtol=1e-6, atol=1e-7)
    assert torch.equal(out.weights, rmask.float())
    assert torch.equal(out.response_mask, rmask)
    assert out.diagnostics["reward_mean"] == 0.5
    assert out.diagnostics["frac_groups_all_equal"] == 0.0
    assert out.diagnostics["weight_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("blind", ["drop", "mask"])
def test_exact_dependency_equals_core_kl_on_full_logits(tiny_model, rollout, blind):
    batch, T, rmask = rollout
    config = PGPOConfig(chunk_size=5)
    out = compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                  config=config, blind=blind, return_logprobs=True)
    with torch.no_grad():
        lv, lb = visual_and_blind_outputs(tiny_model, batch, response_length=T, blind=blind)
    expected = pgpo_core.token_visual_dependency(lv, lb, rmask)
    # float32: logits differ in the last bit between chunked and full matmuls, and the KL
    # sums V terms of size O(1), so its absolute rounding is ~1e-6.
    torch.testing.assert_close(out.dependency, expected, rtol=1e-5, atol=1e-6)
    assert torch.all(out.dependency[rmask] > 0)
    # Reshaping is the core's, on the core's group advantages and the returned S (Eq. 5's
    # min-max scaling amplifies S's float32 rounding, so S itself is compared above).
    adv = pgpo_core.group_advantages(REWARDS, GROUPS).advantages
    torch.testing.assert_close(out.advantages, adv)
    torch.testing.assert_close(
        out.token_advantages,
        pgpo_core.reshape_advantages(adv, out.dependency, rmask, **config.weight_kwargs()))
    torch.testing.assert_close(
        out.weights, pgpo_core.token_weights(out.dependency, rmask, **config.weight_kwargs()))
    # Eq. 7: mass conserved per response, sum_t A~ = |o| A.
    torch.testing.assert_close(out.token_advantages.sum(1), rmask.sum(1) * adv,
                               rtol=1e-5, atol=1e-5)
    # logp_old: the visual pass's log-probs of the response tokens.
    tokens = batch["input_ids"][:, -T:]
    logp = torch.log_softmax(lv, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out.old_logprobs, logp, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_sampled_estimators_use_the_generated_tokens(tiny_model, rollout, estimator):
    batch, T, rmask = rollout
    config = PGPOConfig(estimator=estimator, temperature=0.8)
    adv = torch.tensor([0.5, -1.0, 2.0, 0.0])
    out = compute_pgpo_advantages(tiny_model, batch, response_length=T, advantages=adv,
                                  config=config)
    with torch.no_grad():
        lv, lb = visual_and_blind_outputs(tiny_model, batch, response_length=T)
    tokens = batch["input_ids"][:, -T:].unsqueeze(-1)
    logp_v = torch.log_softmax(lv / 0.8, -1).gather(-1, tokens).squeeze(-1)
    logp_b = torch.log_softmax(lb / 0.8, -1).gather(-1, tokens).squeeze(-1)
    log_r = torch.where(rmask, logp_b - logp_v, 0.0)
    by_hand = -log_r if estimator == "k1" else torch.exp(log_r) - 1 - log_r
    by_hand = torch.where(rmask, by_hand.clamp_min(0.0), 0.0)
    torch.testing.assert_close(out.dependency, by_hand, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.old_logprobs, logp_v, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.advantages, adv)
    assert torch.all(out.token_advantages[3] == 0)  # A = 0 stays 0


def test_bad_arguments(tiny_model, rollout):
    batch, T, _ = rollout
    with pytest.raises(ValueError, match="rewards"):
        compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                advantages=REWARDS)
    with pytest.raises(ValueError, match="rewards"):
        compute_pgpo_advantages(tiny_model, batch, response_length=T)
    with pytest.raises(ValueError, match="group_ids"):
        compute_pgpo_advantages(tiny_model, batch, REWARDS, response_length=T)
    with pytest.raises(ValueError, match="blind"):
        compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                blind="blank")
    with pytest.raises(TypeError, match="config"):
        compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                config={"tau": 0.4})
    with pytest.raises(ValueError, match="response_mask"):
        compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                response_mask=torch.ones(4, T + 1, dtype=torch.bool))


def test_loss_matches_core_and_gradient_is_minus_token_advantage(tiny_model, rollout):
    batch, T, rmask = rollout
    config = PGPOConfig()
    result = compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, response_length=T,
                                     config=config, return_logprobs=True)
    loss_fn = PGPOLoss(config)
    logp = response_token_logprobs(tiny_model, visual_inputs(batch), response_length=T)
    torch.testing.assert_close(logp.detach(), result.old_logprobs, rtol=1e-5, atol=1e-5)
    # On-policy (logp == logp_old): ratio 1, inside the clip range, so the token-mean
    # loss is -mean(A~) and d loss / d logp_t = -A~_t / N on response tokens.
    leaf = logp.detach().clone().requires_grad_(True)
    loss, metrics = loss_fn(leaf, leaf.detach(), result.token_advantages, rmask)
    n_tokens = int(rmask.sum())
    torch.testing.assert_close(loss, -result.token_advantages.sum() / n_tokens)
    loss.backward()
    torch.testing.assert_close(leaf.grad, -result.token_advantages / n_tokens)
    assert metrics["clip_frac"] == 0 and not metrics["ratio_mean"].requires_grad
    core_loss, _ = pgpo_core.policy_loss(leaf, leaf.detach(), result.token_advantages, rmask,
                                         **config.loss_kwargs())
    torch.testing.assert_close(loss, core_loss)
    # Gradients reach the model's parameters through the loss.
    tiny_model.zero_grad()
    loss2, _ = loss_fn(logp, result.old_logprobs, result.token_advantages, rmask)
    loss2.backward()
    grad = tiny_model.lm_head.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    tiny_model.zero_grad(set_to_none=True)
    with pytest.raises(TypeError, match="config"):
        PGPOLoss({"clip_low": 0.2})


@pytest.mark.parametrize("estimator", ["exact", "k3"])
def test_timer_sees_each_phase_and_changes_nothing(tiny_model, rollout, estimator):
    """``timer``: the visual pass, the blind pass and the reshaping each run inside their
    named context, in that order; the result is the same as without it."""
    import contextlib

    batch, T, _ = rollout
    config = PGPOConfig(estimator=estimator)
    seen = []

    @contextlib.contextmanager
    def timer(name):
        seen.append(name)
        yield

    kwargs = dict(response_length=T, config=config, return_logprobs=True)
    timed = compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, timer=timer, **kwargs)
    plain = compute_pgpo_advantages(tiny_model, batch, REWARDS, GROUPS, **kwargs)
    assert seen == ["old_logprobs", "blind_pass", "old_logprobs", "blind_pass", "advantages"]
    for field in ("token_advantages", "dependency", "weights", "old_logprobs"):
        assert torch.equal(getattr(timed, field), getattr(plain, field)), field
    assert timed.diagnostics == plain.diagnostics
