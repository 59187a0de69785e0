"""The reference trainer's algorithms: one frozen :class:`Algorithm` record per name.

:data:`REGISTRY` (name -> record) is the one place an algorithm is declared. The config
(``algo.name``'s choices, its ``--help``, the values an algorithm fixes or defaults), the
trainer (how token advantages are made, dynamic sampling) and ``compare.py`` (which
names the trainer accepts) all read it. Adding an algorithm is one :func:`register` call::

    register(Algorithm(
        name="pgpo_boost_only", advantages="pgpo", fixed=ABLATIONS["boost_only"],
        help="PGPO ablation: boosting only."))

A record says

- ``advantages``: how the per-response group advantage ``A_i`` becomes token advantages:
  ``"broadcast"`` (``A_i`` on every response token: DAPO, GRPO), ``"pgpo"``
  (``A_i * w~_t``, PGPO's token weights from the blind pass, Eqs. 4-8) or ``"vppo"``
  (:func:`pgpo_core.vppo_advantages`, called once over the rollout batch, on the blind
  pass's dependency);
- ``fixed``: ``algo.pgpo`` values the algorithm fixes; they override given ones (PGPO's
  ablations; DAPO and GRPO fix the unit weights ``tau = beta = 0``);
- ``defaults``: ``{"pgpo" | "blind": {field: value}}``, the ``algo.pgpo`` / ``algo.blind``
  defaults it changes, for keys not given (a :class:`Follows` value is another key's
  resolved value: GRPO's ``clip_high`` is its ``clip_low``);
- ``dynamic_sampling``: whether ``algo.dynamic_sampling: none`` means on;
- ``vppo``: the :class:`pgpo_core.VPPOConfig` whose advantage settings (``top_p``,
  ``scale_min``, ``range_eps``, ``eps``, shaping and filtering on/off) the ``"vppo"``
  estimator uses;
- ``help``: one line for ``--help``.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Mapping

from pgpo_core import VPPOConfig
from pgpo_core.config import ABLATIONS

#: How token advantages are made (see the module docstring).
ADVANTAGES = ("broadcast", "pgpo", "vppo")
#: The nested configs of ``algo`` whose defaults an algorithm may change.
GROUPS = ("pgpo", "blind")


@dataclasses.dataclass(frozen=True)
class Follows:
    """A default equal to another key's resolved value in the same group."""

    key: str

    def __repr__(self) -> str:
        return f"= {self.key}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Algorithm:
    """One algorithm of the reference trainer (see the module docstring)."""

    name: str
    help: str
    advantages: str
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    dynamic_sampling: bool = True
    vppo: VPPOConfig | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"name: must be an identifier, got {self.name!r}")
        if self.advantages not in ADVANTAGES:
            raise ValueError(f"{self.name}.advantages: must be one of {ADVANTAGES}, "
                             f"got {self.advantages!r}")
        unknown = set(self.defaults) - set(GROUPS)
        if unknown:
            raise ValueError(f"{self.name}.defaults: groups are {GROUPS}, got {sorted(unknown)}")
        if (self.vppo is not None) != (self.advantages == "vppo"):
            raise ValueError(f"{self.name}.vppo: a VPPOConfig exactly when advantages is 'vppo'")
        # Read-only views, so that a record cannot be changed through its mappings.
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))
        object.__setattr__(self, "defaults", MappingProxyType(
            {g: MappingProxyType(dict(v)) for g, v in self.defaults.items()}))

    @property
    def reweights_tokens(self) -> bool:
        """True when advantages are multiplied by PGPO's token weights."""
        return self.advantages == "pgpo"

    @property
    def needs_blind_pass(self) -> bool:
        """True when token advantages need the token visual dependency."""
        return self.advantages != "broadcast"

    def defaults_for(self, group: str, given: Mapping[str, Any],
                     class_defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The ``algo.<group>`` defaults this algorithm changes (they apply to keys not
        given); a :class:`Follows` resolves to the key's value in ``given``, else the
        algorithm's default, else ``class_defaults``."""
        mine = self.defaults.get(group, {})
        plain = {k: v for k, v in mine.items() if not isinstance(v, Follows)}

        def value_of(key: str) -> Any:
            return given[key] if key in given else plain.get(key, class_defaults[key])

        return {k: value_of(v.key) if isinstance(v, Follows) else v for k, v in mine.items()}

    def describe(self) -> str:
        """The record in one ``--help`` line."""
        parts = [f"{self.name}: {self.help.rstrip('.')}"]
        if self.fixed:
            parts.append("fixes " + ", ".join(f"{k}={v}" for k, v in self.fixed.items()))
        for group, values in self.defaults.items():
            parts.append(f"algo.{group} defaults " + ", ".join(
                f"{k} {v!r}" if isinstance(v, Follows) else f"{k}={v}" for k, v in values.items()))
        if not self.dynamic_sampling:
            parts.append("no dynamic sampling by default")
        return "; ".join(parts)


REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Add ``algorithm`` to :data:`REGISTRY` (its name must be new); returns it."""
    if not isinstance(algorithm, Algorithm):
        raise TypeError(f"algorithm: expected an Algorithm, got {type(algorithm).__name__}")
    if algorithm.name in REGISTRY:
        raise ValueError(f"name: {algorithm.name!r} is already registered")
    REGISTRY[algorithm.name] = algorithm
    return algorithm


def get(name: str) -> Algorithm:
    """The record of ``name``; a ``ValueError`` listing the names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"algo.name: must be one of {', '.join(map(repr, REGISTRY))}; "
                         f"got {name!r}") from None


