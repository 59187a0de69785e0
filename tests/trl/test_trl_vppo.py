"""pgpo_torch.trl's VPPO (VPPOConfig, VPPOTrainer) end to end on CPU, as PGPO's tests do.

The same tiny runs as ``test_trl_pgpo.py`` (2 prompts x 2 completions, 2 optimizer
steps on one rollout batch). The dependency is checked against the independent route of
that file with every patch blacked out (``vppo.patch_drop_prob=1``: the perturbed pass
sees a black image), the advantages against ``pgpo_core.vppo_advantages`` of that
dependency, and the loss TRL computes from them against VPPO's loss written out by hand
(dual clip at 3, filtered tokens in the divisor).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import trl

import pgpo_core
from pgpo_torch.blind_pass import BlindPassConfig
from pgpo_torch.trl import PGPOConfig, VPPOConfig, VPPOTrainer
from test_trl_pgpo import (_args, _dataset, _model, _reference_dependency, _reward, _train,
                           Recorder, one_torch_thread, processor)  # noqa: F401 (fixtures)

COMMON = dict(report_to=[], use_cpu=True)


class VPPORecorder(Recorder):
    """:class:`Recorder` for :class:`VPPOTrainer`'s rollout output."""

    def __init__(self, monkeypatch):
        super().__init__(monkeypatch)
        vppo_generate = VPPOTrainer._generate_and_score_completions

        def record_vppo(trainer, inputs):
            out = vppo_generate(trainer, inputs)
            self.pgpo_outputs.append({k: v.detach().clone() if isinstance(v, torch.Tensor)
                                      else v for k, v in out.items()})
            return out

        monkeypatch.setattr(VPPOTrainer, "_generate_and_score_completions", record_vppo)


# ---------------------------------------------------------------------------- config


def test_config_defaults_are_vppos_published_recipe(tmp_path):
    args = VPPOConfig(output_dir=str(tmp_path), **COMMON)
    assert isinstance(args, trl.GRPOConfig)
    assert (args.loss_type, args.epsilon, args.epsilon_high, args.beta, args.delta) == \
        ("dapo", 0.2, 0.28, 0.0, 3.0)
    assert args.vppo == pgpo_core.VPPOConfig()  # TRL's clip range and delta are the recipe's
    assert args.vppo.loss_kwargs() == dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0,
                                           aggregation="token-mean")
    assert args.blind_pass == BlindPassConfig(mode="blacken", blacken_probability=0.5)
    dep = args.dependency_config()
    assert (dep.estimator, dep.estimate_clip, dep.temperature) == ("k3", 10.0, args.temperature)


def test_nested_vppo_config_takes_objects_dicts_json_and_trl_settings(tmp_path):
    common = dict(output_dir=str(tmp_path), **COMMON)
    expected = pgpo_core.VPPOConfig(top_p=0.2, clip_low=0.1, clip_high=0.3, dual_clip=2.5)
    trl_side = dict(epsilon=0.1, epsilon_high=0.3, delta=2.5)
    for given in (pgpo_core.VPPOConfig(top_p=0.2), {"top_p": 0.2}, '{"top_p": 0.2}'):
        assert VPPOConfig(**common, **trl_side, vppo=given).vppo == expected
    # No two-sided clipping in TRL: no dual clip in VPPO's config either.
    assert VPPOConfig(**common, delta=None).vppo.dual_clip is None
    # The perturbation's probability is declared once, in vppo; the blind pass follows it.
    args = VPPOConfig(**common, vppo={"patch_drop_prob": 0.6})
    assert args.blind_pass == BlindPassConfig(mode="blacken", blacken_probability=0.6)
    assert VPPOConfig(**common, blind_pass="drop").blind_pass == BlindPassConfig(mode="drop")
    parsed, = trl.TrlParser((VPPOConfig,)).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_cpu", "--report_to", "none",
         "--vppo", '{"top_p": 0.3}'])
    assert parsed.vppo.top_p == 0.3 and parsed.blind_pass.mode == "blacken"
    dumped = json.loads(parsed.to_json_string())
    assert dumped["vppo"]["top_p"] == 0.3 and dumped["blind_pass"]["mode"] == "blacken"


