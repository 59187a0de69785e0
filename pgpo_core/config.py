"""A frozen configuration carrying the PGPO paper's defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

from pgpo_core import validation
from pgpo_core.dependency import ESTIMATORS
from pgpo_core.hyperparameters import VPPOHyperparameters, WeightingHyperparameters
from pgpo_core.loss import AGGREGATIONS
from pgpo_core.validation import THRESHOLDS

DEPENDENCY_ESTIMATORS = ("exact",) + ESTIMATORS

ABLATIONS = {
    # Base algorithm: w~ = 1 everywhere (GRPO/DAPO).
    "base": dict(tau=0.0, beta=0.0),
    # Paper ablations (Sec. 5): suppression only, boosting only, no Eq. 7.
    "suppress_only": dict(tau=1.0),
    "boost_only": dict(tau=0.0),
    "no_mass_conservation": dict(conserve_mass=False),
    # Reported for the authors' unpublished development code (not verified):
    # per-response quantile threshold, a floor of 0.1 on low weights, no Eq. 7.
    "dev_variant": dict(threshold="quantile", low_weight_floor=0.1, conserve_mass=False),
}


def _option(default: Any, help: str) -> Any:
    """A field and its one-line help (``metadata["help"]``, what the trainer's options show)."""
    return dataclasses.field(default=default, metadata={"help": help})


_LOSS_HELP = {
    "clip_low": "Lower clip range of the importance ratio (1 - clip_low).",
    "clip_high": "Upper clip range (1 + clip_high).",
    "dual_clip": "Dual-clip constant c > 1 bounding negative-advantage ratios; none = off.",
    "aggregation": "Loss reduction.",
}
_ESTIMATE_CLIP_HELP = "Upper bound on a k1/k2/k3 estimate; none = off."


@dataclasses.dataclass(frozen=True, kw_only=True)
class PGPOConfig(WeightingHyperparameters):
    """PGPO hyper-parameters, defaults from Ye et al. (2026), validated on construction.

    Weighting (Eqs. 4-7): ``tau``, ``beta``, ``eps``, ``threshold``,
    ``low_weight_floor``, ``conserve_mass`` (declared, with their defaults and help, in
    :class:`pgpo_core.hyperparameters.WeightingHyperparameters`, whose fields come first
    here). Dependency (Eq. 1): ``estimator``
    (``"exact"`` full-vocabulary KL, or ``"k1"``/``"k2"``/``"k3"`` single-sample
    estimates; the paper trains with k3), ``temperature``, ``chunk_size``,
    ``estimate_clip``. Loss (DAPO): ``clip_low``, ``clip_high``, ``dual_clip``,
    ``aggregation``. Each field's one-line help is its ``metadata["help"]``.
    """

    estimator: str = _option(
        "exact", "Token visual dependency (Eq. 1): exact full-vocabulary KL, or the "
                 "single-sample k1/k2/k3 estimate at the sampled token.")
    temperature: float = _option(
        1.0, "Temperature of the two distributions; set by rollout.temperature.")
    chunk_size: int | None = _option(
        256, "Tokens per chunk of the exact full-vocabulary KL (bounds memory); none = all.")
    estimate_clip: float | None = _option(None, _ESTIMATE_CLIP_HELP)
    clip_low: float = _option(0.2, _LOSS_HELP["clip_low"])
    clip_high: float = _option(0.28, _LOSS_HELP["clip_high"])
    dual_clip: float | None = _option(None, _LOSS_HELP["dual_clip"])
    aggregation: str = _option("token-mean", _LOSS_HELP["aggregation"])

    def __post_init__(self) -> None:
        super().__post_init__()
        validation.check_choice("estimator", self.estimator, DEPENDENCY_ESTIMATORS)
        validation.check_positive("temperature", self.temperature)
        validation.check_chunk_size(self.chunk_size, allow_none=True)
        if self.estimate_clip is not None:
            validation.check_positive("estimate_clip", self.estimate_clip)
        validation.check_loss_hyperparameters(
            clip_low=self.clip_low, clip_high=self.clip_high, dual_clip=self.dual_clip,
            aggregation=self.aggregation, aggregations=AGGREGATIONS)

    @classmethod
    def ablation(cls, name: str, **overrides: Any) -> "PGPOConfig":
        """A named variant: ``base``, ``suppress_only``, ``boost_only``,
        ``no_mass_conservation`` or ``dev_variant`` (see ``ABLATIONS``)."""
        validation.check_choice("name", name, tuple(ABLATIONS))
        return cls(**{**ABLATIONS[name], **overrides})

    def replace(self, **changes: Any) -> "PGPOConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`policy_loss`."""
        return dict(clip_low=self.clip_low, clip_high=self.clip_high,
                    dual_clip=self.dual_clip, aggregation=self.aggregation)


VPPO_ABLATIONS = {
    # Base algorithm: A on every token (GRPO/DAPO).
    "base": dict(trajectory_shaping=False, token_filtering=False),
    # The paper's component ablations: shaping only, filtering only.
    "tas_only": dict(token_filtering=False),
    "tgf_only": dict(trajectory_shaping=False),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VPPOConfig(VPPOHyperparameters):
    """VPPO hyper-parameters (Huang et al., arXiv 2510.09285), validated on construction.

    Defaults are the published training recipe of ``huaixuheqing/VPPO-RL``
    (``examples/configs/train_vppo_7b.sh`` with ``examples/configs/config.yaml``); see
    :mod:`pgpo_core.vppo` for the equations and the conventions chosen.

    Advantages (:func:`vppo_advantages`; declared, with their defaults and help, in
    :class:`pgpo_core.hyperparameters.VPPOHyperparameters`, whose fields come first here):
    ``top_p`` (TGF fraction, 0.4), ``scale_min``
    (TAS floor, 0.9), ``range_eps`` (1e-6), ``eps`` (1e-8), ``trajectory_shaping``,
    ``token_filtering``. Dependency: k3 between the real image and a perturbed one
    (``estimator``, ``estimate_clip`` = 10 for :func:`sampled_token_dependency`), the
    perturbation blacking out each ``patch_size`` x ``patch_size`` patch (14) with
    probability ``patch_drop_prob`` (0.5). Loss (EasyR1's clipped surrogate as the
    recipe runs it): ``clip_low`` 0.2, ``clip_high`` 0.28, ``dual_clip`` 3.0 (EasyR1
    applies dual clip with ``clip_ratio_dual = 3`` by default), ``aggregation``
    token-mean. Not here, and part of the recipe: an entropy-penalty term with
    coefficient 0.06 (``entropy_penalty_coef``; 0.12 for the 8B model), 8 samples per
    prompt, online filtering of groups with accuracy outside (0.01, 0.99), no KL term.
    Each field's one-line help is its ``metadata["help"]``.
    """

    estimator: str = _option(
        "k3", "Token visual dependency between the real and the perturbed image: the "
              "single-sample k1/k2/k3 estimate at the sampled token.")
    estimate_clip: float | None = _option(10.0, _ESTIMATE_CLIP_HELP)
    patch_size: int = _option(14, "Side, in pixels, of the square patches the perturbation "
                                  "blacks out.")
    patch_drop_prob: float = _option(0.5, "Probability of blacking out each patch, in [0, 1].")
    clip_low: float = _option(0.2, _LOSS_HELP["clip_low"])
    clip_high: float = _option(0.28, _LOSS_HELP["clip_high"])
    dual_clip: float | None = _option(3.0, _LOSS_HELP["dual_clip"])
    aggregation: str = _option("token-mean", _LOSS_HELP["aggregation"])

    def __post_init__(self) -> None:
        super().__post_init__()
        validation.check_choice("estimator", self.estimator, ESTIMATORS)
        if self.estimate_clip is not None:
            validation.check_positive("estimate_clip", self.estimate_clip)
        if (not isinstance(self.patch_size, int) or isinstance(self.patch_size, bool)
                or self.patch_size < 1):
            raise ValueError(f"patch_size: must be a positive int, got {self.patch_size!r}")
        validation.check_in_range("patch_drop_prob", self.patch_drop_prob, 0.0, 1.0)
        validation.check_loss_hyperparameters(
            clip_low=self.clip_low, clip_high=self.clip_high, dual_clip=self.dual_clip,
            aggregation=self.aggregation, aggregations=AGGREGATIONS)

    @classmethod
    def ablation(cls, name: str, **overrides: Any) -> "VPPOConfig":
        """A named variant: ``base``, ``tas_only`` or ``tgf_only`` (see ``VPPO_ABLATIONS``)."""
        validation.check_choice("name", name, tuple(VPPO_ABLATIONS))
        return cls(**{**VPPO_ABLATIONS[name], **overrides})

    def replace(self, **changes: Any) -> "VPPOConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def dependency_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`sampled_token_dependency` (real image first,
        perturbed image second)."""
        return dict(estimator=self.estimator, clip=self.estimate_clip)

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`policy_loss`."""
        return dict(clip_low=self.clip_low, clip_high=self.clip_high,
                    dual_clip=self.dual_clip, aggregation=self.aggregation)


__all__ = ["PGPOConfig", "VPPOConfig", "ABLATIONS", "VPPO_ABLATIONS",
           "DEPENDENCY_ESTIMATORS", "THRESHOLDS"]