def names() -> tuple[str, ...]:
    """The registered names, in registration order (``pgpo`` first: the default)."""
    return tuple(REGISTRY)


register(Algorithm(
    name="pgpo", advantages="pgpo",
    help="PGPO: A_i times the token weights of the blind pass's dependency (Eqs. 4-8)."))
register(Algorithm(
    name="dapo", advantages="broadcast", fixed=ABLATIONS["base"],
    help="DAPO: A_i on every token, no token reweighting."))
register(Algorithm(
    name="grpo", advantages="broadcast", fixed=ABLATIONS["base"], dynamic_sampling=False,
    defaults={"pgpo": {"clip_high": Follows("clip_low"), "aggregation": "seq-mean-token-mean"}},
    help="GRPO: A_i on every token, symmetric clip, per-sequence mean."))
register(Algorithm(
    name="pgpo_suppress_only", advantages="pgpo", fixed=ABLATIONS["suppress_only"],
    help="PGPO ablation: suppression only."))
register(Algorithm(
    name="pgpo_boost_only", advantages="pgpo", fixed=ABLATIONS["boost_only"],
    help="PGPO ablation: boosting only."))
register(Algorithm(
    name="pgpo_no_mass", advantages="pgpo", fixed=ABLATIONS["no_mass_conservation"],
    help="PGPO ablation: no mass conservation (Eq. 7)."))
register(Algorithm(
    name="pgpo_dev_variant", advantages="pgpo", fixed=ABLATIONS["dev_variant"],
    help="PGPO as reported for the authors' development code."))

_VPPO = VPPOConfig()
register(Algorithm(
    name="vppo", advantages="vppo", fixed=ABLATIONS["base"], vppo=_VPPO,
    defaults={"pgpo": {"estimator": _VPPO.estimator, "estimate_clip": _VPPO.estimate_clip,
                       "clip_low": _VPPO.clip_low, "clip_high": _VPPO.clip_high,
                       "dual_clip": _VPPO.dual_clip, "aggregation": _VPPO.aggregation},
              "blind": {"mode": "blacken", "blacken_probability": _VPPO.patch_drop_prob}},
    help=f"VPPO (arXiv 2510.09285): pgpo_core.vppo_advantages once over the rollout "
         f"batch: A_i scaled by the response's mean dependency (scale_min "
         f"{_VPPO.scale_min}) on its top p={_VPPO.top_p} tokens by dependency, the rest 0 "
         "(still counted in the token-mean); dependency k3 against the blacken blind pass "
         "(VPPO's perturbation); no PGPO weights; not here: VPPO's entropy penalty."))

__all__ = ["ADVANTAGES", "Algorithm", "Follows", "GROUPS", "REGISTRY", "get", "names",
           "register"]
