"""pgpo_torch.trl end to end on CPU: TRL's GRPO loop with the tiny offline Qwen2.5-VL.

Each run trains 2 optimizer steps on one rollout batch (2 prompts x 2 completions,
``steps_per_generation=2``, so the blind pass runs in two row chunks and TRL computes old
log-probs). The rollout happens at the model's initial weights, so a fresh model built with
the same seed recomputes every token's dependency by an independent route: one row at a
time, without padding, full logits from the model's ordinary forward (visual pass) and from
the text tokens alone at their original mRoPE positions (blind pass), then pgpo_core on the
full logits.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trl
from datasets import Dataset
from PIL import Image

import pgpo_core
from pgpo_torch.blind_pass import BlindPassConfig
from pgpo_torch.tiny import build_tiny_model, build_tiny_processor
from pgpo_torch.trl import PGPOConfig, PGPOTrainer

QUESTIONS = ("What is shown in the image?", "How many triangles are there?")
SIZES = ((56, 56), (84, 112))  # 4 and 12 visual tokens
MODEL_SEED = 0


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny matrices gain nothing from intra-op threads, and on a busy 2-core machine the
    threads' synchronisation makes each op ~100x slower. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


def _image(seed: int, height: int, width: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def _dataset(images_per_row: int = 1) -> Dataset:
    """Two conversational prompts with 0, 1 ("image" column) or more ("images") images."""
    columns = {"prompt": [[{"role": "user", "content": q}] for q in QUESTIONS]}
    if images_per_row == 1:
        columns["image"] = [_image(i, *hw) for i, hw in enumerate(SIZES)]
    elif images_per_row > 1:
        columns["images"] = [[_image(10 * i + j, *SIZES[(i + j) % 2])
                              for j in range(images_per_row)] for i in range(len(QUESTIONS))]
    return Dataset.from_dict(columns)


def _reward(completions, **kwargs):
    """Deterministic and varied: the completion's character codes summed, modulo 7."""
    return [float(sum(map(ord, c[-1]["content"])) % 7) for c in completions]


def _model(processor):
    model = build_tiny_model(processor, seed=MODEL_SEED)
    # Many end-of-sequence ids, so completions stop early at different lengths (right padding).
    eos = processor.tokenizer.eos_token_id
    model.generation_config.eos_token_id = [eos, *range(200, 240)]
    model.train()
    return model


def _args(tmp_path, config_class=PGPOConfig, **overrides):
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_generations=2,
        steps_per_generation=2, max_completion_length=8, max_steps=2, learning_rate=5e-2,
        report_to=[], use_cpu=True, logging_steps=1, save_strategy="no", seed=7,
        dataloader_num_workers=0, loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=0.0,
        gradient_checkpointing=False,
    )
    settings.update(overrides)
    return config_class(**settings)


class Recorder:
    """Records TRL's own rollout output, PGPO's output, and every batch the loss receives."""

    def __init__(self, monkeypatch):
        self.trl_outputs, self.pgpo_outputs, self.loss_inputs = [], [], []
        trl_generate = trl.GRPOTrainer._generate_and_score_completions
        pgpo_generate = PGPOTrainer._generate_and_score_completions
        compute_loss = trl.GRPOTrainer._compute_loss

        def record_trl(trainer, inputs):
            out = trl_generate(trainer, inputs)
            self.trl_outputs.append(_clone(out))
            return out

        def record_pgpo(trainer, inputs):
            out = pgpo_generate(trainer, inputs)
            self.pgpo_outputs.append(_clone(out))
            return out

        def record_loss(trainer, model, inputs):
            self.loss_inputs.append(_clone(inputs))
            return compute_loss(trainer, model, inputs)

        monkeypatch.setattr(trl.GRPOTrainer, "_generate_and_score_completions", record_trl)
        monkeypatch.setattr(PGPOTrainer, "_generate_and_score_completions", record_pgpo)
        monkeypatch.setattr(trl.GRPOTrainer, "_compute_loss", record_loss)


