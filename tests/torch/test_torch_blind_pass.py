"""Blind-pass builders on the tiny Qwen2.5-VL: (a) == (b), alignment, layout, blackening."""

from __future__ import annotations

import types

import pytest
import torch

from pgpo_torch.blind_pass import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    BlindPassConfig,
    blacken_generator,
    blacken_patches,
    blind_inputs,
    drop_visual_tokens,
    mask_visual_attention,
    mrope_position_ids,
    response_outputs,
    visual_and_blind_outputs,
    visual_inputs,
)

QUESTIONS = ("How many triangles are there in the picture?", "Area?", "x")
SIZES = [(56, 56), (84, 112), (56, 84)]  # 4, 12 and 6 visual tokens


def _responses(lengths, seed=0, vocab=500):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.fixture
def rollout(tiny_processor, rollout_factory):
    return rollout_factory(tiny_processor, QUESTIONS, _responses((7, 3, 5)), image_sizes=SIZES)


@pytest.fixture(scope="module")
def sdpa_model(tiny_processor):
    from pgpo_torch.tiny import build_tiny_model

    return build_tiny_model(tiny_processor, seed=0, attn_implementation="sdpa")


@pytest.mark.parametrize("include_markers", [False, True])
@pytest.mark.parametrize("lengths", [(7, 3, 5), (1, 9, 4)])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_mask_and_drop_give_the_same_response_logits(tiny_model, sdpa_model, tiny_processor,
                                                     rollout_factory, include_markers,
                                                     lengths, attention):
    if attention == "sdpa":
        assert sdpa_model.config._attn_implementation == "sdpa"
        tiny_model = sdpa_model
    batch, T, rmask = rollout_factory(tiny_processor, QUESTIONS, _responses(lengths, seed=1),
                                      image_sizes=SIZES)
    with torch.no_grad():
        visual, masked = visual_and_blind_outputs(
            tiny_model, batch, response_length=T,
            blind=BlindPassConfig(mode="mask", include_markers=include_markers))
        _, dropped = visual_and_blind_outputs(
            tiny_model, batch, response_length=T,
            blind=BlindPassConfig(mode="drop", include_markers=include_markers))
    assert masked.shape == dropped.shape == (3, T, len(tiny_processor.tokenizer))
    torch.testing.assert_close(masked[rmask], dropped[rmask], rtol=0, atol=1e-5)
    # The blind pass really is blind: far from the visual pass on real tokens.
    assert (visual[rmask] - masked[rmask]).abs().max() > 1e-2


def _single_unpadded(batch, row, T, rmask):
    """Row ``row`` alone, all padding removed, with its own pixels."""
    keep = batch["attention_mask"][row].bool()
    n_patches = batch["image_grid_thw"].prod(-1)
    start = int(n_patches[:row].sum())
    return dict(
        input_ids=batch["input_ids"][row][keep][None],
        attention_mask=torch.ones(1, int(keep.sum()), dtype=torch.long),
        mm_token_type_ids=batch["mm_token_type_ids"][row][keep][None],
        pixel_values=batch["pixel_values"][start: start + int(n_patches[row])],
        image_grid_thw=batch["image_grid_thw"][row: row + 1],
    ), int(rmask[row].sum())


def _token_logprobs(logits, tokens):
    return torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("blind", ["visual", "drop", "mask"])
