"""PGPO's steps inside a verl trainer, independent of which verl loop drives them.

verl 0.9.1 ships two PPO loops: the legacy ``RayPPOTrainer`` (``DataProto`` batches held
by the driver, :class:`pgpo_verl.PGPORayTrainer`) and the v1 ``PPOTrainer`` (``KVBatchMeta``
handles to data in TransferQueue, :class:`pgpo_verl.PGPOTrainerSync`). Both trainers only
move data; every piece of PGPO's work is here, once:

- :func:`init_section`: the validated ``pgpo`` section and the token ids of the blind pass;
- :func:`make_blind_batch`: the blind-pass ``DataProto`` (:func:`pgpo_verl.blind_batch`,
  or :func:`pgpo_verl.blackened_batch` with ``pgpo.blind.mode=blacken``);
- :func:`blind_pass_metrics`: how much of the images VPPO's blackened pass changed;
- :func:`sampled_dependency`: ``S`` from the visual and blind log-probs (``k1``/``k2``/``k3``);
- :func:`exact_dependency_via`: ``S`` over the full vocabulary, inside the actor workers;
- :func:`reshape`: ``A~ = A * w~`` (:func:`pgpo_core.reshape_advantages`) and the
  ``pgpo/*`` metrics (:func:`pgpo_core.weight_diagnostics`); with ``pgpo.algorithm=vppo``
  VPPO's advantages (:func:`pgpo_core.vppo_advantages`) and ``vppo/*`` metrics
  (:func:`pgpo_core.vppo_diagnostics`) instead.
"""

from __future__ import annotations

from typing import Any

import torch
from verl import DataProto
from verl.utils import tensordict_utils as tu

import pgpo_core
from pgpo_torch.blind_pass import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, blacken_generator
from pgpo_verl.blind import blackened_batch, blind_batch
from pgpo_verl.config import PGPOSection, parse_section

__all__ = ["DEPENDENCY_KEY", "BLIND_TIMER", "pgpo_token_ids", "init_section", "data_seed",
           "make_blind_batch", "blind_pass_metrics", "sampled_dependency",
           "exact_dependency_via", "reshape"]

DEPENDENCY_KEY = "pgpo_dependency"
"""Batch key of the ``(B, T)`` token visual dependency between the two hooks."""

BLIND_TIMER = "pgpo_blind_pass"
"""Timer name: verl logs it as ``timing_s/pgpo_blind_pass``."""


def pgpo_token_ids(processor, tokenizer) -> dict[str, Any]:
    """What the blind pass needs from verl's processor and tokenizer: the token ids
    :func:`blind_batch` drops, and the image normalisation :func:`blackened_batch` blackens
    in (``image_mean``, ``image_std``; Qwen2-VL's when the processor has none)."""
    if processor is None:
        raise ValueError("actor_rollout_ref.model.path: PGPO needs a vision-language model "
                         "with a processor (Qwen2-VL / Qwen2.5-VL); verl loaded none")
    image = getattr(processor, "image_token_id", None)
    if image is None:
        raise ValueError(f"processor: {type(processor).__name__} has no image_token_id; PGPO "
                         "supports Qwen2-VL / Qwen2.5-VL processors")
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError("tokenizer: no pad_token_id")
    markers = tuple(tokenizer.convert_tokens_to_ids(t)
                    for t in ("<|vision_start|>", "<|vision_end|>"))
    image_processor = getattr(processor, "image_processor", None)
    return dict(image_token_id=int(image), pad_token_id=int(pad),
                image_mean=tuple(getattr(image_processor, "image_mean", None)
                                 or OPENAI_CLIP_MEAN),
                image_std=tuple(getattr(image_processor, "image_std", None) or OPENAI_CLIP_STD),
                video_token_id=getattr(processor, "video_token_id", None),
                marker_ids=markers)


def init_section(config, processor, tokenizer) -> tuple[PGPOSection, dict[str, Any] | None]:
    """The validated ``pgpo`` section of a verl config, and (when enabled) the blind pass's
    token ids. Checks what PGPO needs from the rest of the config, for either loop."""
    section = parse_section(config.get("pgpo", None))
    if not section.enable:
        return section, None
    corr = config.algorithm.get("rollout_correction", None)
    if corr is not None and corr.get("bypass_mode", False):
        raise ValueError("algorithm.rollout_correction.bypass_mode: PGPO computes the "
                         "dependency next to the recomputed old log-probs; bypass mode "
                         "skips them. Set it to false.")
    if section.blind.mode == "blacken":
        data_seed(config)  # checked before any rollout
    return section, pgpo_token_ids(processor, tokenizer)


def data_seed(config) -> int:
    """verl's ``data.seed`` (0 when unset): the seed of VPPO's blackened patches. Raises
    ``ValueError`` naming ``data.seed`` for anything but a non-negative int."""
    data = config.get("data", None) or {}
    seed = data.get("seed", None)
    if seed is None:
        return 0
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"data.seed: pgpo.blind.mode=blacken seeds its patches with it; "
                         f"expected a non-negative int or null, got {seed!r}")
    return seed


