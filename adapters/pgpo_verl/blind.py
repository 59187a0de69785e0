"""The blind pass as a verl ``DataProto``: the rollout batch with its images taken out
(:func:`blind_batch`, PGPO's pass) or with random patches blacked out
(:func:`blackened_batch`, VPPO's perturbation).

PGPO (Ye et al., 2026, arXiv 2604.01840, Eq. 1) compares each response token's next-token
distribution with the image, ``pi_I``, to the one without it, ``pi_0``. The paper masks
attention to every visual token and keeps the text tokens' position ids; for a causal
decoder, *dropping* the visual tokens while keeping every other token's original position
ids gives the same logits, and skips the vision tower. :func:`blind_batch` builds that
input as a padded verl ``DataProto``, so the stock ``compute_log_prob`` of the actor worker
group runs it like any other batch.

verl's multimodal rollout batch (Qwen2.5-VL / Qwen2-VL) holds ``prompts`` ``(B, P)``
(left-padded), ``responses`` ``(B, T)`` (right-padded), ``input_ids`` and
``attention_mask`` ``(B, P + T)``, ``position_ids`` ``(B, 4, P + T)`` (row 0 the text
positions, rows 1-3 the mRoPE temporal/height/width ids) and, per sample,
``non_tensor_batch["multi_modal_inputs"]`` (``pixel_values``, ``image_grid_thw``).
"""

from __future__ import annotations

import types

import numpy as np
import torch
from verl import DataProto

from pgpo_torch.blind_pass import blacken_patches, drop_visual_tokens

__all__ = ["blind_batch", "blackened_batch", "BLIND_BATCH_KEYS"]

BLIND_BATCH_KEYS = ("prompts", "responses", "input_ids", "attention_mask", "position_ids",
                    "response_mask")
"""The tensors of the blind ``DataProto`` (all the stock ``compute_log_prob`` reads)."""


def _check(data: DataProto) -> None:
    if not isinstance(data, DataProto):
        raise TypeError(f"data: expected a verl DataProto, got {type(data).__name__}")
    missing = [k for k in BLIND_BATCH_KEYS if k not in data.batch.keys()]
    if missing:
        raise ValueError(f"data.batch: missing {missing} (a rollout batch after generation, "
                         "with response_mask, is needed)")
    ids, pos = data.batch["input_ids"], data.batch["position_ids"]
    prompt_width = data.batch["prompts"].shape[1]
    response_width = data.batch["responses"].shape[1]
    if ids.shape[1] != prompt_width + response_width:
        raise ValueError(f"data.batch['input_ids']: width {ids.shape[1]} != prompts "
                         f"{prompt_width} + responses {response_width}")
    if pos.ndim != 3 or pos.shape[1] != 4 or pos.shape[2] != ids.shape[1]:
        raise ValueError(
            "data.batch['position_ids']: expected (B, 4, L) multimodal position ids (row 0 "
            f"text, rows 1-3 mRoPE), got shape {tuple(pos.shape)}; PGPO needs an image model "
            "with mRoPE (Qwen2-VL / Qwen2.5-VL)")


