"""One rollout batch in two layouts: a Hugging Face dict (for ``pgpo_torch``) and verl's
padded multimodal ``DataProto`` (for the plugin), built from the same prompts and tokens."""

from __future__ import annotations

import numpy as np
import torch
from verl import DataProto

QUESTIONS = ("How many triangles are there in the picture?", "Area?", "x", "Is it red?")
SIZES = ((56, 56), (84, 112), (56, 84), (56, 56))  # 4, 12, 6, 4 visual tokens


def _image(seed, height, width):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def build_rollout(model, processor, lengths, *, seed=0, groups=None):
    """``(hf_batch, data, T, response_mask)`` for responses of ``lengths`` tokens (random
    ids), prompts cycling through ``QUESTIONS``/``SIZES`` with one image each.

    ``data`` follows verl 0.9.1's rollout output: ``prompts`` left-padded, ``responses``
    right-padded, ``position_ids`` ``(B, 4, L)`` (row 0 text positions, rows 1-3 mRoPE),
    ``multi_modal_inputs`` per sample, ``uid`` (``groups``: the group of each sample).
    """
    from pgpo_torch.blind_pass import mrope_position_ids

    n = len(lengths)
    tok = processor.tokenizer
    texts, images = [], []
    for i in range(n):
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": QUESTIONS[i % 4]}]}]
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True))
        images.append(_image(seed + i, *SIZES[i % 4]))
    prompt = processor(text=texts, images=images, return_tensors="pt", padding=True,
                       padding_side="left")
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    responses = torch.full((n, width), tok.pad_token_id, dtype=torch.long)
    rmask = torch.zeros((n, width), dtype=torch.long)
    for i, length in enumerate(lengths):
        responses[i, :length] = torch.randint(20, 500, (length,), generator=g)
        rmask[i, :length] = 1
    hf = dict(input_ids=torch.cat([prompt["input_ids"], responses], 1),
              attention_mask=torch.cat([prompt["attention_mask"], rmask], 1),
              mm_token_type_ids=torch.cat([prompt["mm_token_type_ids"],
                                           torch.zeros_like(responses)], 1),
              pixel_values=prompt["pixel_values"], image_grid_thw=prompt["image_grid_thw"])
    mrope = mrope_position_ids(model, hf)  # (3, B, L)
    mask = hf["attention_mask"]
    text = (mask.cumsum(-1) - 1).clamp_min(0) * mask
    position_ids = torch.cat([text.unsqueeze(1), mrope.transpose(0, 1)], dim=1)
    patches = hf["image_grid_thw"].prod(-1).tolist()
    starts = np.cumsum([0] + patches)
    multi_modal_inputs = np.empty(n, dtype=object)
    for i in range(n):
        multi_modal_inputs[i] = dict(
            pixel_values=hf["pixel_values"][starts[i]: starts[i + 1]],
            image_grid_thw=hf["image_grid_thw"][i: i + 1])
    groups = list(range(n)) if groups is None else groups
    data = DataProto.from_dict(
        tensors=dict(prompts=prompt["input_ids"], responses=responses,
                     input_ids=hf["input_ids"], attention_mask=mask,
                     position_ids=position_ids, response_mask=rmask),
        non_tensors=dict(multi_modal_inputs=multi_modal_inputs,
                         uid=np.array([f"g{k}" for k in groups], dtype=object)),
        meta_info=dict(temperature=1.0, global_token_num=mask.sum(-1).tolist()))
    return hf, data, width, rmask.bool()


def hf_response_logits(model, inputs, response_length):
    """Response-aligned logits of a plain HF forward (``pgpo_torch.response_outputs``)."""
    from pgpo_torch.blind_pass import response_outputs

    with torch.no_grad():
        return response_outputs(model, inputs, response_length=response_length)


def token_log_probs(logits, tokens):
    return torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
