"""PGPORayTrainer's hooks, driven through a local stand-in for the actor worker group.

The stand-in runs the real ``ActorRolloutRefWorker.compute_log_prob`` /
``PGPOActorRolloutRefWorker.compute_pgpo_dependency`` method bodies on a real verl
``TrainingWorker`` in this process (what Ray would run in a worker), and records what
``update_actor`` receives. verl's own ``compute_advantage`` gives the base advantages.
"""

from __future__ import annotations

import types

import pytest
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.core_algos import AdvantageEstimator
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils import tensordict_utils as tu
from verl.workers.engine_workers import ActorRolloutRefWorker

import pgpo_core
from pgpo_torch.blind_pass import BlindPassConfig, visual_and_blind_outputs
from pgpo_verl import PGPOActorRolloutRefWorker, PGPORayTrainer, parse_section
from verl_rollout import build_rollout, token_log_probs

LENGTHS = (7, 3, 5, 1, 4, 6)
GROUPS = (0, 0, 0, 1, 1, 1)
REWARDS = (1.0, 0.0, 0.3, 0.0, 1.0, 1.0)


class LocalActorGroup:
    """Stand-in for the Ray worker group: the workers' method bodies, run locally."""

    def __init__(self, verl_worker):
        self._verl = verl_worker
        self._self = types.SimpleNamespace(actor=verl_worker.worker)
        self.updates = []

    def _call(self, method, *args):
        fn = getattr(method, "__wrapped__", method)
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        with self._verl.patched():
            return fn(self._self, *args)

    def compute_log_prob(self, data):
        return self._call(ActorRolloutRefWorker.compute_log_prob, data)

    def compute_pgpo_dependency(self, visual, blind):
        return self._call(PGPOActorRolloutRefWorker.compute_pgpo_dependency, visual, blind)

    def update_actor(self, data):
        self.updates.append(data)
        return tu.get_tensordict({}, non_tensor_dict={"metrics": {"mfu": 0.0, "pg_loss": 0.5}})


def _config(**pgpo):
    return OmegaConf.create(dict(
        actor_rollout_ref=dict(
            actor=dict(calculate_sum_pi_squared=False, calculate_entropy=False,
                       entropy_coeff=0.0, ppo_mini_batch_size=2, ppo_epochs=1,
                       data_loader_seed=0, shuffle=False),
            rollout=dict(temperature=1.0, n=3, multi_turn=dict(enable=False))),
        algorithm=dict(adv_estimator="grpo", norm_adv_by_std_in_grpo=True, gamma=1.0,
                       lam=1.0),
        pgpo=pgpo))


def _trainer(tiny, verl_worker, **pgpo):
    from pgpo_verl.workaround import apply_no_image_workaround

    apply_no_image_workaround()
    _, processor, _ = tiny
    trainer = PGPORayTrainer.__new__(PGPORayTrainer)  # the hooks only; no Ray, no datasets
    trainer.config = _config(**pgpo)
    trainer.processor, trainer.tokenizer = processor, processor.tokenizer
    trainer.actor_rollout_wg = LocalActorGroup(verl_worker)
    trainer.global_steps = 3  # what fit() counts; seeds VPPO's blackened patches
    trainer._init_pgpo()
    return trainer


@pytest.fixture(scope="module")
def rollout(tiny):
    model, processor, _ = tiny
    hf, data, T, rmask = build_rollout(model, processor, LENGTHS, seed=5, groups=GROUPS)
    scores = torch.zeros(rmask.shape)
    last = rmask.sum(-1) - 1
    scores[torch.arange(len(LENGTHS)), last] = torch.tensor(REWARDS)
    data.batch["token_level_rewards"] = scores
    with torch.no_grad():
        visual, blind = visual_and_blind_outputs(model, hf, response_length=T, blind="mask")
    tokens = data.batch["responses"]
    return dict(data=data, rmask=rmask, visual=visual, blind=blind,
                visual_logp=token_log_probs(visual, tokens),
                blind_logp=token_log_probs(blind, tokens))