def _clone(batch):
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _train(trainer_class, model, processor, args, images_per_row: int = 1):
    trainer = trainer_class(model=model, reward_funcs=_reward, args=args,
                            train_dataset=_dataset(images_per_row), processing_class=processor)
    trainer.train()
    return trainer


@torch.no_grad()
def _reference_dependency(processor, out, *, estimator: str, temperature: float,
                          blind: str = "text-only") -> torch.Tensor:
    """Independent S for a rollout batch taken at the initial weights (see module doc).

    ``blind="text-only"``: the blind pass sees the text tokens alone at their original
    positions; ``"black-image"``: the same sequence with an all-black image of the same
    size, through the processor.
    """
    model = build_tiny_model(processor, seed=MODEL_SEED)
    image_token = model.config.image_token_id
    patches = out["image_grid_thw"].prod(-1)
    image_bounds = np.cumsum([0, *out["num_images"]])
    patch_bounds = np.cumsum([0, *patches.tolist()])
    reference = torch.zeros(out["completion_ids"].shape, dtype=torch.float32)
    for row in range(out["completion_ids"].shape[0]):
        prompt = out["prompt_ids"][row][out["prompt_mask"][row].bool()]
        n = int(out["completion_mask"][row].sum())
        completion = out["completion_ids"][row][:n]
        ids = torch.cat([prompt, completion])
        visual_token = ids == image_token
        first_image, end_image = image_bounds[row], image_bounds[row + 1]
        grid = out["image_grid_thw"][first_image:end_image]
        pixels = out["pixel_values"][patch_bounds[first_image]:patch_bounds[end_image]]
        types = visual_token.long()[None]
        logits_visual = model(input_ids=ids[None], pixel_values=pixels, image_grid_thw=grid,
                              mm_token_type_ids=types).logits[0]
        positions, _ = model.model.get_rope_index(ids[None], types, image_grid_thw=grid,
                                                  attention_mask=torch.ones_like(ids)[None])
        p = len(prompt)
        if blind == "text-only":
            text = ~visual_token
            logits_blind = model(input_ids=ids[text][None],
                                 position_ids=positions[:, :, text]).logits[0]
            p_blind = p - int(visual_token.sum())
        else:
            black = processor.image_processor(
                images=[Image.new("RGB", (int(w) * 14, int(h) * 14)) for _, h, w in grid],
                return_tensors="pt")
            assert torch.equal(black["image_grid_thw"], grid)
            logits_blind = model(input_ids=ids[None], pixel_values=black["pixel_values"],
                                 image_grid_thw=grid, mm_token_type_ids=types).logits[0]
            p_blind = p
        z_visual = logits_visual[p - 1:p - 1 + n] / temperature
        z_blind = logits_blind[p_blind - 1:p_blind - 1 + n] / temperature
        mask = torch.ones((1, n), dtype=torch.bool)
        if estimator == "exact":
            s = pgpo_core.token_visual_dependency(z_visual[None], z_blind[None], mask)
        else:
            logp_visual = torch.log_softmax(z_visual, -1).gather(1, completion[:, None]).T
            logp_blind = torch.log_softmax(z_blind, -1).gather(1, completion[:, None]).T
            s = pgpo_core.sampled_token_dependency(logp_visual, logp_blind, mask,
                                                   estimator=estimator)
        reference[row, :n] = s[0]
    return reference


def _matching_row(batch, prompt_ids, completion_ids) -> int:
    for row in range(batch["completion_ids"].shape[0]):
        if torch.equal(batch["completion_ids"][row], completion_ids) and \
                torch.equal(batch["prompt_ids"][row], prompt_ids):
            return row
    raise AssertionError("a batch row reaching the loss is not in the rollout batch")


# ---------------------------------------------------------------------------- config


