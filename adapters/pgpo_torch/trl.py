"""PGPO (and VPPO) in TRL: switch a GRPO run to PGPO by changing one import.

::

    # from trl import GRPOConfig, GRPOTrainer
    from pgpo_torch.trl import PGPOConfig, PGPOTrainer

    args = PGPOConfig(output_dir="out", num_generations=5,
                      pgpo=pgpo_core.PGPOConfig(tau=0.4, estimator="k3"))  # optional
    trainer = PGPOTrainer(model=model, reward_funcs=reward, args=args,
                          train_dataset=dataset, processing_class=processor)
    trainer.train()

What changes against ``trl.GRPOTrainer`` (Ye et al., "Not All Tokens See Equally:
Perception-Grounded Policy Optimization for Large Vision-Language Models", arXiv
2604.01840, 2026):

1. After TRL generates and scores a rollout batch (``_generate_and_score_completions``),
   the rollout policy runs a *blind pass* over the same prompt + completion sequences
   (``blind_pass``, a :class:`pgpo_torch.BlindPassConfig`: ``"drop"`` the visual tokens keeping the original mRoPE
   positions, ``"mask"`` attention to them as in the paper, or ``"blacken"`` random
   patches as VPPO/PAPO), under ``torch.no_grad`` and in eval mode
   (:mod:`pgpo_torch.blind_pass`).
2. The token visual dependency ``S_t = KL(pi_I || pi_0)`` (Eq. 1) of every completion
   token is computed exactly from the two passes' last hidden states and the LM head,
   chunked over tokens (:func:`pgpo_torch.dependency.dependency_from_hidden_states`,
   ``pgpo.estimator="exact"``), or estimated from the log-probabilities of the generated
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
term (``beta=0.0``), and ``pgpo`` = ``pgpo_core.PGPOConfig()`` (``tau=0.4``, ``beta=2.0``).
``pgpo_core.PGPOConfig(tau=0, beta=0)`` gives
``w~ = 1``: exactly TRL's GRPO/DAPO. (The paper's rollout uses ``top_p=0.99``; TRL's
sampling defaults are kept, set them yourself.)

VPPO (Huang et al., arXiv 2510.09285), the paper's strongest baseline, is the same change
with ``VPPOConfig`` / ``VPPOTrainer``: the dependency (k3, clamped at 10) against the image
with random patches blacked out, then :func:`pgpo_core.vppo_advantages` (trajectory
factors and the top-``p`` token filter) instead of step 3, ``vppo/*`` metrics
(:func:`pgpo_core.vppo_diagnostics`) instead of step 4, and the recipe's dual clip as TRL's
``delta=3.0`` (see :class:`VPPOConfig`).

Refused, with a ``ValueError``/``TypeError`` at construction:

- ``use_liger_loss=True``: Liger's fused GRPO loss takes one advantage per sequence.
  (TRL 1.16 dropped the option; the field is kept here only to refuse configs written for
  older TRL with a clear message.) ``use_liger_kernel`` with layer kernels only, as TRL
  1.16 applies it, works.
- a text-only setup: a tokenizer instead of a processor, or a training dataset without an
  ``"image"``/``"images"`` column. PGPO needs images. (A batch that happens to hold no
  image at all gets the base algorithm's advantages, TRL's ``A_i`` on every token, and
  ``S = 0``, with a warning; VPPO's too, rather than a filter of tied zeros.)
- a model other than Qwen2.5-VL (the blind-pass builders are written for its mRoPE and
  ``mm_token_type_ids``), ``args`` that are a plain ``GRPOConfig``, and
  ``blind_pass`` mode ``"mask"`` with flash attention (no 4-D masks; ``"drop"`` gives the same
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
import dataclasses
import json
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
from pgpo_torch.advantages import batch_visual_dependency
from pgpo_torch.blind_pass import BlindPassConfig, blacken_generator

__all__ = ["PGPOConfig", "PGPOTrainer", "SUPPORTED_MODEL_TYPES", "VPPOConfig", "VPPOTrainer"]

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl",)


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass
class _VisualCreditConfig(trl.GRPOConfig):
    """The fields :class:`PGPOConfig` and :class:`VPPOConfig` share: TRL's fields whose
    defaults follow the papers (DAPO's clipped token-level loss, no KL term), the blind
    pass, and the refused Liger loss."""

    # TRL fields whose defaults follow the paper (DAPO recipe, no KL term).
    loss_type: str = field(default="dapo", metadata=_help(
        "TRL's loss type; PGPO and VPPO (their papers) use 'dapo': clipped ratio, "
        "token-level mean over the batch. All of TRL's loss types accept (B, T) token "
        "advantages."))
    epsilon: float = field(default=0.2, metadata=_help(
        "Lower clip range (DAPO, PGPO, VPPO: 0.2)."))
    epsilon_high: float | None = field(default=0.28, metadata=_help(
        "Upper clip range (DAPO, PGPO, VPPO: 0.28). For loss_type='cispo' set it yourself "
        "(ScaleRL recommends 5.0)."))
    beta: float = field(default=0.0, metadata=_help(
        "KL coefficient against a reference model; PGPO and VPPO use none (0.0)."))

    blind_pass: BlindPassConfig | str | dict | None = field(default=None, metadata=_help(
        "The blind pass: a pgpo_torch.BlindPassConfig, a dict or a JSON string of its fields "
        "(mode: 'drop', 'mask' or 'blacken'; blacken_probability; include_markers), or a "
        "mode name. None = 'drop' (the visual tokens removed, original mRoPE positions; "
        "the same logits as the paper's 'mask', and cheaper)."))

    # Refused: kept so that configs written for older TRL fail with a clear message.
    use_liger_loss: bool = field(default=False, metadata=_help(
        "Not supported: Liger's fused GRPO loss takes one advantage per sequence, PGPO's "
        "and VPPO's are per token. Must stay False."))

    #: The method's name in messages.
    _method = "PGPO"

    def __post_init__(self) -> None:
        super().__post_init__()
        _refuse_liger_loss(self)

    def to_dict(self) -> dict[str, Any]:
        """TRL's serialisation (JSON-ready), with the nested configs as dicts."""
        d = super().to_dict()
        for name in ("pgpo", "vppo", "blind_pass"):
            if dataclasses.is_dataclass(d.get(name)):
                d[name] = dataclasses.asdict(d[name])
        return d


@dataclass
class PGPOConfig(_VisualCreditConfig):
    """``trl.GRPOConfig`` plus PGPO's settings: ``pgpo`` (a :class:`pgpo_core.PGPOConfig`)
    and ``blind_pass`` (a :class:`pgpo_torch.BlindPassConfig`), declared there only.

    Defaults from Ye et al. (2026): DAPO's clipped token-level loss (``loss_type="dapo"``,
    ``epsilon=0.2``, ``epsilon_high=0.28``), no KL penalty (``beta=0.0``), and the token
    weights of Eqs. 4-7 with ``tau=0.4``, ``beta=2.0``. After construction ``pgpo`` is a
    :class:`pgpo_core.PGPOConfig` carrying TRL's ``temperature`` and clip range (the ones
    the dependency and the loss use) and ``blind_pass`` a :class:`BlindPassConfig`; both
    may be given as dicts or JSON strings (the command line), and errors name the nested
    field (``pgpo.tau``, ``blind_pass.mode``).
    """

    # PGPO (Eqs. 1, 4-8): pgpo_core's and pgpo_torch's configs, nested, declared there only.
    pgpo: pgpo_core.PGPOConfig | str | dict | None = field(default=None, metadata=_help(
        "PGPO's hyper-parameters: a pgpo_core.PGPOConfig, a dict or a JSON string of its "
        "fields (tau, beta, eps, threshold, low_weight_floor, conserve_mass, estimator, "
        "chunk_size, estimate_clip), e.g. '{\"tau\": 0.3, \"estimator\": \"k3\"}'. None = "
        "the paper's defaults. Its temperature, clip_low and clip_high are TRL's "
        "temperature, epsilon and epsilon_high (set those); its loss-only fields "
        "(dual_clip, aggregation) must stay at their defaults: TRL's loss_type decides."))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.blind_pass = _nested("blind_pass", BlindPassConfig, self.blind_pass)
        self.pgpo = _with_trl_settings(_nested("pgpo", pgpo_core.PGPOConfig, self.pgpo), self)


@dataclass
class VPPOConfig(_VisualCreditConfig):
    """``trl.GRPOConfig`` plus VPPO's settings (Huang et al., arXiv 2510.09285): ``vppo``
    (a :class:`pgpo_core.VPPOConfig`, its published recipe by default) and ``blind_pass``.

    The recipe's loss in TRL's terms: ``loss_type="dapo"`` (token-mean over every
    completion token, the filtered ones included, as VPPO's code divides), ``epsilon=0.2``,
    ``epsilon_high=0.28``, and ``delta=3.0``: TRL's two-sided clipping caps the ratio of
    the unclipped term at ``delta``, which for negative advantages is the dual clip of
    VPPO's EasyR1 code (``clip_ratio_dual=3``) and changes nothing for positive ones (the
    clipped term is the smaller there). ``vppo``'s ``clip_low``, ``clip_high`` and
    ``dual_clip`` are TRL's ``epsilon``, ``epsilon_high`` and ``delta`` after construction
    (set those). The dependency: ``vppo.estimator`` (k3) clamped at ``vppo.estimate_clip``
    (10) between the real image and ``blind_pass``, by default each 14 x 14 patch blacked
    out with probability ``vppo.patch_drop_prob`` (0.5). Not in it, as in the reference
    trainer: the recipe's entropy-penalty term (0.06; TRL's ``entropy_coef`` is a bonus
    with a target, not the same term) and its group filtering by accuracy.
    """

    delta: float | None = field(default=3.0, metadata=_help(
        "TRL's two-sided clipping bound; VPPO: 3.0, the dual clip of its EasyR1 loss "
        "(the same loss for negative advantages, no change for positive ones)."))
    blind_pass: BlindPassConfig | str | dict | None = field(default=None, metadata=_help(
        "The perturbed pass the dependency is taken against: a pgpo_torch.BlindPassConfig, "
        "a dict or JSON string of its fields, or a mode name. None = VPPO's: 'blacken' at "
        "vppo.patch_drop_prob."))
    vppo: pgpo_core.VPPOConfig | str | dict | None = field(default=None, metadata=_help(
        "VPPO's hyper-parameters: a pgpo_core.VPPOConfig, a dict or a JSON string of its "
        "fields (top_p, scale_min, range_eps, eps, trajectory_shaping, token_filtering, "
        "estimator, estimate_clip, patch_size, patch_drop_prob). None = the published "
        "recipe (top_p 0.4, scale_min 0.9). Its clip_low, clip_high and dual_clip are TRL's "
        "epsilon, epsilon_high and delta (set those); aggregation stays token-mean "
        "(TRL's loss_type decides)."))

    _method = "VPPO"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delta is not None and self.loss_type not in _LOSSES_WITH_DELTA:
            raise ValueError(
                f"delta: TRL's loss_type {self.loss_type!r} does not apply it, so VPPO's dual "
                f"clip (delta={self.delta}) would not act; use one of {_LOSSES_WITH_DELTA} "
                "(the recipe: 'dapo'), or set delta=None to drop the dual clip")
        vppo = _nested("vppo", pgpo_core.VPPOConfig, self.vppo)
        self.vppo = _with_trl_settings(vppo, self, trl_names=_VPPO_FROM_TRL)
        if self.blind_pass is None:
            self.blind_pass = BlindPassConfig(mode="blacken",
                                              blacken_probability=self.vppo.patch_drop_prob)
        self.blind_pass = _nested("blind_pass", BlindPassConfig, self.blind_pass)
        if (self.blind_pass.mode == "blacken"
                and self.blind_pass.blacken_probability != self.vppo.patch_drop_prob):
            raise ValueError(
                f"blind_pass.blacken_probability: VPPO blackens patches with "
                f"vppo.patch_drop_prob ({self.vppo.patch_drop_prob}); got "
                f"{self.blind_pass.blacken_probability}. Set vppo.patch_drop_prob and leave "
                "blind_pass out")

    def dependency_config(self) -> pgpo_core.PGPOConfig:
        """The dependency settings in the form the blind-pass code reads them (VPPO's
        estimator and clamp at TRL's temperature); its weighting fields go unused."""
        return pgpo_core.PGPOConfig(estimator=self.vppo.estimator,
                                    estimate_clip=self.vppo.estimate_clip,
                                    temperature=self.temperature)


def _nested(name: str, cls: type, value: Any) -> Any:
    """``value`` as a ``cls``: None -> defaults; a dict or JSON string -> its fields; for
    ``blind_pass`` also a mode name. Errors name ``name.field``."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        text = value.strip()
        if cls is BlindPassConfig and not text.startswith("{"):
            value = {"mode": text}  # a mode name
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{name}: not a JSON object of {cls.__name__} fields: "
                                 f"{error}") from None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a {cls.__name__}, a dict or a JSON string, got "
                        f"{type(value).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{name}.{unknown[0]}: unknown field of {cls.__name__}; fields are "
                         f"{', '.join(sorted(known))}")
    try:
        return cls(**value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}.{error}") from None


# pgpo_core.PGPOConfig fields that TRL's own arguments set.
_FROM_TRL = {"temperature": "temperature", "clip_low": "epsilon", "clip_high": "epsilon_high"}
# pgpo_core.VPPOConfig's (it has no temperature: the dependency is taken at TRL's).
_VPPO_FROM_TRL = {"clip_low": "epsilon", "clip_high": "epsilon_high", "dual_clip": "delta"}
# TRL 1.16's loss types that clamp the ratio at ``delta`` (GRPOTrainer._compute_loss).
_LOSSES_WITH_DELTA = ("dapo", "grpo", "bnpo", "dr_grpo", "luspo")
# pgpo_core.PGPOConfig / VPPOConfig loss fields TRL's loss has no use for.
_LOSS_ONLY = ("dual_clip", "aggregation")


def _with_trl_settings(core: Any, args: Any, trl_names: Mapping[str, str] = _FROM_TRL) -> Any:
    """``core`` (a ``pgpo_core.PGPOConfig`` or ``VPPOConfig``) with TRL's values for the
    fields ``trl_names`` maps to TRL's arguments; a conflicting value is an error, and so
    is a loss-only field TRL does not set off its default."""
    name = "vppo" if isinstance(core, pgpo_core.VPPOConfig) else "pgpo"
    default = type(core)()
    values = {"temperature": args.temperature, "clip_low": args.epsilon,
              "clip_high": args.epsilon if args.epsilon_high is None else args.epsilon_high,
              "dual_clip": getattr(args, "delta", None)}
    trl_values = {core_name: values[core_name] for core_name in trl_names}
    for core_name, trl_name in trl_names.items():
        mine = getattr(core, core_name)
        if mine != getattr(default, core_name) and mine != trl_values[core_name]:
            raise ValueError(
                f"{name}.{core_name}: TRL's {trl_name} sets it (got {name}.{core_name}="
                f"{mine!r}, {trl_name}={getattr(args, trl_name)!r}); set {trl_name} instead")
    for core_name in _LOSS_ONLY:
        if core_name not in trl_names and getattr(core, core_name) != getattr(default, core_name):
            raise ValueError(f"{name}.{core_name}: not used by TRL's loss (loss_type "
                             f"{args.loss_type!r} decides); leave it at its default")
    try:
        return core.replace(**trl_values)
    except (TypeError, ValueError) as error:  # TRL's values outside the core's ranges
        core_name = str(error).split(":", 1)[0]
        raise type(error)(f"{trl_names.get(core_name, core_name)}:"
                          f"{str(error).split(':', 1)[-1]}") from None


def _refuse_liger_loss(args: Any) -> None:
    if getattr(args, "use_liger_loss", False):
        method = getattr(args, "_method", "PGPO")
        raise ValueError(
            f"use_liger_loss: {method} cannot run with Liger's fused GRPO loss, which takes one "
            f"advantage per sequence; {method}'s advantages are per token (B, T). Set "
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


class _VisualCreditTrainer(trl.GRPOTrainer):
    """``trl.GRPOTrainer`` whose ``(B,)`` advantages become ``(B, T)`` token advantages
    from the token visual dependency of the rollout batch: the checks, the blind pass and
    the logging :class:`PGPOTrainer` and :class:`VPPOTrainer` share. A subclass names its
    config class and says how the advantages are made (:meth:`_token_advantages`)."""

    config_class: type = _VisualCreditConfig
    #: Metric prefix and the method's name in messages.
    _prefix = "pgpo"

    def __init__(self, model, reward_funcs=None, args=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, **kwargs):
        cls, method = type(self).__name__, self.config_class._method
        if args is None:
            from trl.trainer.utils import get_config_model_id

            name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = self.config_class(f"{str(name).split('/')[-1]}-{method}")
        if not isinstance(args, self.config_class):
            config = self.config_class.__name__
            raise TypeError(
                f"args: {cls} needs a pgpo_torch.trl.{config} (a GRPOConfig with {method}'s "
                f"{self._prefix} and blind_pass fields), got {type(args).__name__}; replace "
                f"`from trl import GRPOConfig` with `from pgpo_torch.trl import {config}`")
        _refuse_liger_loss(args)
        if isinstance(processing_class, PreTrainedTokenizerBase):
            raise ValueError(
                f"processing_class: {method} needs images, but a text-only tokenizer "
                f"({type(processing_class).__name__}) was given; pass the model's processor "
                "(e.g. AutoProcessor / Qwen2_5_VLProcessor)")
        if processing_class is not None and not isinstance(processing_class, ProcessorMixin):
            raise TypeError(f"processing_class: expected a ProcessorMixin (a vision-language "
                            f"processor), got {type(processing_class).__name__}")
        if not isinstance(model, str):
            _check_model_type(model, cls)
        _check_dataset_has_images("train_dataset", train_dataset, method)
        if isinstance(eval_dataset, Mapping):
            for key, dataset in eval_dataset.items():
                _check_dataset_has_images(f"eval_dataset[{key!r}]", dataset, method)
        else:
            _check_dataset_has_images("eval_dataset", eval_dataset, method)

        super().__init__(model=model, reward_funcs=reward_funcs, args=args,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        if not self._is_vlm:
            raise ValueError(f"processing_class: {method} needs images, but the processing "
                             "class is a text-only tokenizer; pass the model's processor")
        backbone = self._pgpo_backbone()
        _check_model_type(backbone, cls)
        attention = getattr(backbone.config, "_attn_implementation", None) or ""
        if args.blind_pass.mode == "mask" and "flash" in attention:
            raise ValueError(
                f"blind_pass.mode: 'mask' needs a 4-D attention mask, which attention "
                f"implementation {attention!r} does not take; use 'drop' (the same logits for a "
                "causal decoder, and cheaper) or eager/sdpa attention")
        self._pgpo_warned_no_images = False

    # ------------------------------------------------------------------ rollout side

    def _token_advantages(self, advantages: torch.Tensor, dependency: torch.Tensor,
                          response_mask: torch.Tensor, *, has_images: bool
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
        """``(B, T)`` token advantages from TRL's ``(B,)`` ones, extra ``(B, ...)`` batch
        entries, and the step's statistics to log (0-d tensors). ``has_images`` False: the
        batch holds no image (``dependency`` is 0), and TRL's advantages must come back
        on every token."""
        raise NotImplementedError

    def _generate_and_score_completions(self, inputs):
        """TRL's rollout batch with the ``(B, T)`` token advantages in place."""
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        response_mask = output["completion_mask"].bool()
        if output.get("tool_mask") is not None:
            response_mask = response_mask & output["tool_mask"].bool()
        with profiling_context(self, "pgpo_token_visual_dependency"):
            dependency = self._pgpo_token_visual_dependency(output, response_mask, mode)
        sequence_advantages = output["advantages"]
        has_images = (output.get("pixel_values") is not None
                      and output.get("mm_token_type_ids") is not None)
        token_advantages, extra, stats = self._token_advantages(
            sequence_advantages, dependency, response_mask, has_images=has_images)
        self._pgpo_log(stats, mode)
        return {**output,
                "advantages": token_advantages.to(sequence_advantages.dtype),
                "pgpo_sequence_advantages": sequence_advantages,
                "pgpo_dependency": dependency, **extra}

    def _dependency_config(self) -> pgpo_core.PGPOConfig:
        """Estimator, clamp, temperature and chunk size of the dependency."""
        raise NotImplementedError

    @torch.no_grad()
    def _pgpo_token_visual_dependency(self, output: Mapping[str, Any], response_mask: torch.Tensor,
                                      mode: str) -> torch.Tensor:
        """``(B, T)`` float32 token visual dependency of the rollout batch, 0 off the mask."""
        method = self.config_class._method
        completion_ids = output["completion_ids"]
        batch_rows, response_length = completion_ids.shape
        if output.get("pixel_values") is None or output.get("mm_token_type_ids") is None:
            if not self._pgpo_warned_no_images:
                warnings.warn(f"{type(self).__name__}: a rollout batch holds no image; its "
                              f"dependency is 0 and its advantages are TRL's ({method} needs "
                              "images)", stacklevel=2)
                self._pgpo_warned_no_images = True
            return torch.zeros(completion_ids.shape, dtype=torch.float32,
                               device=completion_ids.device)
        mm_types = output["mm_token_type_ids"]
        if bool((mm_types[:, mm_types.shape[1] - response_length:] != 0).any()):
            raise ValueError(f"{type(self).__name__}: completions contain images (e.g. tool "
                             f"responses that return images); {method}'s blind pass hides "
                             "the prompt's visual tokens only")
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
        config = self._dependency_config()
        generator = None
        if self.args.blind_pass.mode == "blacken":
            generator = blacken_generator(int(self.args.seed), int(self.state.global_step),
                                          int(self.accelerator.process_index),
                                          device=completion_ids.device)
        parts = []
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), \
                _eval_mode(self.model):
            for start in range(0, batch_rows, rows):
                end = min(start + rows, batch_rows)
                chunk = _row_chunk(batch, start, end, num_images)
                dependency, _ = batch_visual_dependency(
                    backbone, chunk, response_mask[start:end], response_length=response_length,
                    config=config, blind=self.args.blind_pass, generator=generator)
                parts.append(dependency)
        return torch.cat(parts, dim=0)

    def _pgpo_backbone(self):
        """The ``...ForConditionalGeneration`` module (PEFT's layers stay injected in it)."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _pgpo_log(self, stats: Mapping[str, Any], mode: str) -> None:
        """``stats`` through TRL's metrics as ``<prefix>/<name>``, over the processes
        (``*_max`` / ``*_min``: their max / min, the rest their mean)."""
        for name, value in stats.items():
            gathered = self.accelerator.gather(value.reshape(1).float())
            if name.endswith("_max"):
                reduced = gathered.max()
            elif name.endswith("_min"):
                reduced = gathered.min()
            else:
                reduced = gathered.mean()
            self._metrics[mode][f"{self._prefix}/{name}"].append(reduced.item())


class PGPOTrainer(_VisualCreditTrainer):
    """``trl.GRPOTrainer`` with PGPO's token-level advantages (Ye et al., 2026).

    Same constructor as ``trl.GRPOTrainer`` (``args`` must be a :class:`PGPOConfig`; when
    omitted, one is built with its defaults). See the module docstring for what changes
    and what is refused.
    """

    config_class = PGPOConfig
    _prefix = "pgpo"

    def __init__(self, model, reward_funcs=None, args: PGPOConfig | None = None,
                 train_dataset=None, eval_dataset=None, processing_class=None, **kwargs):
        super().__init__(model, reward_funcs=reward_funcs, args=args,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        self.pgpo_config = self.args.pgpo

    def _dependency_config(self) -> pgpo_core.PGPOConfig:
        return self.pgpo_config

    def _token_advantages(self, advantages, dependency, response_mask, *, has_images):
        """``A~ = A * w~`` (Eq. 8) and :func:`pgpo_core.weight_diagnostics` (with ``S = 0``
        every weight is 1: TRL's advantages)."""
        weight_kwargs = self.pgpo_config.weight_kwargs()
        token_advantages = pgpo_core.reshape_advantages(advantages, dependency, response_mask,
                                                        **weight_kwargs)
        stats = pgpo_core.weight_diagnostics(dependency, response_mask, **weight_kwargs)
        return token_advantages, {}, stats


class VPPOTrainer(_VisualCreditTrainer):
    """``trl.GRPOTrainer`` with VPPO's token advantages (Huang et al., arXiv 2510.09285).

    Same constructor as ``trl.GRPOTrainer`` (``args`` must be a :class:`VPPOConfig`).
    After TRL scores a rollout batch, the dependency (``vppo.estimator``, k3 clamped at
    10, against ``blind_pass``: blackened patches by default) feeds
    :func:`pgpo_core.vppo_advantages` once over the process's rollout batch: every
    response's advantage scaled by its trajectory factor ``f_i`` (mean 1 over the batch)
    on its top ``ceil(top_p |o_i|)`` tokens by dependency, 0 on the others, which stay in
    the loss's token count (TRL's completion mask is not changed). The batch also carries
    ``"vppo_scale"`` ``(B,)`` and ``"vppo_token_mask"`` ``(B, T)``, and
    :func:`pgpo_core.vppo_diagnostics` is logged as ``vppo/kept_frac``,
    ``vppo/kept_dependency_frac``, ``vppo/scale_max``, .... The batch statistics of the
    trajectory factors (min, max and mean of the responses' mean dependency) are the
    process's rollout batch; VPPO's own code takes them per device as well. Refused as
    for :class:`PGPOTrainer`, and a ``vppo.patch_size`` other than the vision tower's
    patch size (the blackened pass blacks out whole patches).
    """

    config_class = VPPOConfig
    _prefix = "vppo"

    def __init__(self, model, reward_funcs=None, args: VPPOConfig | None = None,
                 train_dataset=None, eval_dataset=None, processing_class=None, **kwargs):
        super().__init__(model, reward_funcs=reward_funcs, args=args,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)
        self.vppo_config = self.args.vppo
        patch = getattr(getattr(self._pgpo_backbone().config, "vision_config", None),
                        "patch_size", None)
        if patch is not None and patch != self.vppo_config.patch_size:
            raise ValueError(f"vppo.patch_size: the vision tower's patches are {patch} px, the "
                             f"blackened pass blacks out whole patches; got "
                             f"{self.vppo_config.patch_size}")

    def _dependency_config(self) -> pgpo_core.PGPOConfig:
        return self.args.dependency_config()

    def _token_advantages(self, advantages, dependency, response_mask, *, has_images):
        """:func:`pgpo_core.vppo_advantages` and :func:`pgpo_core.vppo_diagnostics`; a batch
        without images gets TRL's advantages on every token (VPPO's filter would keep
        each response's first tokens, the ties of ``S = 0``)."""
        kwargs = self.vppo_config.advantage_kwargs()
        if not has_images:
            kwargs.update(trajectory_shaping=False, token_filtering=False)
        shaped = pgpo_core.vppo_advantages(advantages, dependency, response_mask, **kwargs)
        stats = pgpo_core.vppo_diagnostics(dependency, response_mask, scale=shaped.scale,
                                           token_mask=shaped.token_mask)
        return (shaped.advantages,
                {"vppo_scale": shaped.scale, "vppo_token_mask": shaped.token_mask}, stats)


def _check_model_type(model, trainer: str = "PGPOTrainer") -> None:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"model: {trainer} supports {', '.join(SUPPORTED_MODEL_TYPES)} (its blind pass "
            f"needs the model's multimodal RoPE and mm_token_type_ids); got model_type "
            f"{model_type!r}")


def _check_dataset_has_images(name: str, dataset, method: str = "PGPO") -> None:
    if dataset is None:
        return
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # an IterableDataset of unknown columns: checked per batch
        return
    if "image" not in columns and "images" not in columns:
        raise ValueError(
            f"{name}: {method} needs images, but the dataset has no 'image' or 'images' column "
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

