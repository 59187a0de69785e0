"""Blind-pass builders for Hugging Face Qwen2.5-VL batches (PGPO's ``pi_0``).

PGPO (Ye et al., 2026, arXiv 2604.01840, Eq. 1) compares each next-token distribution
with the image, ``pi_I``, to the same distribution without it, ``pi_0``. This module turns
a rollout batch into the model inputs of such a *blind pass*, three ways:

(a) :func:`mask_visual_attention` -- the paper's pass: same sequence, an additive 4-D
    attention mask that hides every visual token from every query, and the original
    3-row mRoPE position ids (text tokens keep their positions).
(b) :func:`drop_visual_tokens` -- the visual tokens are removed from the sequence and the
    remaining tokens keep their original position ids; no vision tower, a shorter
    sequence. For a causal decoder it gives the same logits as (a).
(c) :func:`blacken_patches` -- VPPO/PAPO's corruption for ablations: random 14 x 14 patches
    of the image are set to black, the layout and the visual tokens stay.

The batch is the one a GRPO loop holds after generation: a dict (or ``BatchFeature``)
with ``input_ids``, ``attention_mask`` (``(B, P + T)``: left-padded prompts followed by
right-padded responses), ``pixel_values``, ``image_grid_thw`` and ``mm_token_type_ids``
(0 text, 1 image, 2 video; zeros on the response). ``response_length`` is ``T``, the
width of the response block (TRL's ``logits_to_keep``).

Visual tokens are the tokens with ``mm_token_type_ids != 0`` (``<|image_pad|>`` and
``<|video_pad|>``). The ``<|vision_start|>``/``<|vision_end|>`` markers are text tokens
for Qwen2.5-VL (type 0, 1-D positions) and carry no pixels; by default they are KEPT in
the blind pass, in (a) and (b) alike. ``include_markers=True`` hides/drops them too,
again identically in (a) and (b), so the two passes always see the same tokens.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, ContextManager, Mapping

import torch

__all__ = [
    "BLIND_MODES",
    "BlindPassConfig",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "visual_token_mask",
    "mrope_position_ids",
    "mask_visual_attention",
    "drop_visual_tokens",
    "blacken_patches",
    "blacken_generator",
    "blind_inputs",
    "visual_inputs",
    "response_outputs",
    "visual_and_blind_outputs",
]

BLIND_MODES = ("drop", "mask", "blacken")
# Qwen2-VL's image normalisation (the OpenAI CLIP statistics).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_REQUIRED = ("input_ids", "attention_mask", "mm_token_type_ids")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlindPassConfig:
    """How the blind pass ``pi_0`` hides the image; validated on construction.

    The one declaration of these settings, shared by :func:`compute_pgpo_advantages`,
    :class:`pgpo_torch.trl.PGPOConfig` and the reference trainer (``algo.blind``); each
    field's one-line help (the trainer's option text) is its ``metadata["help"]``.
    """

    mode: str = dataclasses.field(default="drop", metadata={
        "help": "Blind pass without the image: drop the image tokens keeping the text's "
                "position ids (= the paper's mask, cheaper), mask attention to them, or "
                "blacken random patches (VPPO/PAPO)."})
    """``"drop"`` the visual tokens, keeping the text's original mRoPE positions (no vision
    tower; for a causal decoder the same logits as ``"mask"``, and cheaper), ``"mask"``
    attention to them (the paper's pass), or ``"blacken"`` random 14 x 14 patches
    (VPPO/PAPO, for ablations)."""
    blacken_probability: float = dataclasses.field(default=0.5, metadata={
        "help": "Probability of blacking out each patch (mode blacken only)."})
    """Probability of blacking out each patch with ``mode="blacken"`` (VPPO 0.5, PAPO 0.6)."""
    include_markers: bool = dataclasses.field(default=False, metadata={
        "help": "Also hide the <|vision_start|>/<|vision_end|> marker tokens."})
    """Also hide (``"mask"``) or drop (``"drop"``) the ``<|vision_start|>``/``<|vision_end|>``
    markers."""

    def __post_init__(self) -> None:
        if self.mode not in BLIND_MODES:
            raise ValueError(f"mode: must be one of {', '.join(map(repr, BLIND_MODES))}; "
                             f"got {self.mode!r}")
        p = self.blacken_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"blacken_probability: must be a number in [0, 1], got {p!r}")
        if not isinstance(self.include_markers, bool):
            raise TypeError(f"include_markers: expected a bool, got "
                            f"{type(self.include_markers).__name__}")

    @classmethod
    def of(cls, blind: "BlindPassConfig | str") -> "BlindPassConfig":
        """``blind`` itself, or ``BlindPassConfig(mode=blind)`` for a mode name."""
        if isinstance(blind, cls):
            return blind
        if isinstance(blind, str):
            if blind not in BLIND_MODES:
                raise ValueError(f"blind: must be one of {', '.join(map(repr, BLIND_MODES))} "
                                 f"or a BlindPassConfig; got {blind!r}")
            return cls(mode=blind)
        raise TypeError(f"blind: expected a BlindPassConfig or a mode name, got "
                        f"{type(blind).__name__}")


def _check_batch(batch: Mapping[str, Any], response_length: int | None = None) -> None:
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch: expected a mapping of tensors, got {type(batch).__name__}")
    for key in _REQUIRED:
        if key not in batch or batch[key] is None:
            raise ValueError(
                f"batch: missing {key!r} (needed: {', '.join(_REQUIRED)}; pass the processor's "
                "mm_token_type_ids, or Qwen2.5-VL silently falls back to 1-D positions)")
        if not isinstance(batch[key], torch.Tensor) or batch[key].ndim != 2:
            raise ValueError(f"batch[{key!r}]: expected a (B, L) tensor")
    shape = tuple(batch["input_ids"].shape)
    for key in _REQUIRED[1:]:
        if tuple(batch[key].shape) != shape:
            raise ValueError(f"batch[{key!r}]: shape {tuple(batch[key].shape)} does not match "
                             f"input_ids' {shape}")
    if response_length is not None:
        if not isinstance(response_length, int) or isinstance(response_length, bool):
            raise TypeError(f"response_length: expected an int, got "
                            f"{type(response_length).__name__}")
        if not 1 <= response_length < shape[1]:
            raise ValueError(f"response_length: must lie in [1, {shape[1] - 1}] for a sequence "
                             f"of length {shape[1]}, got {response_length}")
        if bool((batch["mm_token_type_ids"][:, shape[1] - response_length:] != 0).any()):
            raise ValueError("batch['mm_token_type_ids']: visual tokens inside the response "
                             "block (the last response_length columns)")


def visual_token_mask(batch: Mapping[str, Any], *, include_markers: bool = False,
                      marker_ids: tuple[int, ...] = ()) -> torch.Tensor:
    """``(B, L)`` boolean, True on the tokens a blind pass hides.

    The visual tokens (``mm_token_type_ids != 0``), plus, with ``include_markers``, the
    tokens whose id is in ``marker_ids`` (``<|vision_start|>``, ``<|vision_end|>``).
    """
    _check_batch(batch)
    hidden = batch["mm_token_type_ids"] != 0
    if include_markers:
        if not marker_ids:
            raise ValueError("marker_ids: needed with include_markers=True")
        for token_id in marker_ids:
            hidden = hidden | (batch["input_ids"] == token_id)
    return hidden


def _marker_ids(model) -> tuple[int, ...]:
    config = model.config
    return (config.vision_start_token_id, config.vision_end_token_id)


def mrope_position_ids(model, batch: Mapping[str, Any]) -> torch.Tensor:
    """The original ``(3, B, L)`` (temporal, height, width) position ids of Qwen2.5-VL.

    Built by ``model.model.get_rope_index`` from ``input_ids``, ``mm_token_type_ids``,
    ``image_grid_thw`` (and ``video_grid_thw``) and the 2-D ``attention_mask``; padding
    gets position 0. A batch without any image or video gets 1-D positions on all rows.
    """
    _check_batch(batch)
    mask = batch["attention_mask"]
    grids = {k: batch.get(k) for k in ("image_grid_thw", "video_grid_thw",
                                       "second_per_grid_ts")}
    if grids["image_grid_thw"] is None and grids["video_grid_thw"] is None:
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0) * mask.long()
        return positions.unsqueeze(0).expand(3, -1, -1).contiguous()
    positions, _ = model.model.get_rope_index(
        batch["input_ids"], batch["mm_token_type_ids"], attention_mask=mask, **grids)
    return positions


def _model_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def mask_visual_attention(model, batch: Mapping[str, Any], *, include_markers: bool = False,
                          keep_pixels: bool = True,
                          position_ids: torch.Tensor | None = None) -> dict[str, Any]:
    """Blind pass (a), the paper's: hide every visual token from every query.

    Returns model keyword arguments: the same ``input_ids``, the original 3-row mRoPE
    ``position_ids`` (:func:`mrope_position_ids`), and an additive ``(B, 1, L, L)``
    attention mask in the model's dtype: 0 where query ``i`` may attend key ``j``
    (``j <= i``, ``j`` a real token, ``j`` not hidden), the dtype's most negative value
    elsewhere. The rows of hidden tokens still attend the text before them (so no row is
    empty), but no other token ever sees them.

    Args:
      model: a ``Qwen2_5_VLForConditionalGeneration`` (eager or SDPA attention; flash
        attention takes no 4-D masks: use :func:`drop_visual_tokens` there).
      batch: the rollout batch (see the module docstring).
      include_markers: also hide ``<|vision_start|>``/``<|vision_end|>``.
      keep_pixels: pass ``pixel_values``/``image_grid_thw`` on, as the paper's second
        forward does (the vision tower runs, though its output reaches no other
        token); ``False`` skips the vision tower with the same result.
      position_ids: the precomputed ``(3, B, L)`` ids, if already at hand.
    """
    _check_batch(batch)
    impl = getattr(model.config, "_attn_implementation", None) or ""
    if "flash" in impl:
        raise ValueError(f"model: attention implementation {impl!r} takes no 4-D attention "
                         "mask; use drop_visual_tokens (same logits) or eager/sdpa attention")
    hidden = visual_token_mask(batch, include_markers=include_markers,
                               marker_ids=_marker_ids(model) if include_markers else ())
    pos = mrope_position_ids(model, batch) if position_ids is None else position_ids
    ids = batch["input_ids"]
    length = ids.shape[1]
    key_ok = batch["attention_mask"].bool() & ~hidden  # (B, L)
    causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
    allowed = causal.unsqueeze(0) & key_ok.unsqueeze(1)  # (B, Lq, Lk)
    dtype = _model_dtype(model)
    additive = torch.zeros(allowed.shape, dtype=dtype, device=ids.device)
    additive = additive.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)
    inputs: dict[str, Any] = dict(input_ids=ids, attention_mask=additive, position_ids=pos)
    if keep_pixels:
        for key in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
            if batch.get(key) is not None:
                inputs[key] = batch[key]
    return inputs


def drop_visual_tokens(model, batch: Mapping[str, Any], *, response_length: int,
                       include_markers: bool = False,
                       position_ids: torch.Tensor | None = None) -> dict[str, Any]:
    """Blind pass (b): remove the visual tokens, keep everyone else's original positions.

    The prompt block (the first ``L - response_length`` columns) keeps its real,
    non-hidden tokens, left-padded again to the longest such row; the response block is
    kept as it is, so response column ``t`` stays response token ``t``. Every kept token
    carries its original 3-row mRoPE position id, so (for a causal decoder) its logits
    equal those of :func:`mask_visual_attention`. No pixels are passed: the vision tower
    does not run, and the sequence is shorter by the number of visual tokens.

    Returns model keyword arguments: ``input_ids``, ``attention_mask`` (2-D),
    ``position_ids`` ``(3, B, L')``. The new width ``L'`` is read from the data (one
    device-to-host sync).
    """
    _check_batch(batch, response_length)
    hidden = visual_token_mask(batch, include_markers=include_markers,
                               marker_ids=_marker_ids(model) if include_markers else ())
    pos = mrope_position_ids(model, batch) if position_ids is None else position_ids
    ids, mask = batch["input_ids"], batch["attention_mask"]
    batch_size, length = ids.shape
    prompt_width = length - response_length
    keep = mask[:, :prompt_width].bool() & ~hidden[:, :prompt_width]
    kept = keep.sum(dim=1)  # (B,)
    new_width = int(kept.max())  # shape-defining: one host sync
    # Right-align the kept prompt tokens of each row (left padding), in order.
    dest = (new_width - kept).unsqueeze(1) + keep.long().cumsum(dim=1) - 1
    dest = torch.where(keep, dest, torch.full_like(dest, new_width))  # dropped -> overflow
    pad_id = _pad_id(model)
    new_ids = ids.new_full((batch_size, new_width + 1), pad_id)
    new_mask = mask.new_zeros((batch_size, new_width + 1))
    new_pos = pos.new_zeros((3, batch_size, new_width + 1))
    new_ids.scatter_(1, dest, ids[:, :prompt_width])
    new_mask.scatter_(1, dest, mask[:, :prompt_width])
    new_pos.scatter_(2, dest.unsqueeze(0).expand(3, -1, -1), pos[:, :, :prompt_width])
    # The overflow column received the dropped tokens; cut it off.
    new_ids = torch.cat([new_ids[:, :new_width], ids[:, prompt_width:]], dim=1)
    new_mask = torch.cat([new_mask[:, :new_width], mask[:, prompt_width:]], dim=1)
    new_pos = torch.cat([new_pos[:, :, :new_width], pos[:, :, prompt_width:]], dim=2)
    return dict(input_ids=new_ids, attention_mask=new_mask, position_ids=new_pos)


def _pad_id(model) -> int:
    text = getattr(model.config, "text_config", model.config)
    pad = getattr(text, "pad_token_id", None)
    return 0 if pad is None else int(pad)


def blacken_generator(seed: int, step: int, process_index: int = 0, *,
                      device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for :func:`blacken_patches` whose masks are a pure function of
    ``(seed, step, process_index)``: the same on a rerun or resume of a step, and
    different on each process of a data-parallel run (each process blackens its own
    images independently, as if one process drew them all) and on each step.

    Seeded with ``seed * 1_000_003 + step * 7919 + process_index`` (distinct for every
    ``process_index < 7919``)."""
    for name, value in (("seed", seed), ("step", step), ("process_index", process_index)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + step * 7919 + process_index)
    return generator


def blacken_patches(pixel_values: torch.Tensor, *, p: float = 0.5,
                    generator: torch.Generator | None = None,
                    image_mean: tuple[float, ...] = OPENAI_CLIP_MEAN,
                    image_std: tuple[float, ...] = OPENAI_CLIP_STD) -> torch.Tensor:
    """Blind pass (c): black out each 14 x 14 patch with probability ``p`` (VPPO, PAPO).

    Qwen2.5-VL's ``pixel_values`` are ``(N, C * T_p * 14 * 14)``: one row per 14 x 14
    patch (its ``T_p`` temporal copies included), normalised per channel. A blackened
    row holds, in every channel ``c``, the normalised value of a black pixel,
    ``(0 - mean_c) / std_c``. The layout, the grid and the visual tokens are unchanged.

    Args:
      pixel_values: ``(N, C * T_p * P * P)`` normalised patches.
      p: probability of blackening a patch, in [0, 1] (VPPO 0.5, PAPO 0.6).
      generator: a seeded ``torch.Generator`` on the tensor's device, for reproducible
        masks.
      image_mean, image_std: the processor's normalisation, one entry per channel.

    Returns:
      a new tensor like ``pixel_values``.
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 2:
        raise ValueError("pixel_values: expected an (N, C * T_p * P * P) tensor")
    if not pixel_values.is_floating_point():
        raise TypeError(f"pixel_values: expected a floating dtype, got {pixel_values.dtype}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p: must be a number in [0, 1], got {p!r}")
    channels = len(image_mean)
    if len(image_std) != channels or pixel_values.shape[1] % channels:
        raise ValueError(f"image_mean/image_std: {channels} channels do not divide the patch "
                         f"width {pixel_values.shape[1]} (or their lengths differ)")
    n = pixel_values.shape[0]
    dev, dtype = pixel_values.device, pixel_values.dtype
    draws = torch.rand(n, generator=generator, device=dev)
    black_rows = (draws < p).view(n, 1, 1)
    mean = torch.tensor(image_mean, dtype=torch.float32, device=dev)
    std = torch.tensor(image_std, dtype=torch.float32, device=dev)
    black = ((0.0 - mean) / std).to(dtype).view(1, channels, 1)
    per_channel = pixel_values.view(n, channels, -1)
    return torch.where(black_rows, black, per_channel).reshape(pixel_values.shape)


def visual_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The visual pass's model keyword arguments (the batch as is, mRoPE included)."""
    _check_batch(batch)
    keys = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
            "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
    return {k: batch[k] for k in keys if batch.get(k) is not None}


def blind_inputs(model, batch: Mapping[str, Any], *, response_length: int,
                 blind: BlindPassConfig | str = "drop",
                 generator: torch.Generator | None = None,
                 position_ids: torch.Tensor | None = None) -> dict[str, Any]:
    """Model keyword arguments of the blind pass ``blind`` (a :class:`BlindPassConfig`, or
    a mode name in ``BLIND_MODES`` for its defaults).

    ``"drop"``: :func:`drop_visual_tokens`; ``"mask"``: :func:`mask_visual_attention`;
    ``"blacken"``: the visual inputs with :func:`blacken_patches` applied
    (``blind.blacken_probability``, ``generator``; the image statistics are Qwen2-VL's).
    """
    blind = BlindPassConfig.of(blind)
    _check_batch(batch, response_length)
    if blind.mode == "drop":
        return drop_visual_tokens(model, batch, response_length=response_length,
                                  include_markers=blind.include_markers,
                                  position_ids=position_ids)
    if blind.mode == "mask":
        return mask_visual_attention(model, batch, include_markers=blind.include_markers,
                                     position_ids=position_ids)
    if batch.get("pixel_values") is None:
        raise ValueError("batch: blind mode 'blacken' needs 'pixel_values'")
    inputs = visual_inputs(batch)
    inputs["pixel_values"] = blacken_patches(batch["pixel_values"], p=blind.blacken_probability,
                                             generator=generator)
    return inputs


def response_outputs(model, inputs: Mapping[str, Any], *, response_length: int,
                     output: str = "logits") -> torch.Tensor:
    """Run ``model`` and return response-aligned logits or last hidden states.

    Position ``L - response_length - 1 + t`` of the sequence predicts response token
    ``t``, so the result's ``[b, t]`` predicts response token ``t``. Only those
    ``response_length`` positions go through the LM head.

    Args:
      model: a ``Qwen2_5_VLForConditionalGeneration`` (anything with ``.model`` returning
        the final-normed hidden states and an ``.lm_head``).
      inputs: model keyword arguments (:func:`visual_inputs`, :func:`blind_inputs`).
      response_length: ``T``, the width of the response block.
      output: ``"logits"`` ``(B, T, V)`` or ``"hidden"`` ``(B, T, H)`` (the input of the
        LM head; see :func:`pgpo_torch.dependency_from_hidden_states`).
    """
    if output not in ("logits", "hidden"):
        raise ValueError(f"output: must be 'logits' or 'hidden', got {output!r}")
    length = inputs["input_ids"].shape[1]
    if not isinstance(response_length, int) or not 1 <= response_length < length:
        raise ValueError(f"response_length: must be an int in [1, {length - 1}], got "
                         f"{response_length!r}")
    hidden = model.model(**inputs, use_cache=False).last_hidden_state
    hidden = hidden[:, length - response_length - 1: length - 1, :]
    return hidden if output == "hidden" else model.lm_head(hidden)


def visual_and_blind_outputs(model, batch: Mapping[str, Any], *, response_length: int,
                             blind: BlindPassConfig | str = "drop", output: str = "logits",
                             generator: torch.Generator | None = None,
                             timer: Callable[[str], ContextManager[Any]] | None = None,
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(visual, blind)`` response-aligned logits or hidden states of one batch.

    Both ``(B, T, V)`` (``output="logits"``) or ``(B, T, H)`` (``output="hidden"``),
    ``[b, t]`` predicting response token ``t``. Gradients flow if enabled by the caller
    (PGPO's dependency is computed under ``torch.no_grad``). ``timer(name)``, if given,
    is a context manager wrapped around the visual pass (``"old_logprobs"``) and the
    blind pass (``"blind_pass"``), e.g. for a trainer's phase timings.
    """
    timed = timer or _untimed
    blind = BlindPassConfig.of(blind)
    _check_batch(batch, response_length)
    with timed("old_logprobs"):
        positions = mrope_position_ids(model, batch) if blind.mode != "blacken" else None
        visual = response_outputs(model, visual_inputs(batch), response_length=response_length,
                                  output=output)
    with timed("blind_pass"):
        blind_kwargs = blind_inputs(model, batch, response_length=response_length, blind=blind,
                                    generator=generator, position_ids=positions)
        return visual, response_outputs(model, blind_kwargs, response_length=response_length,
                                        output=output)


def _untimed(name: str) -> ContextManager[Any]:
    return contextlib.nullcontext()