def _after_old_log_prob(trainer, data):
    batch = DataProto(batch=data.batch.clone(), non_tensor_batch=dict(data.non_tensor_batch),
                      meta_info=dict(data.meta_info))
    old, _ = trainer._compute_old_log_prob(batch)
    return batch.union(old)


def _stock_advantages(batch, norm):
    out = compute_advantage(batch, adv_estimator=AdvantageEstimator.GRPO,
                            norm_adv_by_std_in_grpo=norm)
    return out.batch["advantages"].clone()


@pytest.mark.parametrize("norm", [True, False], ids=["grpo_dapo", "dr_grpo"])
def test_tau0_beta0_gives_stock_verl_advantages_bit_for_bit(tiny, verl_worker, rollout, norm):
    trainer = _trainer(tiny, verl_worker, tau=0.0, beta=0.0, estimator="k3")
    batch = _after_old_log_prob(trainer, rollout["data"])
    stock = _stock_advantages(batch, norm)
    assert stock.abs().max() > 0.1
    trainer._pgpo_reshape_advantages(batch)
    assert batch.batch["advantages"].dtype == stock.dtype
    assert torch.equal(batch.batch["advantages"], stock)


@pytest.mark.parametrize("estimator", ["k3", "exact"])
def test_dependency_hook_matches_the_independent_route(tiny, verl_worker, rollout, estimator):
    trainer = _trainer(tiny, verl_worker, estimator=estimator)
    batch = _after_old_log_prob(trainer, rollout["data"])
    rmask = rollout["rmask"]
    # verl's own visual log-probs are the old log-probs; the HF route agrees.
    torch.testing.assert_close(batch.batch["old_log_probs"][rmask],
                               rollout["visual_logp"][rmask], rtol=0, atol=2e-5)
    if estimator == "k3":
        expected = pgpo_core.sampled_token_dependency(rollout["visual_logp"],
                                                      rollout["blind_logp"], rmask)
    else:
        expected = pgpo_core.token_visual_dependency(rollout["visual"], rollout["blind"], rmask)
    got = batch.batch["pgpo_dependency"]
    torch.testing.assert_close(got, expected, rtol=2e-4, atol=2e-6)
    assert torch.equal(got[~rmask], torch.zeros_like(got[~rmask]))


def test_update_actor_receives_mass_conserving_pgpo_advantages(tiny, verl_worker, rollout):
    trainer = _trainer(tiny, verl_worker, estimator="k3")  # paper: tau 0.4, beta 2, k3
    batch = _after_old_log_prob(trainer, rollout["data"])
    dependency = batch.batch["pgpo_dependency"].clone()
    stock = _stock_advantages(batch, True)
    rmask = rollout["rmask"]
    output = trainer._update_actor(batch)
    sent = trainer.actor_rollout_wg.updates[-1]
    shaped = sent["advantages"]
    assert "pgpo_dependency" not in sent.keys()
    # Independent route: the core's reshaping of verl's advantages.
    expected = pgpo_core.reshape_advantages(stock, dependency, rmask, tau=0.4, beta=2.0)
    torch.testing.assert_close(shaped, expected, rtol=0, atol=0)
    # Eq. 7: mass conserved per response, sum_t A~ = |o| A.
    lengths = rmask.sum(-1).to(stock.dtype)
    torch.testing.assert_close(shaped.sum(-1), lengths * stock[:, 0], rtol=1e-5, atol=1e-6)
    # ... while the tokens are reweighted (not the base algorithm).
    assert (shaped - stock)[rmask].abs().max() > 1e-3
    metrics = output.meta_info["metrics"]
    assert metrics["actor/pg_loss"] == 0.5
    assert abs(metrics["pgpo/weight_mean"] - 1.0) < 1e-5
    assert metrics["pgpo/dependency_max"] > 0
    assert metrics["timing_s/pgpo_blind_pass"] > 0