def test_response_tokens_stay_aligned_under_padding(tiny_model, rollout, blind):
    """Logprob of each response token == that of the row run alone without padding."""
    batch, T, rmask = rollout
    responses = batch["input_ids"][:, -T:]
    with torch.no_grad():
        if blind == "visual":
            batched = response_outputs(tiny_model, visual_inputs(batch), response_length=T)
        else:
            batched = response_outputs(tiny_model, blind_inputs(tiny_model, batch,
                                                                 response_length=T,
                                                                 blind=blind),
                                       response_length=T)
        for row in range(3):
            single, n = _single_unpadded(batch, row, T, rmask)
            if blind == "visual":
                logits = tiny_model(**single).logits[0]
            else:  # the masked pass on the unpadded row, built from its own positions
                logits = tiny_model(**mask_visual_attention(tiny_model, single)).logits[0]
            length = single["input_ids"].shape[1]
            # position length - n - 1 + t predicts response token t
            expected = _token_logprobs(logits[length - n - 1: length - 1],
                                       single["input_ids"][0, length - n:])
            got = _token_logprobs(batched[row, :n], responses[row, :n])
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_drop_layout_worked_by_hand(tiny_model, rollout):
    batch, T, _ = rollout
    pos = mrope_position_ids(tiny_model, batch)
    out = drop_visual_tokens(tiny_model, batch, response_length=T)
    P = batch["input_ids"].shape[1] - T
    n_visual = (batch["mm_token_type_ids"] != 0).sum(1)  # 4, 12, 6
    assert n_visual.tolist() == [4, 12, 6]
    real_prompt = batch["attention_mask"][:, :P].sum(1)
    kept = real_prompt - n_visual
    new_P = int(kept.max())
    assert out["input_ids"].shape == (3, new_P + T)
    assert out["position_ids"].shape == (3, 3, new_P + T)
    for row in range(3):
        keep = batch["attention_mask"][row, :P].bool() & (batch["mm_token_type_ids"][row, :P] == 0)
        k = int(kept[row])
        assert torch.equal(out["input_ids"][row, new_P - k: new_P], batch["input_ids"][row, :P][keep])
        assert torch.equal(out["position_ids"][:, row, new_P - k: new_P], pos[:, row, :P][:, keep])
        assert out["attention_mask"][row, :new_P - k].sum() == 0
        assert out["attention_mask"][row, new_P - k: new_P].all()
        # The response block is untouched.
        assert torch.equal(out["input_ids"][row, new_P:], batch["input_ids"][row, P:])
        assert torch.equal(out["position_ids"][:, row, new_P:], pos[:, row, P:])
        # Text after the image resumes past the image's positions: a gap in the ids.
        row_pos = out["position_ids"][0, row, new_P - k: new_P]
        gaps = (row_pos[1:] - row_pos[:-1]).tolist()
        grid = batch["image_grid_thw"][row]
        assert sorted(gaps)[-1] == 1 + int(max(grid[1], grid[2])) // 2
    assert "pixel_values" not in out


def test_mask_form_worked_by_hand(tiny_model, rollout):
    batch, T, _ = rollout
    out = mask_visual_attention(tiny_model, batch)
    mask = out["attention_mask"]
    L = batch["input_ids"].shape[1]
    assert mask.shape == (3, 1, L, L) and mask.dtype == torch.float32
    hidden = batch["mm_token_type_ids"] != 0
    real = batch["attention_mask"].bool()
    lowest = torch.finfo(torch.float32).min
    for row in range(3):
        for i in range(L):
            allowed = real[row] & ~hidden[row] & (torch.arange(L) <= i)
            assert torch.equal(mask[row, 0, i] == 0, allowed)
            assert torch.all(mask[row, 0, i][~allowed] == lowest)
    assert torch.equal(out["position_ids"], mrope_position_ids(tiny_model, batch))


def test_blacken_patches_values():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(400, 3 * 2 * 14 * 14, generator=g)
    out = blacken_patches(pixels, p=0.5, generator=torch.Generator().manual_seed(1))
    again = blacken_patches(pixels, p=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and out.shape == pixels.shape
    changed = (out != pixels).any(1)
    # a Binomial(400, 0.5) count: 4.5 standard deviations either side
    assert 155 <= int(changed.sum()) <= 245
    assert torch.equal(out[~changed], pixels[~changed])
    # Black rows decode to pixel value 0 in every channel.
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1)
    raw = out[changed].view(-1, 3, 2 * 14 * 14) * std + mean
    torch.testing.assert_close(raw, torch.zeros_like(raw), rtol=0, atol=1e-6)
    assert torch.equal(blacken_patches(pixels, p=0.0), pixels)
    all_black = blacken_patches(pixels, p=1.0).view(400, 3, -1)
    assert torch.equal(all_black, all_black[:1, :, :1].expand_as(all_black))
    with pytest.raises(ValueError, match="p:"):
        blacken_patches(pixels, p=1.5)
    with pytest.raises(TypeError, match="pixel_values"):
        blacken_patches(pixels.long(), p=0.5)


