"""Workaround for a verl 0.9.1 bug that breaks every micro-batch without images.

verl patches Qwen2-VL / Qwen2.5-VL's forward with
``verl.models.transformers.qwen2_vl._get_input_embeds``. When a micro-batch carries no
``pixel_values`` (text-only samples in a mixed dataset, and every PGPO blind pass), that
function runs the vision tower on a dummy 16-patch image so the tower stays in the autograd
graph, and adds ``0.0 * image_embeds.mean()``. Under transformers 5 the vision tower
returns a ``BaseModelOutputWithPooling``, not a tensor, so this raises
``AttributeError: 'BaseModelOutputWithPooling' object has no attribute 'mean'``. (The
image and video branches of the same function already unpack the output with
``verl.utils.transformers_compat.unpack_visual_output``; the dummy branch does not.)

:func:`apply_no_image_workaround` wraps that module function: batches with pixels go to
verl's code unchanged; batches without run the same dummy-tower computation with the
output unpacked. ``UPSTREAM_REPORT.md`` next to this file is a report to send upstream.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["apply_no_image_workaround", "no_image_workaround_applied"]

_MARK = "_pgpo_no_image_workaround"


def no_image_workaround_applied() -> bool:
    import verl.models.transformers.qwen2_vl as qwen2_vl

    return getattr(qwen2_vl._get_input_embeds, _MARK, False)


def apply_no_image_workaround() -> None:
    """Replace verl's ``qwen2_vl._get_input_embeds`` with the fixed wrapper (idempotent).

    Its callers look the function up in the module at call time, so this works whenever
    it runs before the first forward, in every process that runs the model (the actor
    workers: :class:`pgpo_verl.PGPOActorRolloutRefWorker` applies it on construction).
    """
    import verl.models.transformers.qwen2_vl as qwen2_vl
    from verl.utils.transformers_compat import unpack_visual_output

    if no_image_workaround_applied():
        return
    original = qwen2_vl._get_input_embeds

    @functools.wraps(original)
    def _get_input_embeds(model, input_ids, attention_mask=None, pixel_values=None,
                          pixel_values_videos=None, image_grid_thw=None, video_grid_thw=None):
        if pixel_values is not None or pixel_values_videos is not None:
            return original(model, input_ids, attention_mask, pixel_values,
                            pixel_values_videos, image_grid_thw, video_grid_thw)
        inputs_embeds = model.get_input_embeddings()(input_ids)
        # As verl intends: a zero-weighted dummy image keeps the vision tower in the graph,
        # so every FSDP rank reduces the same gradients whether or not it saw an image.
        vision = model.config.vision_config
        patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2
        dummy = torch.zeros((16, patch_dim), dtype=inputs_embeds.dtype,
                            device=inputs_embeds.device)
        grid = torch.tensor([[1, 4, 4]], dtype=torch.long, device=inputs_embeds.device)
        image_embeds, _ = unpack_visual_output(model.visual(dummy, grid_thw=grid))
        inputs_embeds = inputs_embeds + 0.0 * image_embeds.mean()
        if attention_mask is not None:
            attention_mask = attention_mask.to(inputs_embeds.device)
        return inputs_embeds, attention_mask

    setattr(_get_input_embeds, _MARK, True)
    qwen2_vl._get_input_embeds = _get_input_embeds