@pytest.mark.parametrize("settings, error, match", [
    (dict(vppo={"top_p": 0.0}), ValueError, r"^vppo\.top_p: must be > 0"),
    (dict(vppo={"scale_min": 2.0}), ValueError, r"^vppo\.scale_min"),
    (dict(vppo={"estimator": "exact"}), ValueError, r"^vppo\.estimator: must be one of"),
    (dict(vppo={"top": 0.3}), ValueError, r"^vppo\.top: unknown field of VPPOConfig"),
    (dict(vppo={"clip_high": 0.3}), ValueError,
     r"^vppo\.clip_high: TRL's epsilon_high sets it .*set epsilon_high instead"),
    (dict(vppo={"dual_clip": 2.0}), ValueError, r"^vppo\.dual_clip: TRL's delta sets it"),
    (dict(vppo={"aggregation": "seq-mean-token-sum"}), ValueError,
     r"^vppo\.aggregation: not used by TRL's loss"),
    (dict(delta=0.5), ValueError, r"^delta:"),
    (dict(blind_pass={"mode": "blacken", "blacken_probability": 0.6}), ValueError,
     r"^blind_pass\.blacken_probability: VPPO blackens patches with vppo\.patch_drop_prob"),
    (dict(use_liger_loss=True), ValueError, r"^use_liger_loss: VPPO cannot run"),
    (dict(loss_type="cispo", epsilon_high=5.0), ValueError,
     r"^delta: TRL's loss_type 'cispo' does not apply it"),
])
def test_config_errors_name_the_field(tmp_path, settings, error, match):
    with pytest.raises(error, match=match):
        VPPOConfig(output_dir=str(tmp_path), **COMMON, **settings)


def test_trainer_refuses_other_configs_text_data_and_other_patch_sizes(tmp_path, processor):
    model = _model(processor)
    with pytest.raises(TypeError, match=r"^args: VPPOTrainer needs a pgpo_torch.trl.VPPOConfig"):
        VPPOTrainer(model=model, reward_funcs=_reward, args=_args(tmp_path),
                    train_dataset=_dataset(), processing_class=processor)
    with pytest.raises(ValueError, match=r"^train_dataset: VPPO needs images"):
        VPPOTrainer(model=model, reward_funcs=_reward,
                    args=_args(tmp_path, config_class=VPPOConfig),
                    train_dataset=_dataset(images_per_row=0), processing_class=processor)
    with pytest.raises(ValueError, match=r"^vppo\.patch_size: the vision tower's patches are "
                                         r"14 px"):
        VPPOTrainer(model=model, reward_funcs=_reward,
                    args=_args(tmp_path, config_class=VPPOConfig, vppo={"patch_size": 16}),
                    train_dataset=_dataset(), processing_class=processor)
    assert not isinstance(_args(tmp_path), VPPOConfig)
    assert not isinstance(_args(tmp_path, config_class=VPPOConfig), PGPOConfig)


def test_a_batch_without_images_gets_trls_advantages_on_every_token(tmp_path, processor):
    """S = 0 everywhere (no image): VPPO's filter would keep each response's first
    ceil(0.4 |o|) tokens (ties go to the earlier token); the trainer gives every token
    TRL's advantage instead, as PGPO's unit weights do."""
    trainer = VPPOTrainer(model=_model(processor), reward_funcs=_reward,
                          args=_args(tmp_path, config_class=VPPOConfig),
                          train_dataset=_dataset(), processing_class=processor)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    adv = torch.tensor([1.0, -2.0])
    zeros = torch.zeros(mask.shape)
    token_adv, extra, stats = trainer._token_advantages(adv, zeros, mask, has_images=False)
    torch.testing.assert_close(token_adv, torch.where(mask, adv[:, None], 0.0))
    assert torch.equal(extra["vppo_token_mask"], mask) and bool((extra["vppo_scale"] == 1).all())
    assert float(stats["kept_frac"]) == 1.0
    filtered, _, _ = trainer._token_advantages(adv, zeros, mask, has_images=True)
    assert int((filtered != 0).sum()) == 2 + 2  # what the filter alone would have done