def test_config_defaults_follow_the_paper(tmp_path):
    args = PGPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    assert isinstance(args, trl.GRPOConfig)
    assert (args.loss_type, args.epsilon, args.epsilon_high, args.beta) == ("dapo", 0.2, 0.28, 0.0)
    assert args.pgpo == pgpo_core.PGPOConfig(tau=0.4, beta=2.0, estimator="exact",
                                             clip_low=0.2, clip_high=0.28,
                                             temperature=args.temperature)
    assert args.blind_pass == BlindPassConfig(mode="drop", blacken_probability=0.5)
    assert args.use_liger_loss is False


def test_nested_configs_take_objects_dicts_json_and_trl_settings(tmp_path):
    common = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    expected = pgpo_core.PGPOConfig(tau=0.3, estimator="k3", temperature=0.7, clip_low=0.1,
                                    clip_high=0.3)
    trl_side = dict(temperature=0.7, epsilon=0.1, epsilon_high=0.3)
    for given in (pgpo_core.PGPOConfig(tau=0.3, estimator="k3"), {"tau": 0.3, "estimator": "k3"},
                  '{"tau": 0.3, "estimator": "k3"}'):
        assert PGPOConfig(**common, **trl_side, pgpo=given).pgpo == expected
    # epsilon_high=None: TRL clips symmetrically, and so does the core config.
    assert PGPOConfig(**common, epsilon=0.1, epsilon_high=None).pgpo.clip_high == 0.1
    for given in (BlindPassConfig(mode="blacken", blacken_probability=0.6),
                  {"mode": "blacken", "blacken_probability": 0.6},
                  '{"mode": "blacken", "blacken_probability": 0.6}'):
        assert PGPOConfig(**common, blind_pass=given).blind_pass == \
            BlindPassConfig(mode="blacken", blacken_probability=0.6)
    assert PGPOConfig(**common, blind_pass="mask").blind_pass == BlindPassConfig(mode="mask")
    # TRL's argument parser reads them as JSON strings; its JSON dump writes them as dicts.
    parsed, = trl.TrlParser((PGPOConfig,)).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_cpu", "--report_to", "none",
         "--pgpo", '{"tau": 0.25}', "--blind_pass", "mask"])
    assert parsed.pgpo.tau == 0.25 and parsed.blind_pass.mode == "mask"
    dumped = json.loads(parsed.to_json_string())
    assert dumped["pgpo"]["tau"] == 0.25 and dumped["blind_pass"]["mode"] == "mask"


@pytest.mark.parametrize("settings, error, match", [
    (dict(pgpo={"tau": 1.5}), ValueError, r"^pgpo\.tau: must lie in \[0.0, 1.0\]"),
    (dict(pgpo={"beta": -1.0}), ValueError, r"^pgpo\.beta: must be >= 0"),
    (dict(pgpo={"estimator": "k4"}), ValueError, r"^pgpo\.estimator: must be one of"),
    (dict(pgpo={"threshold": "median"}), ValueError, r"^pgpo\.threshold: must be one of"),
    (dict(pgpo={"chunk_size": 0}), ValueError, r"^pgpo\.chunk_size: must be a positive int"),
    (dict(pgpo={"conserve_mass": 1}), TypeError, r"^pgpo\.conserve_mass: expected a bool"),
    (dict(pgpo={"tua": 0.3}), ValueError, r"^pgpo\.tua: unknown field of PGPOConfig"),
    (dict(pgpo="{tau: 0.3}"), ValueError, r"^pgpo: not a JSON object"),
    (dict(pgpo=0.3), TypeError, r"^pgpo: expected a PGPOConfig, a dict or a JSON string"),
    (dict(pgpo={"clip_high": 0.3}), ValueError,
     r"^pgpo\.clip_high: TRL's epsilon_high sets it .*set epsilon_high instead"),
    (dict(pgpo={"temperature": 0.5}), ValueError, r"^pgpo\.temperature: TRL's temperature"),
    (dict(pgpo={"aggregation": "seq-mean-token-sum"}), ValueError,
     r"^pgpo\.aggregation: not used by TRL's loss"),
    (dict(epsilon=1.5), ValueError, r"^epsilon: must lie in"),
    (dict(blind_pass="blur"), ValueError, r"^blind_pass\.mode: must be one of 'drop'"),
    (dict(blind_pass={"mode": "blacken", "blacken_probability": 1.5}), ValueError,
     r"^blind_pass\.blacken_probability: must be a number in \[0, 1\]"),
])
def test_config_errors_name_the_field(tmp_path, settings, error, match):
    with pytest.raises(error, match=match):
        PGPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **settings)


