"""The tiny offline Qwen2.5-VL: processor, config ids, mRoPE positions, forward, generate."""

from __future__ import annotations

import pytest
import torch

from pgpo_torch.tiny import SPECIAL_TOKENS, build_tiny_model, build_tiny_qwen2_5_vl


def test_tokenizer_specials_and_round_trip(tiny_processor):
    tok = tiny_processor.tokenizer
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert ids == list(range(len(tok) - len(SPECIAL_TOKENS), len(tok)))  # appended after BPE
    assert tok.pad_token == "<|endoftext|>" and tok.eos_token == "<|im_end|>"
    text = "<think>x^2 = 16, so x = 4.</think> The answer is \\boxed{4}."
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok("<|image_pad|>")["input_ids"] == [tok.image_token_id]


def test_chat_template_is_chatml(tiny_processor):
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Area?"}]},
    ]
    text = tiny_processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Area?"
                    "<|im_end|>\n<|im_start|>assistant\n")


def test_processor_56px_image_gives_four_visual_tokens(tiny_processor, image_factory,
                                                       prompt_factory):
    text = prompt_factory(tiny_processor, "How many?")
    batch = tiny_processor(text=[text], images=[image_factory(0)], return_tensors="pt")
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]
    # 16 patches of 3 x 2 x 14 x 14 values (channels x temporal x patch x patch)
    assert tuple(batch["pixel_values"].shape) == (16, 3 * 2 * 14 * 14)
    image_id = tiny_processor.tokenizer.image_token_id
    is_image = batch["input_ids"][0] == image_id
    assert int(is_image.sum()) == 4  # 16 patches merged 2 x 2
    assert torch.equal(batch["mm_token_type_ids"][0].bool(), is_image)


def test_config_ids_match_tokenizer(tiny_model, tiny_processor):
    tok, cfg = tiny_processor.tokenizer, tiny_model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert cfg.text_config.vocab_size == len(tok)
    assert cfg.text_config.pad_token_id == tok.pad_token_id
    head_dim = cfg.text_config.hidden_size // cfg.text_config.num_attention_heads
    assert sum(cfg.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_deterministic_for_a_seed(tiny_processor):
    a = build_tiny_model(tiny_processor, seed=3)
    b = build_tiny_model(tiny_processor, seed=3)
    c = build_tiny_model(tiny_processor, seed=4)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["lm_head.weight"], pc["lm_head.weight"])


def _batch(processor, image_factory, prompt_factory, questions=("How many?",)):
    texts = [prompt_factory(processor, q) for q in questions]
    images = [image_factory(i) for i in range(len(questions))]
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def test_rope_index_is_three_row_mrope(tiny_model, tiny_processor, image_factory,
                                       prompt_factory):
    batch = _batch(tiny_processor, image_factory, prompt_factory)
    pos, delta = tiny_model.model.get_rope_index(
        batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"],
        attention_mask=batch["attention_mask"])
    assert tuple(pos.shape) == (3, 1, batch["input_ids"].shape[1])
    is_image = batch["mm_token_type_ids"][0].bool()
    start = int(torch.nonzero(is_image)[0])
    # The 4 visual tokens form a 2 x 2 grid at offset `start`: (t, h, w) ids worked by hand.
    assert pos[:, 0, is_image].tolist() == [[start] * 4,
                                            [start, start, start + 1, start + 1],
                                            [start, start + 1, start, start + 1]]
    # Text rows agree; text after the image resumes at start + max(h, w) = start + 2.
    text = ~is_image
    assert torch.equal(pos[0, 0, text], pos[1, 0, text]) and torch.equal(pos[0, 0, text],
                                                                         pos[2, 0, text])
    after = pos[0, 0, text][start:]
    assert after.tolist() == list(range(start + 2, start + 2 + after.numel()))
    n = batch["input_ids"].shape[1]
    assert int(delta) == (start + 2 + after.numel()) - n  # max position + 1 - length


