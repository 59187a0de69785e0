"""The gradient probe on the tiny model, on a hand-built rollout batch with known answers."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _tiny_run import tiny_args  # noqa: E402

import pgpo_core  # noqa: E402
from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.config import load_config  # noqa: E402
from reference_impl.policy.distributed import DistEnv  # noqa: E402
from reference_impl.experiments.probe_gradients import probe_checkpoint, summarize_gradients  # noqa: E402
from reference_impl.rollout.batch import teacher_forced_batch  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = load_config(tiny_args(tmp_path_factory.mktemp("probe"), "train.total_steps=1"))
    trainer = trainer_mod.Trainer(cfg, DistEnv())
    examples = trainer.heldout.sample(2)
    batch = teacher_forced_batch(
        trainer.processor, [e.prompt for e in examples] * 2, [e.image for e in examples] * 2,
        ["<think>red: 3.</think> \\boxed{5}", "<think>so 4</think> \\boxed{4}",
         "<think>blue: 1. 1+2=3.</think> \\boxed{3}", "no"])
    advantages = torch.tensor([1.0, -0.5, 0.25, -0.75])
    # Every draw returns this same batch: the probe's answer is then known exactly.
    trainer.collect = lambda: rl_step_mod.Collected(batch, advantages, None, {})
    return trainer, batch, advantages


def _independent_gradient(trainer, batch, token_adv):
    """- sum_{i,t} A~ log pi(o_t) / #tokens, from the model's logits (not the trainer's
    log-prob function)."""
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    logits = trainer.model(**batch.model_inputs()).logits.float()
    p, t = batch.prompt_length, batch.response_mask.shape[1]
    logp = torch.log_softmax(logits[:, p - 1:p - 1 + t], -1).gather(
        -1, batch.responses[..., None]).squeeze(-1)
    mask = batch.response_mask
    loss = -(token_adv * logp * mask).sum() / mask.sum()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(q)).flatten()
                      for g, q in zip(grads, params)]).double().numpy()


def test_probe_gradients_on_a_known_batch(setup):
    trainer, batch, advantages = setup
    base = pgpo_core.PGPOConfig.ablation("base")
    settings = {"dapo": (pgpo_core.PGPOConfig(), False), "pgpo": (pgpo_core.PGPOConfig(), True),
                "pgpo_base": (base, True)}
    out = probe_checkpoint(trainer, settings, batches=3)
    mask = batch.response_mask
    for name, g in out.items():
        assert g["grad"].shape[0] == 3
        # The parts add up to the whole gradient, exactly.
        assert (g["visual"] + g["other"] == g["grad"]).all()
    # DAPO: A broadcast over the tokens, compared with an independent route.
    expected = _independent_gradient(trainer, batch, advantages[:, None] * mask)
    got = out["dapo"]["grad"][0]
    assert abs(got - expected).max() <= 1e-5 * abs(expected).max()
    # tau = 0, beta = 0 is the base algorithm: the same gradient as DAPO.
    assert abs(out["pgpo_base"]["grad"] - out["dapo"]["grad"]).max() <= 1e-6 * abs(got).max()
    # PGPO: A~ = A * w~ from the core on the exact dependency.
    with torch.no_grad():
        dependency = trainer.pgpo_advantages(batch, advantages,
                                              trainer.pgpo.replace(estimator="exact")).dependency
    shaped = pgpo_core.reshape_advantages(advantages, dependency, mask)
    expected = _independent_gradient(trainer, batch, shaped)
    assert abs(out["pgpo"]["grad"][0] - expected).max() <= 1e-5 * abs(expected).max()
    # The same batch every time: no noise, every batch gradient points at the mean.
    s = summarize_gradients(**{k: out["pgpo"][k] for k in ("visual", "other")},
                            grads=out["pgpo"]["grad"])
    assert s["snr"]["estimate"] == float("inf") or s["snr"]["estimate"] > 1e8
    assert s["cosine"]["estimate"] == pytest.approx(1.0)


def test_probe_stops_when_no_draw_is_informative(setup):
    trainer, batch, advantages = setup
    real = trainer.collect
    trainer.collect = lambda: rl_step_mod.Collected(None, None, None, {})
    try:
        out = probe_checkpoint(trainer, {"dapo": (pgpo_core.PGPOConfig(), False)}, batches=2)
    finally:
        trainer.collect = real
    assert out["dapo"]["grad"].shape[0] == 0
    assert summarize_gradients(out["dapo"]["grad"], out["dapo"]["visual"],
                               out["dapo"]["other"]) == {"batches": 0}
