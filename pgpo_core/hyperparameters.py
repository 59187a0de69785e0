"""The hyper-parameters of PGPO's token weighting and of VPPO's advantages, declared once.

Each frozen dataclass below is the one declaration of its keywords: name, type, default
and one-line help (``metadata["help"]``). Everything else is derived from it:

- the functions taking the keywords (:func:`pgpo_core.token_weights`,
  :func:`pgpo_core.reshape_advantages`, :func:`pgpo_core.weight_diagnostics`, the jitted
  wrappers of ``pgpo_jax``; :func:`pgpo_core.vppo_advantages` and its two parts) get
  them, keyword-only with these defaults, from :func:`takes`;
- :class:`pgpo_core.PGPOConfig` and :class:`pgpo_core.VPPOConfig` inherit them as
  their first fields;
- validation runs on construction (:mod:`pgpo_core.validation` holds the checks).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, TypeVar

from pgpo_core import validation

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightingHyperparameters:
    """PGPO's token weighting (Eqs. 4-7), the paper's defaults, validated on construction.

    ::

        I_t = (S~_t - min_j S~_j) / (max_j S~_j - min_j S~_j + eps)      S~ = log(1 + S)
        w_t = I_t / (tau + eps)                          if I_t <  tau
              1 + beta * (I_t - tau) / (1 - tau + eps)   if I_t >= tau
        w~_t = w_t * |o_i| / sum_j w_j                   (conserve_mass)
    """

    tau: float = dataclasses.field(default=0.4, metadata={
        "help": "Threshold on the normalised dependency I_t (Eq. 6), in [0, 1]."})
    beta: float = dataclasses.field(default=2.0, metadata={
        "help": "Boost slope above tau (Eq. 6), >= 0."})
    eps: float = dataclasses.field(default=1e-6, metadata={
        "help": "Small constant in Eqs. 5-7."})
    threshold: str = dataclasses.field(default="fixed", metadata={
        "help": "fixed: tau itself (the paper); quantile: each response's tau-quantile "
                "of I_t."})
    low_weight_floor: float = dataclasses.field(default=0.0, metadata={
        "help": "Lift token weights below this value to it, in [0, 1]; 0 = off."})
    conserve_mass: bool = dataclasses.field(default=True, metadata={
        "help": "Eq. 7: each response's weights sum to its length."})

    def __post_init__(self) -> None:
        validation.check_weight_hyperparameters(**self.weight_kwargs())

    def weight_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`token_weights` / :func:`reshape_advantages`."""
        return {name: getattr(self, name) for name in _WEIGHTING}


# The names once, read by weight_kwargs(): torch.compile cannot trace dataclasses.fields(cls).
_WEIGHTING = tuple(f.name for f in dataclasses.fields(WeightingHyperparameters))


@dataclasses.dataclass(frozen=True, kw_only=True)
class VPPOHyperparameters:
    """VPPO's advantages (Huang et al., arXiv 2510.09285), the published recipe's defaults,
    validated on construction; the equations are in :mod:`pgpo_core.vppo`."""

    top_p: float = dataclasses.field(default=0.4, metadata={
        "help": "Token gradient filtering (TGF): the fraction p of each response's tokens, "
                "those of largest dependency, that keep their advantage, in (0, 1]."})
    scale_min: float = dataclasses.field(default=0.9, metadata={
        "help": "Trajectory advantage shaping (TAS): the factor m of the least visually "
                "dependent response, in [0, 1]; 1 = off."})
    range_eps: float = dataclasses.field(default=1e-6, metadata={
        "help": "TAS is off (every factor 1) when the batch's spread of mean dependency "
                "is not above this, >= 0."})
    eps: float = dataclasses.field(default=1e-8, metadata={
        "help": "Added to the mean normalised score before dividing (TAS), > 0."})
    trajectory_shaping: bool = dataclasses.field(default=True, metadata={
        "help": "Apply TAS (false: the TGF-only ablation)."})
    token_filtering: bool = dataclasses.field(default=True, metadata={
        "help": "Apply TGF (false: every token kept, the TAS-only ablation)."})

    def __post_init__(self) -> None:
        validation.check_vppo_hyperparameters(**self.advantage_kwargs())

    def advantage_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`vppo_advantages`."""
        return {name: getattr(self, name) for name in _VPPO}


_VPPO = tuple(f.name for f in dataclasses.fields(VPPOHyperparameters))


def takes(declaration: type, *, only: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Give a function the keywords of ``declaration`` (a dataclass above), declared there.

    The decorated function has a keyword-only parameter ``hp``; its public signature has,
    in ``hp``'s place, one keyword-only parameter per field of ``declaration`` (or per
    field named in ``only``, in declaration order) with the field's type and default.
    A call builds ``declaration(**those keywords)`` (which validates them) and passes it
    as ``hp``. ``inspect.signature`` shows the public signature; the API pages show it
    too (``docs/griffe_hyperparameters.py`` reads the same declaration).
    """
    fields = [f for f in dataclasses.fields(declaration) if only is None or f.name in only]
    if only is not None and len(fields) != len(only):
        raise ValueError(f"only: {sorted(set(only) - {f.name for f in fields})} are not "
                         f"fields of {declaration.__name__}")
    names = tuple(f.name for f in fields)
    keywords = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                  annotation=f.type) for f in fields]

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("hp")
        if params[at].kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{fn.__name__}: hp must be keyword-only")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if "hp" in kwargs:
                raise TypeError(f"{fn.__name__}() got an unexpected keyword argument 'hp'")
            given = {name: kwargs.pop(name) for name in names if name in kwargs}
            return fn(*args, hp=declaration(**given), **kwargs)

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=params[:at] + keywords + params[at + 1:])
        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["VPPOHyperparameters", "WeightingHyperparameters", "takes"]