def test_liger_loss_is_refused_with_a_clear_message(tmp_path, processor):
    message = r"use_liger_loss: PGPO cannot run with Liger's fused GRPO loss, which takes one " \
              r"advantage per sequence"
    with pytest.raises(ValueError, match=message):
        PGPOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, use_liger_loss=True)
    args = _args(tmp_path)
    args.use_liger_loss = True  # set after construction: the trainer checks again
    with pytest.raises(ValueError, match=message):
        PGPOTrainer(model=_model(processor), reward_funcs=_reward, args=args,
                    train_dataset=_dataset(), processing_class=processor)


def test_setups_without_images_or_pgpo_config_are_refused(tmp_path, processor):
    model = _model(processor)
    with pytest.raises(ValueError, match=r"^processing_class: PGPO needs images, but a text-only "
                                         r"tokenizer"):
        PGPOTrainer(model=model, reward_funcs=_reward, args=_args(tmp_path),
                    train_dataset=_dataset(), processing_class=processor.tokenizer)
    with pytest.raises(ValueError, match=r"^train_dataset: PGPO needs images, but the dataset has "
                                         r"no 'image' or 'images' column"):
        PGPOTrainer(model=model, reward_funcs=_reward, args=_args(tmp_path),
                    train_dataset=_dataset(images_per_row=0), processing_class=processor)
    with pytest.raises(TypeError, match=r"^args: PGPOTrainer needs a pgpo_torch.trl.PGPOConfig"):
        PGPOTrainer(model=model, reward_funcs=_reward,
                    args=_args(tmp_path, config_class=trl.GRPOConfig),
                    train_dataset=_dataset(), processing_class=processor)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    text_model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(processor.tokenizer), hidden_size=16, intermediate_size=32,
        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match=r"^model: PGPOTrainer supports qwen2_5_vl .* got "
                                         r"model_type 'qwen2'"):
        PGPOTrainer(model=text_model, reward_funcs=_reward, args=_args(tmp_path),
                    train_dataset=_dataset(), processing_class=processor)


def test_masked_blind_pass_with_flash_attention_is_refused(tmp_path, processor):
    model = _model(processor)
    model.config._attn_implementation = "flash_attention_2"  # refused before any forward
    with pytest.raises(ValueError, match=r"^blind_pass\.mode: 'mask' needs a 4-D attention "
                                         r"mask.*'flash_attention_2'"):
        PGPOTrainer(model=model, reward_funcs=_reward,
                    args=_args(tmp_path, blind_pass="mask"),
                    train_dataset=_dataset(), processing_class=processor)


# ---------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("estimator, blind, images_per_row", [
    ("exact", "drop", 1), ("k3", "mask", 2)])
