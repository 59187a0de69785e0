"""Workarounds for two verl 0.9.1 bugs that break Qwen2.5-VL training.

1. :func:`apply_no_image_workaround`: every micro-batch without images fails.
2. :func:`apply_position_ids_workaround`: an actor update whose sequences all have the same
   length fails (below).

**1. No images.**

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

**2. Equal lengths.** ``verl/workers/utils/padding.py`` ``left_right_2_no_padding`` makes the
mRoPE position ids, ``(4, L_i)`` per sample, a jagged tensor with
``torch.nested.as_nested_tensor(..., layout=torch.jagged)``. torch puts the ragged dimension
on the first dimension whose sizes differ: ``L_i`` when the lengths differ, but the ``4``
rows when every sample has the same length (``_ragged_idx`` 1, values ``(4B, L)``). The
actor worker then sets ``_ragged_idx = 2`` unconditionally
(``verl/utils/tensordict_utils.py`` ``maybe_fix_3d_position_ids``, called by
``TrainingWorker.train_mini_batch``), which no longer matches the values, and the first
mini-batch fails in ``index_select_tensor_dict``: ``split_with_sizes expects split_sizes to
sum exactly to <L> ... got [4, 4, ...]``. A step hits it whenever every response of the
batch has the same length (all reach ``max_response_length``, say), stock ``main_ppo``
included. :func:`apply_position_ids_workaround` wraps ``left_right_2_no_padding`` so the
position ids are always ragged on the length (``_ragged_idx`` 2), as for unequal lengths.
``UPSTREAM_REPORT_POSITION_IDS.md`` is the report to send upstream.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["apply_no_image_workaround", "apply_position_ids_workaround",
           "no_image_workaround_applied"]

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


def _ragged_on_length(position_ids):
    """``position_ids`` (jagged, ``(B, 4, j)``) rebuilt ragged on the length dimension."""
    return _jagged_on_length(position_ids.unbind(), position_ids.device)  # either layout


def _ragged_on_rows(position_ids) -> bool:
    """Whether a 3-D jagged tensor is ragged on its ``4`` rows (values ``(4B, L)``, what
    ``as_nested_tensor`` makes of equal-length ``(4, L)`` samples), whatever its
    ``_ragged_idx`` says (``maybe_fix_3d_position_ids`` overwrites it)."""
    values, total = position_ids.values(), int(position_ids.offsets()[-1])
    return values.dim() == 2 and total == values.shape[0] and total != values.shape[1]


def _jagged_on_length(rows, device):
    """``(4, L_i)`` rows as one jagged tensor ragged on ``L`` (``_ragged_idx`` 2)."""
    lengths = torch.tensor([r.shape[-1] for r in rows], dtype=torch.long, device=device)
    offsets = torch.zeros(len(rows) + 1, dtype=torch.long, device=device)
    torch.cumsum(lengths, dim=0, out=offsets[1:])
    return torch.nested.nested_tensor_from_jagged(torch.cat(rows, dim=-1), offsets=offsets,
                                                  jagged_dim=2)


def apply_position_ids_workaround() -> None:
    """Wrap verl's ``left_right_2_no_padding`` (idempotent) so 3-D mRoPE position ids are
    always ragged on the length. Applied in the process that builds the actor's batches
    (the trainer's: :class:`pgpo_verl.PGPORayTrainer` applies it on construction); modules
    that imported the function by name (``verl.trainer.ppo.ray_trainer``, ``pgpo_verl``'s
    own) are pointed at the wrapper too. Also wraps ``maybe_fix_3d_position_ids`` for the
    v1 loop's batches (below); the actor worker
    (:class:`pgpo_verl.PGPOActorRolloutRefWorker`) applies it too."""
    import verl.workers.utils.padding as padding

    original = padding.left_right_2_no_padding
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def left_right_2_no_padding(data):
        data = original(data)
        position_ids = data["position_ids"]
        if position_ids.is_nested and position_ids.dim() == 3 and \
                getattr(position_ids, "_ragged_idx", 2) != 2:
            data["position_ids"] = _ragged_on_length(position_ids)
        return data

    setattr(left_right_2_no_padding, _MARK, True)
    _rebind("left_right_2_no_padding", original, left_right_2_no_padding)

    # verl's v1 loop (trainer.use_v1=true) hands the actor worker position ids that
    # TransferQueue stacked from the per-sample (4, L_i) tensors, with the same
    # as_nested_tensor and the same result for equal lengths; no left_right_2_no_padding
    # runs. So the worker's maybe_fix_3d_position_ids (verl/utils/tensordict_utils.py:910,
    # called by TrainingWorker.train_mini_batch, engine_workers.py:252/290, and the engine,
    # engine/base.py:124/145) first rebuilds row-ragged position ids ragged on the length.
    import verl.utils.tensordict_utils as tensordict_utils

    fix = tensordict_utils.maybe_fix_3d_position_ids

    @functools.wraps(fix)
    def maybe_fix_3d_position_ids(data):
        if "position_ids" in data.keys():
            position_ids = data["position_ids"]
            if position_ids.is_nested and position_ids.dim() == 3 and \
                    _ragged_on_rows(position_ids):
                rows = position_ids.values().unflatten(0, (len(position_ids), -1))
                data["position_ids"] = _jagged_on_length(list(rows), position_ids.device)
        return fix(data)

    setattr(maybe_fix_3d_position_ids, _MARK, True)
    _rebind("maybe_fix_3d_position_ids", fix, maybe_fix_3d_position_ids)


def _rebind(name, original, wrapper) -> None:
    """Point ``verl``'s and ``pgpo_verl``'s modules that hold ``original`` under ``name``
    (the defining module and those that imported it by name) at ``wrapper``."""
    import sys

    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(("verl.", "pgpo_verl.")) and \
                vars(module).get(name) is original:
            setattr(module, name, wrapper)