# ---------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_training_runs_on_vppo_advantages_and_vppos_loss(tmp_path, monkeypatch, processor):
    rec = VPPORecorder(monkeypatch)
    args = _args(tmp_path, config_class=VPPOConfig, vppo={"patch_drop_prob": 1.0},
                 max_completion_length=12)
    model = _model(processor)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _train(VPPOTrainer, model, processor, args)

    assert trainer.state.global_step == 2
    assert len(rec.trl_outputs) == len(rec.pgpo_outputs) == 1 and len(rec.loss_inputs) == 2
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    raw, out = rec.trl_outputs[0], rec.pgpo_outputs[0]
    mask = raw["completion_mask"].bool()
    torch.testing.assert_close(out["pgpo_sequence_advantages"], raw["advantages"], rtol=0, atol=0)
    # The dependency: k3 against a black image (every patch blacked out), clamped at 10.
    reference = _reference_dependency(processor, raw, estimator="k3",
                                      temperature=args.temperature, blind="black-image")
    assert reference[mask].max() > 1e-4
    torch.testing.assert_close(out["pgpo_dependency"], reference.clamp(max=10.0),
                               rtol=1e-3, atol=1e-6)

    # The advantages are vppo_advantages of TRL's advantages and that dependency, once
    # over the rollout batch.
    shaped = pgpo_core.vppo_advantages(raw["advantages"], out["pgpo_dependency"], mask,
                                       top_p=0.4, scale_min=0.9)
    torch.testing.assert_close(out["advantages"], shaped.advantages.float(), rtol=0, atol=0)
    torch.testing.assert_close(out["vppo_scale"], shaped.scale, rtol=0, atol=0)
    assert torch.equal(out["vppo_token_mask"], shaped.token_mask)
    lengths = mask.sum(-1)
    assert torch.equal(shaped.token_mask.sum(-1), torch.ceil(0.4 * lengths - 1e-6).long())
    filtered = mask & ~shaped.token_mask
    assert bool(filtered.any()) and bool((out["advantages"][filtered] == 0).all())
    assert bool((out["advantages"][shaped.token_mask & (raw["advantages"] != 0)[:, None]]
                 != 0).all())
    # TRL's completion mask is untouched: the filtered tokens stay in the loss's count.
    for batch in rec.loss_inputs:
        assert bool(batch["completion_mask"].bool().sum() > batch["vppo_token_mask"].sum())

    # VPPO's diagnostics reach TRL's logs, computed on this batch.
    logged = trainer.state.log_history[0]
    stats = pgpo_core.vppo_diagnostics(out["pgpo_dependency"], mask, scale=shaped.scale,
                                       token_mask=shaped.token_mask)
    for name, value in stats.items():
        assert logged[f"vppo/{name}"] == pytest.approx(float(value), rel=1e-6), name
    assert not any(k.startswith("pgpo/") for k in logged)

    # TRL's loss on these advantages is VPPO's: with every ratio far above both clip
    # bounds (the old log-probs moved down by 20 nats), a token with A < 0 costs -3 A (the
    # dual clip, TRL's delta), one with A > 0 costs -1.28 A (the upper clip), a filtered
    # token 0; the sum is divided by all completion tokens of the generation batch, the
    # filtered ones included (a DAPO token-mean over the 2 steps it is split into).
    batch = dict(rec.loss_inputs[0])
    batch["old_per_token_logps"] = batch["old_per_token_logps"] - 20.0
    adv = batch["advantages"]
    step_mask = batch["completion_mask"].bool()
    per_token = torch.where(adv < 0, -3.0 * adv, -1.28 * adv)
    expected = float((per_token * step_mask).sum()) / (float(mask.sum()) / 2)
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, batch)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert trainer.current_gradient_accumulation_steps == 1 and args.steps_per_generation == 2


@pytest.mark.slow
def test_the_default_perturbation_blackens_about_half_the_patches(tmp_path, monkeypatch,
                                                                  processor):
    """The recipe's pass (each patch black with probability 0.5): a dependency in
    [0, 10], between none and the all-black pass's, and a step that trains."""
    rec = VPPORecorder(monkeypatch)
    import pgpo_torch.trl as trl_module

    seeds = []  # the masks' generator: (seed, step, process) of each scoring pass
    real = trl_module.blacken_generator
    monkeypatch.setattr(trl_module, "blacken_generator",
                        lambda *a, **k: seeds.append(a) or real(*a, **k))
    args = _args(tmp_path, config_class=VPPOConfig, max_steps=1)
    trainer = _train(VPPOTrainer, _model(processor), processor, args)
    assert trainer.state.global_step == 1
    assert seeds and seeds[0] == (args.seed, 0, 0)  # each process its own masks
    out, raw = rec.pgpo_outputs[0], rec.trl_outputs[0]
    mask = raw["completion_mask"].bool()
    dep = out["pgpo_dependency"]
    assert float(dep[mask].min()) >= 0.0 and float(dep[mask].max()) <= 10.0
    assert float(dep[mask].max()) > 0.0 and bool((dep[~mask] == 0).all())
    black = _reference_dependency(processor, raw, estimator="k3",
                                  temperature=args.temperature, blind="black-image")
    assert not torch.allclose(dep, black.clamp(max=10.0), rtol=1e-3, atol=1e-6)
