"""A frozen configuration carrying the PGPO paper's defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

from pgpo_core import validation
from pgpo_core.dependency import ESTIMATORS
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class PGPOConfig:
    """PGPO hyper-parameters, defaults from Ye et al. (2026), validated on construction.

    Weighting (Eqs. 4-7): ``tau``, ``beta``, ``eps``, ``threshold``,
    ``low_weight_floor``, ``conserve_mass``. Dependency (Eq. 1): ``estimator``
    (``"exact"`` full-vocabulary KL, or ``"k1"``/``"k2"``/``"k3"`` single-sample
    estimates; the paper trains with k3), ``temperature``, ``chunk_size``,
    ``estimate_clip``. Loss (DAPO): ``clip_low``, ``clip_high``, ``dual_clip``,
    ``aggregation``.
    """

    tau: float = 0.4
    beta: float = 2.0
    eps: float = 1e-6
    threshold: str = "fixed"
    low_weight_floor: float = 0.0
    conserve_mass: bool = True
    estimator: str = "exact"
    temperature: float = 1.0
    chunk_size: int | None = 256
    estimate_clip: float | None = None
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float | None = None
    aggregation: str = "token-mean"

    def __post_init__(self) -> None:
        validation.check_weight_hyperparameters(tau=self.tau, beta=self.beta, eps=self.eps,
                               threshold=self.threshold,
                               low_weight_floor=self.low_weight_floor,
                               conserve_mass=self.conserve_mass)
        validation.check_choice("estimator", self.estimator, DEPENDENCY_ESTIMATORS)
        validation.check_positive("temperature", self.temperature)
        validation.check_chunk_size(self.chunk_size, allow_none=True)
        if self.estimate_clip is not None:
            validation.check_positive("estimate_clip", self.estimate_clip)
        validation.check_in_range("clip_low", self.clip_low, 0.0, 1.0)
        validation.check_positive("clip_high", self.clip_high, allow_zero=True)
        if self.dual_clip is not None and not (isinstance(self.dual_clip, (int, float))
                                               and self.dual_clip > 1):
            raise ValueError(f"dual_clip: must be a number > 1 or None, got {self.dual_clip!r}")
        validation.check_choice("aggregation", self.aggregation, AGGREGATIONS)

    @classmethod
    def ablation(cls, name: str, **overrides: Any) -> "PGPOConfig":
        """A named variant: ``base``, ``suppress_only``, ``boost_only``,
        ``no_mass_conservation`` or ``dev_variant`` (see ``ABLATIONS``)."""
        validation.check_choice("name", name, tuple(ABLATIONS))
        return cls(**{**ABLATIONS[name], **overrides})

    def replace(self, **changes: Any) -> "PGPOConfig":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def weight_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`token_weights` / :func:`reshape_advantages`."""
        return dict(tau=self.tau, beta=self.beta, eps=self.eps, threshold=self.threshold,
                    low_weight_floor=self.low_weight_floor, conserve_mass=self.conserve_mass)

    def loss_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`policy_loss`."""
        return dict(clip_low=self.clip_low, clip_high=self.clip_high,
                    dual_clip=self.dual_clip, aggregation=self.aggregation)


__all__ = ["PGPOConfig", "ABLATIONS", "DEPENDENCY_ESTIMATORS", "THRESHOLDS"]