def test_disabled_pgpo_is_stock_verl(tiny, verl_worker, rollout):
    trainer = _trainer(tiny, verl_worker, enable=False)
    batch = _after_old_log_prob(trainer, rollout["data"])
    assert "pgpo_dependency" not in batch.batch.keys()
    stock = _stock_advantages(batch, True)
    output = trainer._update_actor(batch)
    assert torch.equal(trainer.actor_rollout_wg.updates[-1]["advantages"], stock)
    assert not any(k.startswith("pgpo/") for k in output.meta_info["metrics"])


def test_config_section_is_validated(tiny, verl_worker):
    section = parse_section({"tau": 0.3, "estimator": "k3"})
    assert section.core == pgpo_core.PGPOConfig(tau=0.3, estimator="k3")
    assert section.enable and section.blind == BlindPassConfig(mode="drop")
    nested = parse_section({"blind": {"mode": "drop", "include_markers": True}})
    assert nested.blind == BlindPassConfig(mode="drop", include_markers=True)
    with pytest.raises(ValueError, match="pgpo.blind.mode"):
        parse_section({"blind": {"mode": "mask"}})
    with pytest.raises(TypeError, match="pgpo.blind.include_markers"):
        parse_section({"blind": {"include_markers": "yes"}})
    with pytest.raises(ValueError, match="pgpo.blind.includ_markers"):
        parse_section({"blind": {"includ_markers": True}})
    with pytest.raises(ValueError, match="pgpo.tau"):
        parse_section({"tau": 1.5})
    with pytest.raises(ValueError, match="pgpo.clip_high"):
        parse_section({"clip_high": 0.28})
    with pytest.raises(ValueError, match="pgpo.temperature"):
        parse_section({"temperature": 0.7})
    with pytest.raises(ValueError, match="pgpo.tua"):
        parse_section({"tua": 0.3})
    with pytest.raises(ValueError, match="pgpo.blind"):
        parse_section({"blind": "mask"})
    with pytest.raises(TypeError, match="pgpo.enable"):
        parse_section({"enable": "yes"})
    with pytest.raises(ValueError, match="pgpo.estimator"):
        parse_section({"estimator": "k4"})
    trainer = PGPORayTrainer.__new__(PGPORayTrainer)
    trainer.config = _config()
    trainer.config.algorithm.rollout_correction = {"bypass_mode": True}
    trainer.processor, trainer.tokenizer = tiny[1], tiny[1].tokenizer
    with pytest.raises(ValueError, match="bypass_mode"):
        trainer._init_pgpo()
    trainer.config = _config()
    trainer.processor = None
    with pytest.raises(ValueError, match="processor"):
        trainer._init_pgpo()


# ---------------------------------------------------------------------------- VPPO


VPPO = dict(algorithm="vppo", estimator="k3", estimate_clip=10.0)  # VPPO's recipe


