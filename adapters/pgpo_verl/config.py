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
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pgpo_core import PGPOConfig
from pgpo_torch.blind_pass import BlindPassConfig

__all__ = ["PGPOSection", "PLUGIN_DEFAULTS", "VERL_BLIND_MODES", "VERL_OWNED_FIELDS",
           "section_defaults", "parse_section"]

VERL_BLIND_MODES = ("drop",)
"""Blind passes the plugin runs: ``drop`` (visual tokens removed, original mRoPE ids kept;
the same logits as the paper's masked attention, without the vision tower)."""

PLUGIN_DEFAULTS: dict[str, Any] = dict(enable=True)
"""``enable``: reshape the advantages (``False``: stock verl, no blind pass)."""

VERL_OWNED_FIELDS = tuple(PGPOConfig().loss_kwargs()) + ("temperature",)
"""``PGPOConfig`` fields verl's own config decides (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class PGPOSection:
    """The validated ``pgpo`` section: plugin switches and the core configuration."""

    enable: bool
    blind: BlindPassConfig
    core: PGPOConfig


def _core_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PGPOConfig)
                 if f.name not in VERL_OWNED_FIELDS)


def section_defaults() -> dict[str, Any]:
    """The section with every default, for Hydra (``main_pgpo`` registers it)."""
    core = dataclasses.asdict(PGPOConfig())
    return {**PLUGIN_DEFAULTS, "blind": dataclasses.asdict(BlindPassConfig()),
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
    known = set(PLUGIN_DEFAULTS) | {"blind"} | set(_core_fields())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"pgpo.{unknown[0]}: unknown field; the section takes "
                         f"{sorted(known)}")
    enable = values.pop("enable", PLUGIN_DEFAULTS["enable"])
    if not isinstance(enable, bool):
        raise TypeError(f"pgpo.enable: expected a bool, got {enable!r}")
    blind = _blind(values.pop("blind", {}))
    try:
        core = PGPOConfig(**values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"pgpo.{err}") from err
    return PGPOSection(enable=enable, blind=blind, core=core)


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
    return blind


def _blind_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(BlindPassConfig))