def test_training_runs_and_the_loss_sees_pgpo_advantages(tmp_path, monkeypatch, processor,
                                                         estimator, blind, images_per_row):
    rec = Recorder(monkeypatch)
    # The first case keeps TRL's default gradient checkpointing (the passes switch it off).
    args = _args(tmp_path, pgpo={"estimator": estimator, "chunk_size": 5}, blind_pass=blind,
                 gradient_checkpointing=estimator == "exact")
    model = _model(processor)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _train(PGPOTrainer, model, processor, args, images_per_row)

    # Training ran: 2 optimizer steps on one rollout batch, finite losses, weights moved.
    assert trainer.state.global_step == 2
    assert len(rec.trl_outputs) == len(rec.pgpo_outputs) == 1 and len(rec.loss_inputs) == 2
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))

    raw, out = rec.trl_outputs[0], rec.pgpo_outputs[0]
    assert raw["num_images"] == [images_per_row] * 4
    mask = raw["completion_mask"].bool()
    lengths = mask.sum(-1)
    assert lengths.min() < lengths.max()  # right padding is exercised
    assert out["advantages"].shape == mask.shape and raw["advantages"].shape == mask.shape[:1]
    torch.testing.assert_close(out["pgpo_sequence_advantages"], raw["advantages"], rtol=0, atol=0)

    # The dependency is KL(pi_I || pi_0) of the rollout policy (or its k3 estimate).
    reference = _reference_dependency(processor, raw, estimator=estimator,
                                      temperature=args.temperature)
    assert reference[mask].max() > 1e-4  # the image matters to the tiny model
    # float32: padded batched passes and unpadded single-row passes differ by ~1e-6 in the
    # logits, and so does a KL between two near-identical distributions.
    torch.testing.assert_close(out["pgpo_dependency"], reference, rtol=1e-3, atol=1e-6)

    # The advantages are Eq. 8 of TRL's advantages and that dependency. (Checked on the
    # recorded dependency: Eq. 5 min-max normalises S per response, which multiplies S's
    # float32 noise by 1 / (max S - min S), ~1e3 here.)
    weight_kwargs = args.pgpo.weight_kwargs()
    expected = pgpo_core.reshape_advantages(raw["advantages"], out["pgpo_dependency"], mask,
                                            **weight_kwargs)
    torch.testing.assert_close(out["advantages"], expected, rtol=0, atol=0)
    # ... which is not TRL's advantage repeated over the tokens.
    spread = [out["advantages"][r][mask[r]].std() for r in range(mask.shape[0])
              if raw["advantages"][r] != 0 and lengths[r] > 2]
    assert len(spread) >= 2 and min(spread) > 1e-2

    # Those exact (B, T) advantages are what TRL's loss receives, batch after batch.
    for batch in rec.loss_inputs:
        assert batch["advantages"].shape == batch["completion_ids"].shape
        for i in range(batch["completion_ids"].shape[0]):
            row = _matching_row(out, batch["prompt_ids"][i], batch["completion_ids"][i])
            torch.testing.assert_close(batch["advantages"][i], out["advantages"][row],
                                       rtol=0, atol=0)

    # PGPO's diagnostics reach TRL's logs, computed on this batch.
    logged = trainer.state.log_history[0]
    stats = pgpo_core.weight_diagnostics(out["pgpo_dependency"], mask, **weight_kwargs)
    assert set(stats) <= {k[len("pgpo/"):] for k in logged if k.startswith("pgpo/")}
    for name, value in stats.items():
        assert logged[f"pgpo/{name}"] == pytest.approx(float(value), rel=1e-6)
    assert logged["pgpo/dependency_mean"] == pytest.approx(float(reference[mask].mean()),
                                                           rel=1e-3)
    assert logged["pgpo/weight_mean"] == pytest.approx(1.0, abs=1e-6)  # Eq. 7