def test_update_actor_receives_vppo_advantages(tiny, verl_worker, rollout):
    """pgpo.algorithm=vppo: the same dependency hook, then pgpo_core.vppo_advantages of
    verl's advantages over the whole batch (trajectory factors, top-p token filter)."""
    trainer = _trainer(tiny, verl_worker, **VPPO, vppo={"top_p": 0.4})
    batch = _after_old_log_prob(trainer, rollout["data"])
    dependency = batch.batch["pgpo_dependency"].clone()
    rmask = rollout["rmask"]
    # The dependency is VPPO's k3 estimate between the two passes, clamped at 10.
    expected_dep = pgpo_core.sampled_token_dependency(
        rollout["visual_logp"], rollout["blind_logp"], rmask, estimator="k3", clip=10.0)
    torch.testing.assert_close(dependency, torch.where(rmask, expected_dep, 0.0),
                               rtol=2e-4, atol=2e-6)
    stock = _stock_advantages(batch, True)
    output = trainer._update_actor(batch)
    sent = trainer.actor_rollout_wg.updates[-1]["advantages"]
    expected = pgpo_core.vppo_advantages(stock, dependency, rmask, top_p=0.4, scale_min=0.9)
    torch.testing.assert_close(sent, expected.advantages.to(sent.dtype), rtol=0, atol=0)
    lengths = rmask.sum(-1)
    assert torch.equal(expected.token_mask.sum(-1), torch.ceil(0.4 * lengths - 1e-6).long())
    filtered = rmask & ~expected.token_mask
    assert bool(filtered.any()) and bool((sent[filtered] == 0).all())
    assert float(expected.scale[lengths > 0].mean()) == pytest.approx(1.0, abs=1e-6)
    metrics = output.meta_info["metrics"]
    stats = pgpo_core.vppo_diagnostics(dependency, rmask, scale=expected.scale,
                                       token_mask=expected.token_mask)
    for name, value in stats.items():
        assert metrics[f"vppo/{name}"] == pytest.approx(float(value), rel=1e-6), name
    assert not any(k.startswith("pgpo/") for k in metrics)  # PGPO's weights did not act
    assert metrics["timing_s/pgpo_blind_pass"] > 0


def test_vppo_section_is_validated():
    section = parse_section({**VPPO, "vppo": {"top_p": 0.3, "scale_min": 0.8}})
    assert section.algorithm == "vppo"
    assert section.vppo == pgpo_core.VPPOConfig(top_p=0.3, scale_min=0.8)
    assert parse_section({}).algorithm == "pgpo" and parse_section({}).vppo is None
    # The Hydra defaults hold every field; PGPO accepts the vppo subsection at its defaults.
    from pgpo_verl.config import section_defaults

    defaults = section_defaults()
    assert defaults["algorithm"] == "pgpo" and defaults["vppo"]["top_p"] == 0.4
    assert parse_section(defaults).core == pgpo_core.PGPOConfig()
    assert parse_section({**defaults, **VPPO}).vppo == pgpo_core.VPPOConfig()
    for given, error, match in (
            ({"algorithm": "ppo"}, ValueError, r"^pgpo\.algorithm: must be one of"),
            ({**VPPO, "tau": 0.3}, ValueError,
             r"^pgpo\.tau: PGPO's token weighting, unused with pgpo\.algorithm=vppo"),
            ({"algorithm": "vppo"}, ValueError,
             r"^pgpo\.estimator: pgpo\.algorithm=vppo takes a sampled estimate"),
            ({**VPPO, "vppo": {"top_p": 0.0}}, ValueError, r"^pgpo\.vppo\.top_p"),
            ({**VPPO, "vppo": {"patch_drop_prob": 0.5}}, ValueError,
             r"^pgpo\.vppo\.patch_drop_prob: unknown field"),
            ({**VPPO, "vppo": 0.4}, TypeError, r"^pgpo\.vppo: expected a mapping"),
            ({**VPPO, "estimate_clip": None}, ValueError,
             r"^pgpo\.estimate_clip: VPPO clamps its dependency estimate"),
            ({"vppo": {"top_p": 0.3}}, ValueError,
             r"^pgpo\.vppo\.top_p: only used with pgpo\.algorithm=vppo")):
        with pytest.raises(error, match=match):
            parse_section(given)