def test_forward_uses_image_and_mrope(tiny_model, tiny_processor, image_factory,
                                      prompt_factory):
    batch = _batch(tiny_processor, image_factory, prompt_factory)
    with torch.no_grad():
        out = tiny_model(**batch).logits
        pos, _ = tiny_model.model.get_rope_index(
            batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"],
            attention_mask=batch["attention_mask"])
        explicit = tiny_model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"},
                              position_ids=pos).logits
        no_types = tiny_model(**{k: v for k, v in batch.items()
                                 if k != "mm_token_type_ids"}).logits
        other = dict(batch, pixel_values=torch.flip(batch["pixel_values"], dims=(0,)))
        other_image = tiny_model(**other).logits
    assert tuple(out.shape) == (1, batch["input_ids"].shape[1], len(tiny_processor.tokenizer))
    assert torch.isfinite(out).all()
    # mm_token_type_ids makes the model build exactly the 3-row mRoPE ids ...
    torch.testing.assert_close(out, explicit, rtol=0, atol=0)
    # ... and without them it silently falls back to 1-D positions (different logits).
    assert (out - no_types).abs().max() > 1e-4
    # The pixels reach the logits.
    assert (out - other_image).abs().max() > 1e-4


def test_generate_with_image_matches_greedy_forward(tiny_model, tiny_processor,
                                                    image_factory, prompt_factory):
    batch = _batch(tiny_processor, image_factory, prompt_factory)
    n_new = 5
    with torch.no_grad():
        generated = tiny_model.generate(**batch, max_new_tokens=n_new, do_sample=False,
                                        min_new_tokens=n_new)
        # Independent route: greedy decoding by full forward passes over the growing
        # sequence, generated tokens being text (mm_token_type_ids 0).
        ids, types, mask = batch["input_ids"], batch["mm_token_type_ids"], \
            batch["attention_mask"]
        for _ in range(n_new):
            logits = tiny_model(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                                pixel_values=batch["pixel_values"],
                                image_grid_thw=batch["image_grid_thw"]).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            types = torch.cat([types, torch.zeros_like(nxt)], dim=1)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
    assert generated.shape[1] == batch["input_ids"].shape[1] + n_new
    assert torch.equal(generated, ids)


def test_build_tiny_qwen2_5_vl_and_bad_arguments():
    model, processor = build_tiny_qwen2_5_vl(seed=1)
    assert model.config.image_token_id == processor.tokenizer.image_token_id
    with pytest.raises(ValueError, match="hidden_size"):
        build_tiny_model(processor, hidden_size=20, num_heads=4)
    with pytest.raises(TypeError, match="seed"):
        build_tiny_model(processor, seed=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        build_tiny_model(processor, vocab_size=10)
    with pytest.raises(ValueError, match="attn_implementation"):
        build_tiny_model(processor, attn_implementation="flash_attention_2")


def test_tiny_rotary_layout_can_be_chosen():
    """rope_theta and mrope_section reach the language model's rotary embedding; None
    keeps Qwen2.5-VL's 1 : 1.5 : 1.5 split at base 1e4. Errors name the argument."""
    from pgpo_torch.tiny import build_tiny_config

    default = build_tiny_config().text_config.rope_parameters
    assert default["mrope_section"] == [2, 3, 3] and default["rope_theta"] == 10000.0
    model = build_tiny_model(seed=0, rope_theta=100.0, mrope_section=[0, 4, 4])
    rotary = model.model.language_model.rotary_emb
    assert list(rotary.mrope_section) == [0, 4, 4]
    torch.testing.assert_close(rotary.inv_freq, 100.0 ** (-torch.arange(8) / 8.0))
    for kwargs, match in ((dict(mrope_section=[1, 4, 4]), "mrope_section"),
                          (dict(mrope_section=[-1, 5, 4]), "mrope_section"),
                          (dict(mrope_section=[4, 4]), "mrope_section"),
                          (dict(rope_theta=1.0), "rope_theta")):
        with pytest.raises(ValueError, match=match):
            build_tiny_config(**kwargs)
