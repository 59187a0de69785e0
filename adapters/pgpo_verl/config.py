"""The ``pgpo`` section of a verl config: declared once, from ``pgpo_core.PGPOConfig``.

The section holds the plugin's switch ``enable``, the blind pass ``blind`` (the fields of
:class:`pgpo_torch.BlindPassConfig`, nested: ``pgpo.blind.mode``,
``pgpo.blind.include_markers``; a bare mode name is accepted too) plus the fields of
:class:`pgpo_core.PGPOConfig` that act in verl: the weighting (``tau``, ``beta``, ``eps``,
``threshold``, ``low_weight_floor``, ``conserve_mass``) and the dependency
(``estimator``, ``chunk_size``, ``estimate_clip``). Not in the section, because verl owns
them: the loss fields (DAPO clipping and aggregation are verl's
``actor_rollout_ref.actor.clip_ratio_low/high`` and ``loss_agg_mode``) and the sampling
temperature (the dependency is taken at ``actor_rollout_ref.rollout.temperature``, the
temperature of verl's log-probs). Defaults and validation are ``PGPOConfig``'s.

``algorithm`` chooses how the dependency becomes token advantages: ``pgpo`` (``A * w~``,
Eqs. 4-8) or ``vppo`` (:func:`pgpo_core.vppo_advantages`, VPPO's trajectory factors and
top-``p`` token filter, with the ``pgpo.vppo`` subsection: the fields of
:class:`pgpo_core.hyperparameters.VPPOHyperparameters`). With ``vppo`` PGPO's weighting
fields must stay at their defaults (they would act on nothing) and the dependency must be
a sampled estimate, clamped (VPPO's recipe: ``estimator=k3``, ``estimate_clip=10``); with
``pgpo`` the ``vppo`` subsection must hold its defaults. The loss is verl's: VPPO's recipe
is ``clip_ratio_low=0.2``, ``clip_ratio_high=0.28`` (the paper configs' values),
``clip_ratio_c=3.0`` (verl's dual clip, its default) and ``loss_agg_mode=token-mean``.
The blind pass is ``pgpo.blind.mode``: ``drop`` (the image removed, the default: PGPO's
pass) or ``blacken`` (each 14 x 14 patch blacked out with probability
``pgpo.blind.blacken_probability``, 0.5: VPPO's perturbation; with
``pgpo.algorithm=vppo`` it is VPPO's ``patch_drop_prob``, declared there once). ``blacken``
takes a sampled estimate (the exact KL's worker pass runs without images).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pgpo_core import PGPOConfig, VPPOConfig
from pgpo_core.hyperparameters import VPPOHyperparameters
from pgpo_torch.blind_pass import BlindPassConfig

__all__ = ["ALGORITHMS", "PGPOSection", "PLUGIN_DEFAULTS", "VERL_BLIND_MODES",
           "VERL_OWNED_FIELDS", "VPPO_FIELDS", "section_defaults", "parse_section"]

VERL_BLIND_MODES = ("drop", "blacken")
"""Blind passes the plugin runs: ``drop`` (visual tokens removed, original mRoPE ids kept;
the same logits as the paper's masked attention, without the vision tower) and
``blacken`` (random patches blacked out, VPPO's perturbation: :func:`pgpo_verl.blackened_batch`)."""

PLUGIN_DEFAULTS: dict[str, Any] = dict(enable=True, algorithm="pgpo")
"""``enable``: reshape the advantages (``False``: stock verl, no blind pass);
``algorithm``: one of :data:`ALGORITHMS`."""

ALGORITHMS = ("pgpo", "vppo")
"""How the dependency becomes token advantages (see the module docstring)."""

VPPO_FIELDS = tuple(f.name for f in dataclasses.fields(VPPOHyperparameters))
"""The ``pgpo.vppo`` subsection: VPPO's advantage fields (``top_p``, ``scale_min``, ...)."""

_WEIGHTING_FIELDS = tuple(PGPOConfig().weight_kwargs())

VERL_OWNED_FIELDS = tuple(PGPOConfig().loss_kwargs()) + ("temperature",)
"""``PGPOConfig`` fields verl's own config decides (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class PGPOSection:
    """The validated ``pgpo`` section: plugin switches and the core configuration."""

    enable: bool
    blind: BlindPassConfig
    core: PGPOConfig
    algorithm: str = "pgpo"
    vppo: VPPOConfig | None = None
    """VPPO's settings when ``algorithm == "vppo"`` (its advantage fields from the
    section; the dependency's are ``core``'s), else None."""


def _core_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PGPOConfig)
                 if f.name not in VERL_OWNED_FIELDS)


def section_defaults() -> dict[str, Any]:
    """The section with every default, for Hydra (``main_pgpo`` registers it)."""
    core = dataclasses.asdict(PGPOConfig())
    vppo = dataclasses.asdict(VPPOConfig())
    return {**PLUGIN_DEFAULTS, "blind": dataclasses.asdict(BlindPassConfig()),
            "vppo": {name: vppo[name] for name in VPPO_FIELDS},
            **{name: core[name] for name in _core_fields()}}


def parse_section(section: Mapping[str, Any] | None) -> PGPOSection:
    """Validate a ``pgpo`` section (a mapping or an OmegaConf node; missing keys take
    their defaults). Raises ``ValueError``/``TypeError`` naming the ``pgpo.<field>``."""
    if section is None:
        section = {}
    if hasattr(section, "items") and not isinstance(section, dict):
        from omegaconf import OmegaConf

        section = OmegaConf.to_container(section, resolve=True)
    if not isinstance(section, Mapping):
        raise TypeError(f"pgpo: expected a mapping, got {type(section).__name__}")
    values = dict(section)
    owned = sorted(set(values) & set(VERL_OWNED_FIELDS))
    if owned:
        raise ValueError(
            f"pgpo.{owned[0]}: set by verl, not in the pgpo section (clipping: "
            "actor_rollout_ref.actor.clip_ratio_low/clip_ratio_high; aggregation: "
            "actor_rollout_ref.actor.loss_agg_mode; temperature: "
            "actor_rollout_ref.rollout.temperature)")
    known = set(PLUGIN_DEFAULTS) | {"blind", "vppo"} | set(_core_fields())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"pgpo.{unknown[0]}: unknown field; the section takes "
                         f"{sorted(known)}")
    enable = values.pop("enable", PLUGIN_DEFAULTS["enable"])
    if not isinstance(enable, bool):
        raise TypeError(f"pgpo.enable: expected a bool, got {enable!r}")
    algorithm = values.pop("algorithm", PLUGIN_DEFAULTS["algorithm"])
    if algorithm not in ALGORITHMS:
        raise ValueError(f"pgpo.algorithm: must be one of {ALGORITHMS}, got {algorithm!r}")
    blind = _blind(values.pop("blind", {}))
    vppo_values = values.pop("vppo", {})
    try:
        core = PGPOConfig(**values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"pgpo.{err}") from err
    if blind.mode == "blacken" and core.estimator == "exact":
        raise ValueError("pgpo.blind.mode: blacken takes a sampled estimate (pgpo.estimator="
                         "k1/k2/k3); the exact KL's worker pass drops the image")
    if algorithm == "vppo":
        vppo = _vppo(vppo_values, core, blind)
    else:
        _unused_vppo(vppo_values)
        vppo = None
    return PGPOSection(enable=enable, blind=blind, core=core, algorithm=algorithm, vppo=vppo)


def _unused_vppo(value: Any) -> None:
    """With ``pgpo.algorithm=pgpo`` the ``vppo`` subsection must hold its defaults (the
    Hydra defaults put them there); a changed field would silently do nothing."""
    if not isinstance(value, Mapping):
        raise TypeError(f"pgpo.vppo: expected a mapping of {list(VPPO_FIELDS)}, got {value!r}")
    default = VPPOConfig()
    for name, given in value.items():
        if name in VPPO_FIELDS and given != getattr(default, name):
            raise ValueError(f"pgpo.vppo.{name}: only used with pgpo.algorithm=vppo (the "
                             f"section runs {PLUGIN_DEFAULTS['algorithm']!r}); set "
                             "pgpo.algorithm=vppo or leave it at its default")


def _vppo(value: Any, core: PGPOConfig, blind: BlindPassConfig) -> VPPOConfig:
    """``pgpo.vppo`` as a :class:`VPPOConfig` whose dependency fields are ``core``'s (and,
    under the blackened pass, whose ``patch_drop_prob`` is
    ``pgpo.blind.blacken_probability``); checks that PGPO's weighting is left at its
    defaults and the estimate is sampled."""
    if not isinstance(value, Mapping):
        raise TypeError(f"pgpo.vppo: expected a mapping of {list(VPPO_FIELDS)}, got {value!r}")
    unknown = sorted(set(value) - set(VPPO_FIELDS))
    if unknown:
        raise ValueError(f"pgpo.vppo.{unknown[0]}: unknown field; the subsection takes "
                         f"{list(VPPO_FIELDS)} (the dependency's estimator and clamp are "
                         "pgpo.estimator and pgpo.estimate_clip)")
    default = PGPOConfig()
    for name in _WEIGHTING_FIELDS:
        if getattr(core, name) != getattr(default, name):
            raise ValueError(f"pgpo.{name}: PGPO's token weighting, unused with "
                             f"pgpo.algorithm=vppo; leave it at its default "
                             f"({getattr(default, name)!r})")
    if core.estimator == "exact":
        raise ValueError("pgpo.estimator: pgpo.algorithm=vppo takes a sampled estimate "
                         "(VPPO's recipe: pgpo.estimator=k3 pgpo.estimate_clip=10)")
    if core.estimate_clip is None:
        raise ValueError("pgpo.estimate_clip: VPPO clamps its dependency estimate (the "
                         "recipe: 10); an unclamped k3 estimate can reach any size. Set "
                         "pgpo.estimate_clip")
    try:
        return VPPOConfig(**value, estimator=core.estimator, estimate_clip=core.estimate_clip,
                          **({"patch_drop_prob": blind.blacken_probability}
                             if blind.mode == "blacken" else {}))
    except (TypeError, ValueError) as err:
        raise type(err)(f"pgpo.vppo.{err}") from err


def _blind(value: Any) -> BlindPassConfig:
    """``pgpo.blind``: a mapping of :class:`BlindPassConfig` fields, or a mode name."""
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, Mapping):
        raise TypeError(f"pgpo.blind: expected a mapping of {_blind_fields()} or a mode "
                        f"name, got {value!r}")
    unknown = sorted(set(value) - set(_blind_fields()))
    if unknown:
        raise ValueError(f"pgpo.blind.{unknown[0]}: unknown field; the blind pass takes "
                         f"{list(_blind_fields())}")
    try:
        blind = BlindPassConfig(**value)
    except (TypeError, ValueError) as err:
        raise type(err)(f"pgpo.blind.{err}") from err
    if blind.mode not in VERL_BLIND_MODES:
        raise ValueError(f"pgpo.blind.mode: must be one of {VERL_BLIND_MODES} with verl, got "
                         f"{blind.mode!r}")
    # A setting of the other pass would silently do nothing.
    default = BlindPassConfig()
    if blind.mode != "blacken" and blind.blacken_probability != default.blacken_probability:
        raise ValueError(f"pgpo.blind.blacken_probability: only used with "
                         f"pgpo.blind.mode=blacken (the blind pass is {blind.mode!r})")
    if blind.mode == "blacken" and blind.include_markers:
        raise ValueError("pgpo.blind.include_markers: the blackened pass keeps every token "
                         "(only drop removes the vision markers); leave it false")
    return blind


def _blind_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(BlindPassConfig))