def test_blacken_generator_draws_per_step_and_per_process():
    """The masks of a data-parallel run: a pure function of (seed, step, process), so a
    rerun repeats them, while two processes (or two steps) blacken different patches:
    with p = 0.5 over 400 patches, equal masks would have probability 2**-400."""
    pixels = torch.randn(400, 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(0))

    def mask(seed, step, process):
        out = blacken_patches(pixels, p=0.5, generator=blacken_generator(seed, step, process))
        return (out != pixels).any(1)

    assert torch.equal(mask(3, 5, 1), mask(3, 5, 1))
    assert not torch.equal(mask(3, 5, 0), mask(3, 5, 1))
    assert not torch.equal(mask(3, 5, 0), mask(3, 6, 0))
    assert not torch.equal(mask(3, 5, 0), mask(4, 5, 0))
    # The documented seed: seed * 1_000_003 + step * 7919 + process_index.
    assert torch.equal(mask(3, 5, 1), (blacken_patches(
        pixels, p=0.5, generator=torch.Generator().manual_seed(3 * 1_000_003 + 5 * 7919 + 1))
        != pixels).any(1))
    for name, args in (("seed", (-1, 0, 0)), ("step", (0, 1.5, 0)),
                       ("process_index", (0, 0, True))):
        with pytest.raises(ValueError, match=f"^{name}:"):
            blacken_generator(*args)


def test_blacken_pass_changes_logits_but_keeps_layout(tiny_model, rollout):
    batch, T, rmask = rollout
    with torch.no_grad():
        v, b = visual_and_blind_outputs(tiny_model, batch, response_length=T, blind="blacken",
                                        generator=torch.Generator().manual_seed(0))
        _, b_p0 = visual_and_blind_outputs(
            tiny_model, batch, response_length=T,
            blind=BlindPassConfig(mode="blacken", blacken_probability=0.0))
    torch.testing.assert_close(b_p0, v, rtol=0, atol=0)  # p = 0 is the visual pass
    assert (b - v)[rmask].abs().max() > 1e-3


def test_blind_pass_config_is_validated_by_field():
    assert BlindPassConfig() == BlindPassConfig(mode="drop", blacken_probability=0.5,
                                                include_markers=False)
    assert BlindPassConfig.of("mask") == BlindPassConfig(mode="mask")
    with pytest.raises(ValueError, match=r"^mode: must be one of 'drop', 'mask', 'blacken'"):
        BlindPassConfig(mode="blur")
    with pytest.raises(ValueError, match=r"^blacken_probability: must be a number in \[0, 1\]"):
        BlindPassConfig(blacken_probability=1.5)
    with pytest.raises(ValueError, match=r"^blacken_probability"):
        BlindPassConfig(blacken_probability=True)
    with pytest.raises(TypeError, match=r"^include_markers: expected a bool"):
        BlindPassConfig(include_markers=1)


def test_bad_batches_are_refused(tiny_model, rollout):
    batch, T, _ = rollout
    no_types = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    with pytest.raises(ValueError, match="mm_token_type_ids"):
        drop_visual_tokens(tiny_model, no_types, response_length=T)
    with pytest.raises(ValueError, match="response_length"):
        drop_visual_tokens(tiny_model, batch, response_length=batch["input_ids"].shape[1])
    with pytest.raises(ValueError, match="response block"):
        drop_visual_tokens(tiny_model, batch, response_length=batch["input_ids"].shape[1] - 3)
    with pytest.raises(ValueError, match="blind"):
        blind_inputs(tiny_model, batch, response_length=T, blind="blank")
    with pytest.raises(TypeError, match="^blind: expected a BlindPassConfig"):
        blind_inputs(tiny_model, batch, response_length=T, blind=0.5)
    with pytest.raises(ValueError, match="output"):
        response_outputs(tiny_model, visual_inputs(batch), response_length=T, output="probs")
    flash = types.SimpleNamespace(config=types.SimpleNamespace(
        _attn_implementation="flash_attention_2"))
    with pytest.raises(ValueError, match="drop_visual_tokens"):
        mask_visual_attention(flash, batch)
