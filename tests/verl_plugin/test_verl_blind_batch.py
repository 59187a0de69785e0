"""blind_batch: the blind DataProto gives the logits of pgpo_torch's blind passes."""

from __future__ import annotations

import pytest
import torch

from pgpo_torch.blind_pass import BlindPassConfig, visual_and_blind_outputs
from pgpo_verl import blind_batch
from pgpo_verl.trainer import pgpo_token_ids
from verl_rollout import build_rollout, hf_response_logits


def _ids(processor):
    return pgpo_token_ids(processor, processor.tokenizer)


def _blind(data, processor, include_markers=False):
    ids = _ids(processor)
    return blind_batch(data, image_token_id=ids["image_token_id"],
                       pad_token_id=ids["pad_token_id"], video_token_id=ids["video_token_id"],
                       include_markers=include_markers, marker_ids=ids["marker_ids"])


@pytest.mark.parametrize("include_markers", [False, True])
def test_blind_batch_logits_equal_masked_attention_and_drop(tiny, include_markers):
    model, processor, _ = tiny
    hf, data, T, rmask = build_rollout(model, processor, (7, 3, 5, 1), seed=1)
    blind = _blind(data, processor, include_markers)
    b = blind.batch
    # The DataProto run as verl's patched forward expects it: 4-row ids, row 0 text positions.
    inputs = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                  position_ids=b["position_ids"][:, 1:].transpose(0, 1))
    ours = hf_response_logits(model, inputs, T)
    with torch.no_grad():
        visual, masked = visual_and_blind_outputs(
            model, hf, response_length=T,
            blind=BlindPassConfig(mode="mask", include_markers=include_markers))
        _, dropped = visual_and_blind_outputs(
            model, hf, response_length=T,
            blind=BlindPassConfig(mode="drop", include_markers=include_markers))
    torch.testing.assert_close(ours[rmask], masked[rmask], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours[rmask], dropped[rmask], rtol=0, atol=1e-6)
    assert (visual[rmask] - ours[rmask]).abs().max() > 1e-2  # really blind


def test_blind_batch_layout(tiny):
    model, processor, _ = tiny
    _, data, T, rmask = build_rollout(model, processor, (4, 2), seed=2)
    ids = _ids(processor)
    blind = _blind(data, processor)
    b = blind.batch
    image = ids["image_token_id"]
    assert not (b["input_ids"] == image).any()
    assert set(blind.batch.keys()) == {"prompts", "responses", "input_ids", "attention_mask",
                                       "position_ids", "response_mask"}
    assert "multi_modal_inputs" not in blind.non_tensor_batch
    assert list(blind.non_tensor_batch["uid"]) == list(data.non_tensor_batch["uid"])
    assert torch.equal(b["responses"], data.batch["responses"])
    assert torch.equal(b["input_ids"][:, -T:], data.batch["input_ids"][:, -T:])
    assert torch.equal(b["prompts"], b["input_ids"][:, :-T])
    # Every prompt loses exactly its image tokens, and keeps the rest in order.
    old_prompts = data.batch["prompts"]
    for row in range(old_prompts.shape[0]):
        keep = data.batch["attention_mask"][row, :-T].bool() & (old_prompts[row] != image)
        new_keep = b["attention_mask"][row, :-T].bool()
        assert torch.equal(b["prompts"][row][new_keep], old_prompts[row][keep])
        # rows 1-3: the kept tokens' original mRoPE ids; row 0: 0, 1, ... over the new sequence
        old_pos = data.batch["position_ids"][row, 1:, :-T][:, keep]
        assert torch.equal(b["position_ids"][row, 1:, :-T][:, new_keep], old_pos)
        n = int(b["attention_mask"][row].sum())
        assert torch.equal(b["position_ids"][row, 0][b["attention_mask"][row].bool()],
                           torch.arange(n))
    assert blind.meta_info["global_token_num"] == b["attention_mask"].sum(-1).tolist()


def test_blind_batch_rejects_bad_input(tiny):
    model, processor, _ = tiny
    _, data, _, _ = build_rollout(model, processor, (3, 2))
    ids = _ids(processor)
    with pytest.raises(TypeError, match="data"):
        blind_batch(data.batch, image_token_id=1, pad_token_id=0)
    with pytest.raises(TypeError, match="image_token_id"):
        blind_batch(data, image_token_id=None, pad_token_id=ids["pad_token_id"])
    flat = data.select(batch_keys=["prompts", "responses", "input_ids", "attention_mask",
                                   "response_mask"])
    flat.batch["position_ids"] = data.batch["position_ids"][:, 0]
    with pytest.raises(ValueError, match="position_ids"):
        blind_batch(flat, image_token_id=ids["image_token_id"],
                    pad_token_id=ids["pad_token_id"])
    no_mask = data.select(batch_keys=["prompts", "responses", "input_ids", "attention_mask",
                                      "position_ids"])
    with pytest.raises(ValueError, match="response_mask"):
        blind_batch(no_mask, image_token_id=ids["image_token_id"],
                    pad_token_id=ids["pad_token_id"])