def blind_batch(data: DataProto, *, image_token_id: int, pad_token_id: int,
                video_token_id: int | None = None, include_markers: bool = False,
                marker_ids: tuple[int, ...] = ()) -> DataProto:
    """The blind-pass ``DataProto`` of a padded multimodal rollout batch (a pure function).

    - The prompt block loses its visual tokens (``image_token_id``, ``video_token_id``;
      with ``include_markers`` also ``marker_ids``, e.g. ``<|vision_start|>`` and
      ``<|vision_end|>``) and is left-padded again with ``pad_token_id`` to the longest
      remaining prompt; ``prompts`` is rebuilt from it.
    - The response block is kept as it is, so response column ``t`` is still response
      token ``t`` and the log-probs come back aligned with the visual pass's.
    - Every kept token keeps its original mRoPE position ids (rows 1-3), so its logits equal
      those of the paper's masked-attention pass; row 0 (text positions) is rebuilt as
      ``0, 1, ...`` over the shorter sequence.
    - ``multi_modal_inputs`` is dropped (no pixels: the vision tower does not run).

    The token dropping is :func:`pgpo_torch.drop_visual_tokens` (one implementation).
    Other tensors and non-tensors are not carried over; ``meta_info`` is copied, without
    ``images_seqlens`` and with ``global_token_num`` recounted.
    """
    _check(data)
    for name, value in (("image_token_id", image_token_id), ("pad_token_id", pad_token_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an int token id, got {value!r}")
    batch = data.batch
    ids, mask, pos = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    response_width = batch["responses"].shape[1]
    prompt_width = ids.shape[1] - response_width
    token_type = torch.zeros_like(ids)
    token_type[:, :prompt_width] = (ids[:, :prompt_width] == image_token_id).long()
    if video_token_id is not None:
        token_type[:, :prompt_width] += 2 * (ids[:, :prompt_width] == video_token_id).long()
    # drop_visual_tokens reads the pad id (and the marker ids) from model.config only.
    config = types.SimpleNamespace(pad_token_id=pad_token_id)
    if include_markers:
        if len(marker_ids) != 2:
            raise ValueError("marker_ids: with include_markers=True, give (vision_start_id, "
                             "vision_end_id)")
        config.vision_start_token_id, config.vision_end_token_id = marker_ids
    dropped = drop_visual_tokens(
        types.SimpleNamespace(config=config),
        dict(input_ids=ids, attention_mask=mask, mm_token_type_ids=token_type),
        response_length=response_width, include_markers=include_markers,
        position_ids=pos[:, 1:].transpose(0, 1))
    new_ids, new_mask = dropped["input_ids"], dropped["attention_mask"]
    text_pos = (new_mask.long().cumsum(-1) - 1).clamp_min(0) * new_mask.long()
    new_pos = torch.cat([text_pos.unsqueeze(1), dropped["position_ids"].transpose(0, 1)], dim=1)
    new_prompt_width = new_ids.shape[1] - response_width
    tensors = dict(prompts=new_ids[:, :new_prompt_width], responses=batch["responses"],
                   input_ids=new_ids, attention_mask=new_mask, position_ids=new_pos,
                   response_mask=batch["response_mask"])
    meta = {k: v for k, v in data.meta_info.items() if k != "images_seqlens"}
    if "global_token_num" in meta:
        meta["global_token_num"] = new_mask.sum(-1).tolist()
    non_tensors = {}
    if "uid" in data.non_tensor_batch:
        non_tensors["uid"] = np.asarray(data.non_tensor_batch["uid"], dtype=object)
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors, meta_info=meta)


def blackened_batch(data: DataProto, *, probability: float, generator: torch.Generator,
                    image_mean: tuple[float, ...], image_std: tuple[float, ...]) -> DataProto:
    """The rollout batch with each 14 x 14 image patch blacked out with probability
    ``probability`` (VPPO's perturbation, :func:`pgpo_torch.blacken_patches`).

    Every token, position id and mask is the visual pass's (:data:`BLIND_BATCH_KEYS`, as
    they are); only ``non_tensor_batch["multi_modal_inputs"][i]["pixel_values"]`` changes,
    sample after sample from one ``generator`` (so a seeded generator gives the same masks
    again). A sample without an image (verl's ``{}``) is carried over as it is: its blind
    pass is its visual pass, as under the drop pass. Video inputs are refused (only images
    are blackened). ``image_mean``/``image_std`` are the processor's normalisation (a black
    pixel is ``-mean / std`` after it). ``uid`` and ``meta_info`` are carried over as they
    are.
    """
    _check(data)
    inputs = data.non_tensor_batch.get("multi_modal_inputs")
    if inputs is None or len(inputs) != len(data):
        raise ValueError("data.non_tensor_batch['multi_modal_inputs']: VPPO's blackened "
                         "pass needs each sample's pixel_values (a multimodal rollout batch)")
    blackened = np.empty(len(inputs), dtype=object)
    for i, sample in enumerate(inputs):
        if not isinstance(sample, dict):
            raise ValueError(f"data.non_tensor_batch['multi_modal_inputs'][{i}]: expected a "
                             f"dict of model inputs, got {type(sample).__name__}")
        if "pixel_values_videos" in sample:
            raise ValueError(f"data.non_tensor_batch['multi_modal_inputs'][{i}]: a video; "
                             "pgpo.blind.mode=blacken blackens images only (use the drop "
                             "pass for video)")
        if "pixel_values" not in sample:
            blackened[i] = sample  # no image: nothing to hide
            continue
        blackened[i] = {**sample, "pixel_values": blacken_patches(
            sample["pixel_values"], p=probability, generator=generator,
            image_mean=tuple(image_mean), image_std=tuple(image_std))}
    tensors = {k: data.batch[k] for k in BLIND_BATCH_KEYS}
    non_tensors = {"multi_modal_inputs": blackened}
    if "uid" in data.non_tensor_batch:
        non_tensors["uid"] = np.asarray(data.non_tensor_batch["uid"], dtype=object)
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors,
                               meta_info=dict(data.meta_info))