@pytest.mark.parametrize("data_seed", [None, 7])
def test_vppo_blackened_pass_matches_the_independent_route(tiny, verl_worker, rollout,
                                                           data_seed):
    """pgpo.blind.mode=blacken (VPPO's perturbation): verl's stock log-prob pass on the
    rollout with patches blacked out, drawn from blacken_generator(data.seed, global
    step), gives VPPO's dependency: k3 between the Hugging Face model's log-probs on the
    images and on the same images blackened patch by patch with that generator (sample
    by sample), clamped at 10. It differs from the drop pass's."""
    from pgpo_torch.blind_pass import blacken_generator, blacken_patches, response_outputs
    from verl_rollout import build_rollout

    model, processor, _ = tiny
    trainer = _trainer(tiny, verl_worker, **VPPO, blind={"mode": "blacken"})
    trainer.config.data = {"seed": data_seed}
    assert trainer.pgpo.vppo.patch_drop_prob == 0.5 == trainer.pgpo.blind.blacken_probability
    batch = _after_old_log_prob(trainer, rollout["data"])
    rmask = rollout["rmask"]
    hf, data, T, _ = build_rollout(model, processor, LENGTHS, seed=5, groups=GROUPS)
    generator = blacken_generator(data_seed or 0, 3)  # unset -> 0; global_steps = 3
    ids = trainer._pgpo_ids
    pixels = torch.cat([blacken_patches(m["pixel_values"], p=0.5, generator=generator,
                                        image_mean=ids["image_mean"],
                                        image_std=ids["image_std"])
                        for m in data.non_tensor_batch["multi_modal_inputs"]])
    assert not torch.equal(pixels, hf["pixel_values"])
    with torch.no_grad():
        blackened = response_outputs(model, {**hf, "pixel_values": pixels}, response_length=T)
    expected = pgpo_core.sampled_token_dependency(
        rollout["visual_logp"], token_log_probs(blackened, data.batch["responses"]), rmask,
        estimator="k3", clip=10.0)
    got = batch.batch["pgpo_dependency"]
    torch.testing.assert_close(got, torch.where(rmask, expected, 0.0), rtol=2e-4, atol=2e-6)
    dropped = pgpo_core.sampled_token_dependency(
        rollout["visual_logp"], rollout["blind_logp"], rmask, estimator="k3", clip=10.0)
    assert (got - dropped)[rmask].abs().max() > 1e-3
    batch.batch["advantages"] = _stock_advantages(batch, True)
    output = trainer._update_actor(batch)
    metrics = output.meta_info["metrics"]
    assert metrics["vppo/kept_frac"] > 0
    # The share of patches blackened (168 in the batch; Binomial(168, 0.5)).
    changed = int((pixels != hf["pixel_values"]).any(-1).sum())
    assert metrics["vppo/blackened_patch_frac"] == pytest.approx(changed / 168)
    assert 0.3 < changed / 168 < 0.7


def test_blacken_blind_pass_is_validated():
    section = parse_section({**VPPO, "blind": {"mode": "blacken", "blacken_probability": 0.6}})
    assert section.blind == BlindPassConfig(mode="blacken", blacken_probability=0.6)
    assert section.vppo.patch_drop_prob == 0.6  # declared once, in pgpo.blind
    assert parse_section({"blind": "blacken", "estimator": "k3"}).blind.mode == "blacken"
    with pytest.raises(ValueError, match=r"^pgpo\.blind\.mode: blacken takes a sampled"):
        parse_section({"blind": "blacken", "estimator": "exact"})
    # A setting of the other pass is refused, not ignored.
    with pytest.raises(ValueError, match=r"^pgpo\.blind\.blacken_probability: only used"):
        parse_section({**VPPO, "blind": {"blacken_probability": 0.9}})
    with pytest.raises(ValueError, match=r"^pgpo\.blind\.include_markers: the blackened"):
        parse_section({**VPPO, "blind": {"mode": "blacken", "include_markers": True}})
    assert parse_section(VPPO).vppo.patch_drop_prob == 0.5  # the drop pass: the default


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_blacken_refuses_a_data_seed_it_cannot_use(tiny, verl_worker, seed):
    trainer = PGPORayTrainer.__new__(PGPORayTrainer)
    trainer.config = _config(**VPPO, blind="blacken")
    trainer.config.data = {"seed": seed}
    trainer.processor, trainer.tokenizer = tiny[1], tiny[1].tokenizer
    with pytest.raises(ValueError, match=r"^data\.seed: pgpo\.blind\.mode=blacken"):
        trainer._init_pgpo()