@pytest.mark.slow
@pytest.mark.parametrize("loss_type, extra", [
    ("grpo", {}), ("bnpo", {}), ("dr_grpo", {}), ("cispo", {"epsilon_high": 5.0}),
    ("sapo", {}), ("vespo", {}), ("luspo", {"importance_sampling_level": "sequence"}),
])
def test_every_trl_loss_type_trains_on_token_advantages(tmp_path, monkeypatch, processor,
                                                         loss_type, extra):
    rec = Recorder(monkeypatch)
    args = _args(tmp_path, loss_type=loss_type, max_steps=1, **extra)
    model = _model(processor)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _train(PGPOTrainer, model, processor, args)
    assert trainer.state.global_step == 1
    (batch,) = rec.loss_inputs
    assert batch["advantages"].shape == batch["completion_ids"].shape
    assert batch["advantages"].abs().max() > 0
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.slow
def test_blackened_blind_pass_with_every_patch_black(tmp_path, monkeypatch, processor):
    """Blind-pass mode "blacken" with probability 1: the blind pass sees a black image."""
    rec = Recorder(monkeypatch)
    args = _args(tmp_path, blind_pass=BlindPassConfig(mode="blacken", blacken_probability=1.0),
                 pgpo=pgpo_core.PGPOConfig(estimator="k3"), max_steps=1)
    trainer = _train(PGPOTrainer, _model(processor), processor, args)
    assert trainer.state.global_step == 1
    out, raw = rec.pgpo_outputs[0], rec.trl_outputs[0]
    mask = raw["completion_mask"].bool()
    reference = _reference_dependency(processor, raw, estimator="k3",
                                      temperature=args.temperature, blind="black-image")
    assert reference[mask].max() > 1e-4
    torch.testing.assert_close(out["pgpo_dependency"], reference, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(
        out["advantages"],
        pgpo_core.reshape_advantages(raw["advantages"], out["pgpo_dependency"], mask,
                                     **args.pgpo.weight_kwargs()),
        rtol=0, atol=0)


@pytest.mark.slow
def test_tau_0_beta_0_is_trl_grpo(tmp_path, monkeypatch, processor):
    """pgpo tau=0, beta=0 gives w~ = 1: the same rollouts, advantages, losses and
    weights as TRL's GRPOTrainer with the same settings."""
    rec = Recorder(monkeypatch)
    grpo_model, pgpo_model = _model(processor), _model(processor)
    grpo = _train(trl.GRPOTrainer, grpo_model, processor,
                  _args(tmp_path / "grpo", config_class=trl.GRPOConfig))
    n_loss = len(rec.loss_inputs)
    pgpo = _train(PGPOTrainer, pgpo_model, processor,
                  _args(tmp_path / "pgpo", pgpo=pgpo_core.PGPOConfig(tau=0.0, beta=0.0)))
    assert len(rec.trl_outputs) == 2 and len(rec.pgpo_outputs) == 1
    grpo_raw, pgpo_raw = rec.trl_outputs
    torch.testing.assert_close(pgpo_raw["completion_ids"], grpo_raw["completion_ids"],
                               rtol=0, atol=0)
    torch.testing.assert_close(pgpo_raw["advantages"], grpo_raw["advantages"], rtol=0, atol=0)
    mask = pgpo_raw["completion_mask"].bool()
    out = rec.pgpo_outputs[0]
    assert (out["pgpo_dependency"][mask] > 0).any()  # PGPO did run; its weights are all 1
    broadcast = torch.where(mask, pgpo_raw["advantages"][:, None], torch.zeros(()))
    torch.testing.assert_close(out["advantages"], broadcast, rtol=0, atol=0)
    for grpo_batch, pgpo_batch in zip(rec.loss_inputs[:n_loss], rec.loss_inputs[n_loss:]):
        assert grpo_batch["advantages"].ndim == 1 and pgpo_batch["advantages"].ndim == 2
        torch.testing.assert_close(pgpo_batch["completion_ids"], grpo_batch["completion_ids"],
                                   rtol=0, atol=0)
        torch.testing.assert_close(
            pgpo_batch["advantages"],
            grpo_batch["advantages"][:, None] * pgpo_batch["completion_mask"], rtol=0, atol=0)
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (grpo, pgpo)]
    assert losses[0] == losses[1]
    for a, b in zip(grpo_model.parameters(), pgpo_model.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
