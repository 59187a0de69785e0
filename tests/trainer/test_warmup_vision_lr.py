"""The warm-up's own learning rate for the vision tower (model.sft_warmup_vision_lr): which
parameters get it, and the collapse it prevents (docs/evidence.md, "Why some warm-ups
never learned to perceive")."""

import pytest
import torch

from reference_impl.config import ConfigError, load_config
from reference_impl.data.datasets import build_datasets
from reference_impl.loop.trainer import _seed_everything
from reference_impl.policy.model import build_policy
from reference_impl.loop.warmup import supervised_warmup, warmup_optimizer
from reference_impl.rollout.batch import encode_prompts


def _policy(seed=0):
    cfg = load_config([f"train.seed={seed}", "train.output_dir=unused"],
                      check_environment=False)
    _seed_everything(seed)
    model, processor = build_policy(cfg, torch.device("cpu"))
    return cfg, model, processor


def test_the_vision_tower_and_only_it_gets_the_vision_rate():
    _, model, _ = _policy()
    opt = warmup_optimizer(model, lr=3e-3, vision_lr=3e-4)
    other, vision = opt.param_groups
    assert (other["lr"], vision["lr"]) == (3e-3, 3e-4)
    assert {id(p) for p in vision["params"]} == {id(p) for p in model.model.visual.parameters()}
    assert {id(p) for p in other["params"]} == {
        id(p) for n, p in model.named_parameters() if not n.startswith("model.visual.")}
    assert other["weight_decay"] == vision["weight_decay"] == 0.0
    # Without a vision rate both groups run at lr; a frozen tower leaves its group empty.
    assert [g["lr"] for g in warmup_optimizer(model, lr=1e-3).param_groups] == [1e-3, 1e-3]
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    assert warmup_optimizer(model, lr=1e-3, vision_lr=1e-4).param_groups[1]["params"] == []


def test_bad_rates_name_the_argument_and_the_field():
    _, model, _ = _policy()
    with pytest.raises(ValueError, match="vision_lr"):
        warmup_optimizer(model, lr=1e-3, vision_lr=0.0)
    with pytest.raises(ConfigError, match="model.sft_warmup_vision_lr"):
        load_config(["model.sft_warmup_vision_lr=-1e-4"])
    assert load_config([]).model.sft_warmup_vision_lr == 3e-4
    assert load_config(["model.sft_warmup_vision_lr=none"]).model.sft_warmup_vision_lr is None


def _image_features_after_warmup(vision_lr, steps=10):
    """Mean norm of the vision tower's output tokens (the image embeddings the language
    model reads) and the share of their energy that is not one shared vector, after
    ``steps`` warm-up steps of 8 chain examples (seed 0), with the text embeddings' mean
    norm for scale."""
    cfg, model, processor = _policy()
    train, heldout = build_datasets(cfg)
    opt = warmup_optimizer(model, lr=cfg.model.sft_warmup_lr, vision_lr=vision_lr)
    supervised_warmup(model, processor, train.sample, optimizer=opt, steps=steps,
                      batch_size=8, grad_clip=1.0, device=torch.device("cpu"))
    examples = [heldout[i] for i in range(8)]
    inputs = encode_prompts(processor, [e.prompt for e in examples],
                            [e.image for e in examples], system_prompt=None, device="cpu")
    with torch.no_grad():
        out = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        out = getattr(out, "pooler_output", out)
        f = torch.cat(list(out), 0) if isinstance(out, (list, tuple)) else out
        text = model.model.language_model.embed_tokens.weight.norm(dim=1).mean()
    spread = ((f - f.mean(0)) ** 2).sum(1).mean() / (f ** 2).sum(1).mean()
    return f.norm(dim=1).mean().item(), spread.item(), text.item()


def test_the_lower_vision_rate_keeps_the_image_embeddings_from_collapsing():
    """At the language model's 3e-3, ten Adam steps blow the image embeddings up from
    about 1 to about 15 (the text embeddings stay at about 0.17) while the share of their
    energy that differs between tokens falls from about 5 % to under 2 %: one shared
    direction, which the language model's RMSNorm then leaves as nearly the same key and
    value for every image token. At the default 3e-4 they stay near 1 and keep about
    7.5 % (measured: 15.0 / 1.7 % against 1.09 / 7.6 %)."""
    norm_same, spread_same, text = _image_features_after_warmup(vision_lr=None)
    norm_low, spread_low, _ = _image_features_after_warmup(vision_lr=3e-4)
    assert text == pytest.approx(0.167, abs=0.01)
    assert norm_same > 10 and spread_same < 0.025
    assert norm_low < 1.5 and spread_low > 0.06


def test_the_trainer_builds_its_warmup_optimizer_with_both_rates(tmp_path):
    import os
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from _tiny_run import tiny_args

    from reference_impl.loop.trainer import Trainer
    from reference_impl.policy.distributed import DistEnv

    cfg = load_config(tiny_args(tmp_path, "model.sft_warmup_steps=1",
                                "model.sft_warmup_vision_lr=2e-4"))
    trainer = Trainer(cfg, DistEnv())
    other, vision = trainer.warmup_optimizer.param_groups
    assert (other["lr"], vision["lr"]) == (3e-3, 2e-4)
    assert {id(p) for p in vision["params"]} == {
        id(p) for p in trainer.policy.model.visual.parameters()}


def test_warmup_targets_longer_than_a_response_are_said_once():
    cfg, model, processor = _policy()
    train, _ = build_datasets(cfg)
    opt = warmup_optimizer(model, lr=cfg.model.sft_warmup_lr)
    with pytest.warns(RuntimeWarning, match=r"warm-up targets up to \d+ tokens \(step 1\) are "
                                            r"longer than rollout\.max_response_length=5") as got:
        supervised_warmup(model, processor, train.sample, optimizer=opt, steps=2, batch_size=2,
                          grad_clip=1.0, device=torch.device("cpu"), max_response_length=5)
    assert len([w for w in got if "warm-up targets" in str(w.message)]) == 1
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        supervised_warmup(model, processor, train.sample, optimizer=opt, steps=1,
                          batch_size=2, grad_clip=1.0, device=torch.device("cpu"),
                          max_response_length=cfg.rollout.max_response_length)
