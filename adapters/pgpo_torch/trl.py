"""PGPO in TRL: switch a GRPO run to PGPO by changing one import.

::

    # from trl import GRPOConfig, GRPOTrainer
    from pgpo_torch.trl import PGPOConfig, PGPOTrainer

    args = PGPOConfig(output_dir="out", num_generations=5)      # PGPO fields: pgpo_*
    trainer = PGPOTrainer(model=model, reward_funcs=reward, args=args,
                          train_dataset=dataset, processing_class=processor)
    trainer.train()

What changes against ``trl.GRPOTrainer`` (Ye et al., "Not All Tokens See Equally:
Perception-Grounded Policy Optimization for Large Vision-Language Models", arXiv
2604.01840, 2026):

1. After TRL generates and scores a rollout batch (``_generate_and_score_completions``),
   the rollout policy runs a *blind pass* over the same prompt + completion sequences
   (``pgpo_blind_pass``: ``"drop"`` the visual tokens keeping the original mRoPE
   positions, ``"mask"`` attention to them as in the paper, or ``"blacken"`` random
   patches as VPPO/PAPO), under ``torch.no_grad`` and in eval mode
   (:mod:`pgpo_torch.blind_pass`).
2. The token visual dependency ``S_t = KL(pi_I || pi_0)`` (Eq. 1) of every completion
   token is computed exactly from the two passes' last hidden states and the LM head,
   chunked over tokens (:func:`pgpo_torch.dependency.dependency_from_hidden_states`,
   ``pgpo_estimator="exact"``), or estimated from the log-probabilities of the generated
   token alone (``"k1"``/``"k2"``/``"k3"``, :func:`pgpo_core.sampled_token_dependency`;
   the paper trains with k3; k1 is clamped at 0). Distributions are taken at the
   trainer's sampling ``temperature``, as TRL's log-probabilities are.
3. TRL's ``(B,)`` group-relative advantages become ``(B, T)`` token advantages
   ``A~_{i,t} = A_i * w~_t`` (Eqs. 4-8, :func:`pgpo_core.reshape_advantages`), stored
   back under ``"advantages"``. TRL's own loss (every ``loss_type``: ``dapo``, ``grpo``,
   ``bnpo``, ``dr_grpo``, ``cispo``, ``sapo``, ``luspo``, ``vespo``) then uses them
   unchanged: in TRL 1.16 ``GRPOTrainer._compute_loss`` unsqueezes the advantages only
   when they are 1-D, so no loss method is overridden. The batch also carries
   ``"pgpo_dependency"`` ``(B, T)`` and ``"pgpo_sequence_advantages"`` (TRL's ``(B,)``
   advantages) for inspection.
4. PGPO's diagnostics (:func:`pgpo_core.weight_diagnostics`) are logged through TRL's
   metrics as ``pgpo/dependency_mean``, ``pgpo/frac_above_tau``, ``pgpo/weight_max``, ...

:class:`PGPOConfig` defaults follow the paper where TRL has the knob: the DAPO recipe
(``loss_type="dapo"``, token-level mean), ``epsilon=0.2``, ``epsilon_high=0.28``, no KL
term (``beta=0.0``), ``pgpo_tau=0.4``, ``pgpo_beta=2.0``. ``pgpo_tau=0, pgpo_beta=0`` gives
``w~ = 1``: exactly TRL's GRPO/DAPO. (The paper's rollout uses ``top_p=0.99``; TRL's
sampling defaults are kept, set them yourself.)

Refused, with a ``ValueError``/``TypeError`` at construction:

- ``use_liger_loss=True``: Liger's fused GRPO loss takes one advantage per sequence.
  (TRL 1.16 dropped the option; the field is kept here only to refuse configs written for
  older TRL with a clear message.) ``use_liger_kernel`` with layer kernels only, as TRL
  1.16 applies it, works.
- a text-only setup: a tokenizer instead of a processor, or a training dataset without an
  ``"image"``/``"images"`` column. PGPO needs images. (A batch that happens to hold no
  image at all gets the base algorithm's advantages, ``S = 0``, with a warning.)
- a model other than Qwen2.5-VL (the blind-pass builders are written for its mRoPE and
  ``mm_token_type_ids``), ``args`` that are a plain ``GRPOConfig``, and
  ``pgpo_blind_pass="mask"`` with flash attention (no 4-D masks; ``"drop"`` gives the same
  logits).

At run time, completions that contain images (tool responses that return images) raise a
``ValueError``: the blind pass hides the prompt's visual tokens only.

Not exercised by the tests (no GPU, no vLLM here): ``use_vllm=True``. The blind pass runs
on the trainer's own model (the rollout policy, the one TRL computes ``old_per_token_logps``
with), so nothing in it depends on the generation backend.

Version constraint: written against TRL 1.16 (``trl>=1.16,<2``). It relies on the keys of
the dict ``GRPOTrainer._generate_and_score_completions`` returns (``prompt_ids``,
``prompt_mask``, ``completion_ids``, ``completion_mask``, ``advantages``,
``pixel_values``, ``image_grid_thw``, ``mm_token_type_ids``, ``num_images``, ``tool_mask``)
and on ``_compute_loss`` accepting ``(B, T)`` advantages.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import trl
from transformers import PreTrainedTokenizerBase, ProcessorMixin
from trl.extras.profiling import profiling_context
from trl.models.utils import disable_gradient_checkpointing

import pgpo_core
from pgpo_torch import blind_pass as _blind
from pgpo_torch.advantages import batch_visual_dependency

__all__ = ["PGPOConfig", "PGPOTrainer", "SUPPORTED_MODEL_TYPES"]

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl",)
_DEPENDENCY_ESTIMATORS = ("exact", "k1", "k2", "k3")


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass
class PGPOConfig(trl.GRPOConfig):
    """``trl.GRPOConfig`` plus PGPO's hyper-parameters (the ``pgpo_*`` fields).

    Defaults from Ye et al. (2026): DAPO's clipped token-level loss (``loss_type="dapo"``,
    ``epsilon=0.2``, ``epsilon_high=0.28``), no KL penalty (``beta=0.0``), and the token
    weights of Eqs. 4-7 with ``tau=0.4``, ``beta=2.0``. :meth:`pgpo_core_config` gives the
    matching :class:`pgpo_core.PGPOConfig`; every ``pgpo_*`` value is validated on
    construction by it (errors name the ``pgpo_*`` field).
    """

    # TRL fields whose defaults follow the paper (DAPO recipe, no KL term).
    loss_type: str = field(default="dapo", metadata=_help(
        "TRL's loss type; PGPO (the paper) uses 'dapo': clipped ratio, token-level mean over "
        "the batch. All of TRL's loss types accept PGPO's (B, T) advantages."))
    epsilon: float = field(default=0.2, metadata=_help("Lower clip range (DAPO, PGPO: 0.2)."))
    epsilon_high: float | None = field(default=0.28, metadata=_help(
        "Upper clip range (DAPO, PGPO: 0.28). For loss_type='cispo' set it yourself "
        "(ScaleRL recommends 5.0)."))
    beta: float = field(default=0.0, metadata=_help(
        "KL coefficient against a reference model; PGPO uses none (0.0)."))

    # PGPO (Eqs. 1, 4-8).
    pgpo_tau: float = field(default=0.4, metadata=_help(
        "Threshold tau in [0, 1] on the normalised dependency I_t (Eq. 6): tokens below it "
        "are suppressed, tokens above boosted. 1 = suppress only, 0 = boost only."))
    pgpo_beta: float = field(default=2.0, metadata=_help(
        "Boost strength beta >= 0 of Eq. 6. tau=0 and beta=0 give TRL's advantages."))
    pgpo_eps: float = field(default=1e-6, metadata=_help(
        "The small constant eps > 0 of Eqs. 5-7."))
    pgpo_threshold: str = field(default="fixed", metadata=_help(
        "'fixed' (the paper) or 'quantile': threshold each response at the tau-quantile of "
        "its own I_t."))
    pgpo_low_weight_floor: float = field(default=0.0, metadata=_help(
        "Lift every token weight below this value to it, in [0, 1] (0 = off)."))
    pgpo_conserve_mass: bool = field(default=True, metadata=_help(
        "Apply Eq. 7 (each response's weights sum to its length). False = the paper's "
        "no-normalisation ablation."))
    pgpo_estimator: str = field(default="exact", metadata=_help(
        "Token visual dependency: 'exact' full-vocabulary KL from hidden states (chunked), "
        "or the single-sample estimators 'k1', 'k2', 'k3' (the paper trains with k3)."))
    pgpo_estimate_clip: float | None = field(default=None, metadata=_help(
        "Optional upper bound (> 0) on a k1/k2/k3 estimate."))
    pgpo_blind_pass: str = field(default="drop", metadata=_help(
        "Blind pass: 'drop' the visual tokens (original mRoPE positions, no vision tower; "
        "same logits as 'mask'), 'mask' attention to them (the paper), or 'blacken' random "
        "14x14 patches (VPPO/PAPO, for ablations)."))
    pgpo_blacken_prob: float = field(default=0.5, metadata=_help(
        "Probability of blackening a patch with pgpo_blind_pass='blacken' (VPPO 0.5, "
        "PAPO 0.6)."))
    pgpo_chunk_size: int | None = field(default=256, metadata=_help(
        "Tokens per chunk of the LM-head projection in the dependency; peak extra memory "
        "O(chunk x vocabulary). None = all tokens at once."))

    # Refused: kept so that configs written for older TRL fail with a clear message.
    use_liger_loss: bool = field(default=False, metadata=_help(
        "Not supported by PGPO: Liger's fused GRPO loss takes one advantage per sequence, "
        "PGPO's are per token. Must stay False."))

    def __post_init__(self) -> None:
        super().__post_init__()
        _refuse_liger_loss(self)
        if self.pgpo_blind_pass not in _blind.BLIND_MODES:
            raise ValueError(f"pgpo_blind_pass: must be one of "
                             f"{', '.join(map(repr, _blind.BLIND_MODES))}; got "
                             f"{self.pgpo_blind_pass!r}")
        p = self.pgpo_blacken_prob
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"pgpo_blacken_prob: must be a number in [0, 1], got {p!r}")
        self.pgpo_core_config()

    def pgpo_core_config(self) -> pgpo_core.PGPOConfig:
        """The :class:`pgpo_core.PGPOConfig` of these settings (weights and dependency).

        Its loss fields (``clip_low``, ``clip_high``, ``aggregation``) mirror
        ``epsilon``/``epsilon_high`` for reference only: TRL's loss is the one trained.
        """
        kwargs = dict(
            tau=self.pgpo_tau, beta=self.pgpo_beta, eps=self.pgpo_eps,
            threshold=self.pgpo_threshold, low_weight_floor=self.pgpo_low_weight_floor,
            conserve_mass=self.pgpo_conserve_mass, estimator=self.pgpo_estimator,
            temperature=self.temperature, chunk_size=self.pgpo_chunk_size,
            estimate_clip=self.pgpo_estimate_clip, clip_low=self.epsilon,
            clip_high=self.epsilon if self.epsilon_high is None else self.epsilon_high,
        )
        try:
            return pgpo_core.PGPOConfig(**kwargs)
        except (TypeError, ValueError) as error:
            message = str(error)
            core_name = message.split(":", 1)[0]
            ours = {"temperature": "temperature", "clip_low": "epsilon",
                    "clip_high": "epsilon_high"}.get(core_name, f"pgpo_{core_name}")
            raise type(error)(f"{ours}:{message.split(':', 1)[1]}" if ":" in message
                              else message) from error


def _refuse_liger_loss(args: Any) -> None:
    if getattr(args, "use_liger_loss", False):
        raise ValueError(
            "use_liger_loss: PGPO cannot run with Liger's fused GRPO loss, which takes one "
            "advantage per sequence; PGPO's advantages are per token (B, T). Set "
            "use_liger_loss=False (TRL's own loss is used, with every loss_type).")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for the two passes (their KL must not measure dropout noise)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class PGPOTrainer(trl.GRPOTrainer):
    """``trl.GRPOTrainer`` with PGPO's token-level advantages (Ye et al., 2026).

    Same constructor as ``trl.GRPOTrainer`` (``args`` must be a :class:`PGPOConfig`; when
    omitted, one is built with its defaults). See the module docstring for what changes
    and what is refused.
    """

    def __init__(self, model, reward_funcs=None, args: PGPOConfig | None = None,
                 train_dataset=None, eval_dataset=None, processing_class=None, **kwargs):
        if args is None:
            from trl.trainer.utils import get_config_model_id

            name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = PGPOConfig(f"{str(name).split('/')[-1]}-PGPO")
        if not isinstance(args, PGPOConfig):
            raise TypeError(
                f"args: PGPOTrainer needs a pgpo_torch.trl.PGPOConfig (a GRPOConfig with PGPO's "
                f"pgpo_* fields), got {type(args).__name__}; replace "
                "`from trl import GRPOConfig` with `from pgpo_torch.trl import PGPOConfig`")
        _refuse_liger_loss(args)
        self.pgpo_config = args.pgpo_core_config()
        if isinstance(processing_class, PreTrainedTokenizerBase):
            raise ValueError(
                "processing_class: PGPO needs images, but a text-only tokenizer "
                f"({type(processing_class).__name__}) was given; pass the model's processor "
                "(e.g. AutoProcessor / Qwen2_5_VLProcessor)")
        if processing_class is not None and not isinstance(processing_class, ProcessorMixin):
            raise TypeError(f"processing_class: expected a ProcessorMixin (a vision-language "
                            f"processor), got {type(processing_class).__name__}")
        if not isinstance(model, str):
            _check_model_type(model)
        _check_dataset_has_images("train_dataset", train_dataset)
        if isinstance(eval_dataset, Mapping):
            for key, dataset in eval_dataset.items():
                _check_dataset_has_images(f"eval_dataset[{key!r}]", dataset)
        else:
            _check_dataset_has_images("eval_dataset", eval_dataset)

        super().__init__(model=model, reward_funcs=reward_funcs, args=args,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        if not self._is_vlm:
            raise ValueError("processing_class: PGPO needs images, but the processing class is "
                             "a text-only tokenizer; pass the model's processor")
        backbone = self._pgpo_backbone()
        _check_model_type(backbone)
        attention = getattr(backbone.config, "_attn_implementation", None) or ""
        if args.pgpo_blind_pass == "mask" and "flash" in attention:
            raise ValueError(
                f"pgpo_blind_pass: 'mask' needs a 4-D attention mask, which attention "
                f"implementation {attention!r} does not take; use 'drop' (the same logits for a "
                "causal decoder, and cheaper) or eager/sdpa attention")
        self._pgpo_warned_no_images = False

    # ------------------------------------------------------------------ rollout side

    def _generate_and_score_completions(self, inputs):
        """TRL's rollout batch with PGPO's ``(B, T)`` advantages (Eq. 8) in place."""
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        response_mask = output["completion_mask"].bool()
        if output.get("tool_mask") is not None:
            response_mask = response_mask & output["tool_mask"].bool()
        with profiling_context(self, "pgpo_token_visual_dependency"):
            dependency = self._pgpo_token_visual_dependency(output, response_mask, mode)
        sequence_advantages = output["advantages"]
        weight_kwargs = self.pgpo_config.weight_kwargs()
        token_advantages = pgpo_core.reshape_advantages(
            sequence_advantages, dependency, response_mask, **weight_kwargs)
        self._pgpo_log(dependency, response_mask, mode)
        return {**output,
                "advantages": token_advantages.to(sequence_advantages.dtype),
                "pgpo_sequence_advantages": sequence_advantages,
                "pgpo_dependency": dependency}

    @torch.no_grad()
    def _pgpo_token_visual_dependency(self, output: Mapping[str, Any], response_mask: torch.Tensor,
                                      mode: str) -> torch.Tensor:
        """``(B, T)`` float32 token visual dependency of the rollout batch, 0 off the mask."""
        completion_ids = output["completion_ids"]
        batch_rows, response_length = completion_ids.shape
        if output.get("pixel_values") is None or output.get("mm_token_type_ids") is None:
            if not self._pgpo_warned_no_images:
                warnings.warn("PGPOTrainer: a rollout batch holds no image; its dependency is 0 "
                              "and its advantages are TRL's (PGPO needs images)", stacklevel=2)
                self._pgpo_warned_no_images = True
            return torch.zeros(completion_ids.shape, dtype=torch.float32,
                               device=completion_ids.device)
        mm_types = output["mm_token_type_ids"]
        if bool((mm_types[:, mm_types.shape[1] - response_length:] != 0).any()):
            raise ValueError("PGPOTrainer: completions contain images (e.g. tool responses that "
                             "return images); PGPO's blind pass hides the prompt's visual "
                             "tokens only")
        batch = {
            "input_ids": torch.cat([output["prompt_ids"], completion_ids], dim=1),
            "attention_mask": torch.cat([output["prompt_mask"], output["completion_mask"]],
                                        dim=1),
            "mm_token_type_ids": mm_types,
            "pixel_values": output["pixel_values"],
            "image_grid_thw": output["image_grid_thw"],
        }
        num_images = output.get("num_images")
        if num_images is None:
            num_images = [1] * batch_rows
        rows = (self.args.per_device_train_batch_size if mode == "train"
                else self.args.per_device_eval_batch_size)
        backbone = self._pgpo_backbone()
        generator = None
        if self.args.pgpo_blind_pass == "blacken":
            generator = torch.Generator(device=completion_ids.device)
            generator.manual_seed(int(self.args.seed) * 1_000_003 + int(self.state.global_step))
        parts = []
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), \
                _eval_mode(self.model):
            for start in range(0, batch_rows, rows):
                end = min(start + rows, batch_rows)
                chunk = _row_chunk(batch, start, end, num_images)
                dependency, _ = batch_visual_dependency(
                    backbone, chunk, response_mask[start:end], response_length=response_length,
                    config=self.pgpo_config, blind=self.args.pgpo_blind_pass,
                    blacken_p=self.args.pgpo_blacken_prob, generator=generator)
                parts.append(dependency)
        return torch.cat(parts, dim=0)

    def _pgpo_backbone(self):
        """The ``...ForConditionalGeneration`` module (PEFT's layers stay injected in it)."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _pgpo_log(self, dependency: torch.Tensor, response_mask: torch.Tensor, mode: str) -> None:
        stats = pgpo_core.weight_diagnostics(dependency, response_mask,
                                             **self.pgpo_config.weight_kwargs())
        for name, value in stats.items():
            gathered = self.accelerator.gather(value.reshape(1).float())
            if name.endswith("_max"):
                reduced = gathered.max()
            elif name.endswith("_min"):
                reduced = gathered.min()
            else:
                reduced = gathered.mean()
            self._metrics[mode][f"pgpo/{name}"].append(reduced.item())


def _check_model_type(model) -> None:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model: PGPOTrainer supports {', '.join(SUPPORTED_MODEL_TYPES)} (its blind pass "
            f"needs the model's multimodal RoPE and mm_token_type_ids); got model_type "
            f"{model_type!r}")


def _check_dataset_has_images(name: str, dataset) -> None:
    if dataset is None:
        return
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # an IterableDataset of unknown columns: checked per batch
        return
    if "image" not in columns and "images" not in columns:
        raise ValueError(
            f"{name}: PGPO needs images, but the dataset has no 'image' or 'images' column "
            f"(columns: {list(columns)}); for text-only data use trl.GRPOTrainer")


def _row_chunk(batch: Mapping[str, Any], start: int, end: int,
               num_images: list[int]) -> dict[str, Any]:
    """Rows ``start:end`` of a Qwen2.5-VL batch, with their images' patch rows."""
    if start == 0 and end == batch["input_ids"].shape[0]:
        return dict(batch)
    images_before = sum(num_images[:start])
    images_in = sum(num_images[start:end])
    grid = batch["image_grid_thw"]
    patches = grid.prod(dim=-1)
    first_patch = int(patches[:images_before].sum())
    n_patches = int(patches[images_before:images_before + images_in].sum())
    chunk = {k: v[start:end] for k, v in batch.items()
             if k not in ("pixel_values", "image_grid_thw")}
    chunk["pixel_values"] = batch["pixel_values"][first_patch:first_patch + n_patches]
    chunk["image_grid_thw"] = grid[images_before:images_before + images_in]
    return chunk