# ------------------------------------------------------------- VPPO's blackened pass


def _black_row(ids):
    """A blackened patch row: in every channel the normalised value of a black pixel."""
    mean, std = torch.tensor(ids["image_mean"]), torch.tensor(ids["image_std"])
    return (-mean / std).repeat_interleave(2 * 14 * 14)  # C x (T_p = 2) x 14 x 14


def test_blackened_batch_blackens_patches_and_keeps_everything_else(tiny):
    """Each sample's patches are either untouched or black (about half of them at 0.5);
    the tokens, positions and masks are the visual pass's; a seeded generator repeats the
    masks; probability 0 and 1 give the image and an all-black image."""
    from pgpo_torch.blind_pass import blacken_generator
    from pgpo_verl import blackened_batch

    model, processor, _ = tiny
    _, data, _, _ = build_rollout(model, processor, (3, 2, 4, 1, 2, 3))
    ids = _ids(processor)

    def blacken(p, seed=0):
        return blackened_batch(data, probability=p, generator=blacken_generator(seed, 1),
                               image_mean=ids["image_mean"], image_std=ids["image_std"])

    out = blacken(0.5)
    for key in ("prompts", "responses", "input_ids", "attention_mask", "position_ids",
                "response_mask"):
        assert torch.equal(out.batch[key], data.batch[key]), key
    assert list(out.non_tensor_batch["uid"]) == list(data.non_tensor_batch["uid"])
    black = _black_row(ids)
    blackened = total = 0
    for before, after in zip(data.non_tensor_batch["multi_modal_inputs"],
                             out.non_tensor_batch["multi_modal_inputs"], strict=True):
        assert torch.equal(after["image_grid_thw"], before["image_grid_thw"])
        changed = (after["pixel_values"] != before["pixel_values"]).any(1)
        assert torch.equal(after["pixel_values"][~changed], before["pixel_values"][~changed])
        torch.testing.assert_close(after["pixel_values"][changed],
                                   black.expand(int(changed.sum()), -1), rtol=0, atol=1e-6)
        blackened, total = blackened + int(changed.sum()), total + len(changed)
    # 6 images of 16-48 patches each (168 in all): Binomial(168, 0.5), 4.5 sd either side.
    assert total == 168 and 84 - 28 <= blackened <= 84 + 28
    again = blacken(0.5)
    other = blacken(0.5, seed=1)
    pairs = list(zip(out.non_tensor_batch["multi_modal_inputs"],
                     again.non_tensor_batch["multi_modal_inputs"],
                     other.non_tensor_batch["multi_modal_inputs"]))
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) for a, b, _ in pairs)
    assert not all(torch.equal(a["pixel_values"], c["pixel_values"]) for a, _, c in pairs)
    for p, expect_black in ((0.0, False), (1.0, True)):
        for before, after in zip(data.non_tensor_batch["multi_modal_inputs"],
                                 blacken(p).non_tensor_batch["multi_modal_inputs"]):
            want = black.expand_as(before["pixel_values"]) if expect_black \
                else before["pixel_values"]
            torch.testing.assert_close(after["pixel_values"], want, rtol=0, atol=1e-6)
    # The input batch itself is left as it was.
    assert not any(torch.equal(m["pixel_values"], black.expand_as(m["pixel_values"]))
                   for m in data.non_tensor_batch["multi_modal_inputs"])
    # A sample without an image (verl's {}) passes through; a video is refused.
    mixed = data.select(batch_keys=list(data.batch.keys()),
                        non_tensor_batch_keys=["uid", "multi_modal_inputs"])
    mixed.non_tensor_batch["multi_modal_inputs"] = mixed.non_tensor_batch[
        "multi_modal_inputs"].copy()
    mixed.non_tensor_batch["multi_modal_inputs"][1] = {}
    out = blackened_batch(mixed, probability=1.0, generator=blacken_generator(0, 1),
                          image_mean=ids["image_mean"], image_std=ids["image_std"])
    assert out.non_tensor_batch["multi_modal_inputs"][1] == {}
    first = out.non_tensor_batch["multi_modal_inputs"][0]["pixel_values"]
    torch.testing.assert_close(first, black.expand_as(first), rtol=0, atol=1e-6)
    mixed.non_tensor_batch["multi_modal_inputs"][1] = {"pixel_values_videos": first}
    with pytest.raises(ValueError, match=r"\[1\]: a video"):
        blackened_batch(mixed, probability=0.5, generator=blacken_generator(0, 1),
                        image_mean=ids["image_mean"], image_std=ids["image_std"])
    no_images = data.select(batch_keys=list(data.batch.keys()), non_tensor_batch_keys=["uid"])
    with pytest.raises(ValueError, match=r"multi_modal_inputs.*pixel_values"):
        blackened_batch(no_images, probability=0.5, generator=blacken_generator(0, 1),
                        image_mean=ids["image_mean"], image_std=ids["image_std"])