def make_blind_batch(batch: DataProto, section: PGPOSection, ids: dict[str, Any], *,
                     temperature: float, step: int = 0, seed: int = 0) -> DataProto:
    """The blind-pass batch of a padded rollout batch, at the rollout temperature.

    ``pgpo.blind.mode=blacken``: the patches blacked out are drawn from
    :func:`pgpo_torch.blacken_generator` ``(seed, step)`` (the driver builds the whole
    batch, so one draw for all processes; a rerun of the step repeats it)."""
    if section.blind.mode == "blacken":
        blind = blackened_batch(batch, probability=section.blind.blacken_probability,
                                generator=blacken_generator(int(seed), int(step)),
                                image_mean=ids["image_mean"], image_std=ids["image_std"])
    else:
        blind = blind_batch(batch, image_token_id=ids["image_token_id"],
                            pad_token_id=ids["pad_token_id"],
                            video_token_id=ids["video_token_id"],
                            include_markers=section.blind.include_markers,
                            marker_ids=ids["marker_ids"])
    blind.meta_info.setdefault("temperature", temperature)
    return blind


def blind_pass_metrics(visual: DataProto, blind: DataProto,
                       section: PGPOSection) -> dict[str, float]:
    """With ``pgpo.blind.mode=blacken``: ``<algorithm>/blackened_patch_frac``, the share of
    the batch's image patches the blind pass changed (about
    ``pgpo.blind.blacken_probability``: the perturbation is in effect, at its rate; a patch
    that was black already does not count); nothing for the drop pass."""
    if section.blind.mode != "blacken":
        return {}
    changed = total = 0
    for before, after in zip(visual.non_tensor_batch["multi_modal_inputs"],
                             blind.non_tensor_batch["multi_modal_inputs"], strict=True):
        if "pixel_values" not in before:
            continue  # a sample without an image
        rows = (after["pixel_values"] != before["pixel_values"]).flatten(1).any(-1)
        changed, total = changed + int(rows.sum()), total + rows.numel()
    return {f"{section.algorithm}/blackened_patch_frac": changed / max(total, 1)}


def _masked(dependency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, dependency, torch.zeros_like(dependency))


def sampled_dependency(visual_log_probs: torch.Tensor, blind_log_probs: torch.Tensor,
                       mask: torch.Tensor, section: PGPOSection) -> torch.Tensor:
    """``(B, T)`` dependency from the sampled tokens' log-probs (``k1``/``k2``/``k3``), 0 on
    padding."""
    core = section.core
    mask = mask.bool()
    dependency = pgpo_core.sampled_token_dependency(
        visual_log_probs.float(), blind_log_probs.float(), mask,
        estimator=core.estimator, clip=core.estimate_clip)
    if core.estimator == "k1":  # unbiased but signed; the weights need S >= 0
        dependency = dependency.clamp_min(0.0)
    return _masked(dependency, mask)


def exact_dependency_via(worker_group, visual: DataProto, blind: DataProto,
                         section: PGPOSection) -> torch.Tensor:
    """``(B, T)`` exact dependency: both padded batches go to the worker method
    ``compute_pgpo_dependency`` (:class:`pgpo_verl.PGPOActorRolloutRefWorker`), which
    unpads them itself. They travel padded: jagged mRoPE position ids (ragged on their
    last dimension) split by verl's dispatch (``BatchData.chunk``) and then serialized
    arrive unusable (``chunk_tensordict`` fails in the worker), which verl 0.9.1's v1 loop
    hit end to end."""
    visual_td = visual.to_tensordict()
    blind_td = blind.to_tensordict()
    tu.assign_non_tensor(visual_td, pgpo_chunk_size=section.core.chunk_size or 256)
    output = worker_group.compute_pgpo_dependency(visual_td, blind_td)
    mask = visual.batch["response_mask"].bool()
    return _masked(tu.get(output, DEPENDENCY_KEY).float(), mask)


def reshape(advantages: torch.Tensor, dependency: torch.Tensor, mask: torch.Tensor,
            section: PGPOSection) -> tuple[torch.Tensor, dict[str, float]]:
    """``A * w~`` in the advantages' dtype, and the step's ``pgpo/*`` metrics; with
    ``section.algorithm == "vppo"`` VPPO's ``f_i * A_i * [t in K_i]`` over the whole batch
    and the ``vppo/*`` metrics. verl's advantages are ``(B, T)`` (the response's ``A_i``
    on each of its tokens), which both core calls take as they are."""
    mask = mask.bool()
    if section.algorithm == "vppo":
        shaped = pgpo_core.vppo_advantages(advantages, dependency, mask,
                                           **section.vppo.advantage_kwargs())
        stats = pgpo_core.vppo_diagnostics(dependency, mask, scale=shaped.scale,
                                           token_mask=shaped.token_mask)
        return (shaped.advantages.to(advantages.dtype),
                {f"vppo/{name}": float(value) for name, value in stats.items()})
    kwargs = section.core.weight_kwargs()
    reshaped = pgpo_core.reshape_advantages(advantages, dependency, mask, **kwargs)
    stats = pgpo_core.weight_diagnostics(dependency, mask, **kwargs)
    return (reshaped.to(advantages.dtype),
            {f"pgpo/{name}": float(value) for name, value in stats.items()})
