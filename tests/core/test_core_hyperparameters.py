"""The hyper-parameters are declared once (pgpo_core.hyperparameters), and everything
else takes them from there: the signatures of the functions, the config classes' fields,
their help texts. Every expectation below is derived from the declaration itself, so it
cannot drift from it.

pgpo_core-specific (it checks how the keywords are declared, not what they compute), so
it imports pgpo_core directly instead of using the ``pgpo`` conformance fixture.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

import pgpo_core
from pgpo_core.hyperparameters import VPPOHyperparameters, WeightingHyperparameters, takes

KW = inspect.Parameter.KEYWORD_ONLY


def _declared(declaration, only=None):
    return [(f.name, f.default, f.type) for f in dataclasses.fields(declaration)
            if only is None or f.name in only]


def _keywords(fn, names):
    sig = inspect.signature(fn)
    return [(p.name, p.default, p.annotation) for p in sig.parameters.values()
            if p.name in names and p.kind is KW]


def _jax_wrappers():
    pgpo_jax = pytest.importorskip("pgpo_jax")
    return [pgpo_jax.token_weights, pgpo_jax.reshape_advantages]


WEIGHTING_FUNCTIONS = {
    "token_weights": (["dependency", "response_mask"], []),
    "reshape_advantages": (["advantages", "dependency", "response_mask"], []),
    "weight_diagnostics": (["dependency", "response_mask"], ["weights"]),
}
VPPO_FUNCTIONS = {
    "vppo_advantages": (None, ["advantages", "dependency", "response_mask"], ["score_range"]),
    "vppo_token_mask": (("top_p",), ["dependency", "response_mask"], []),
    "vppo_trajectory_scale": (("scale_min", "range_eps", "eps"),
                              ["dependency", "response_mask"], ["score_range"]),
}


@pytest.mark.parametrize("name", sorted(WEIGHTING_FUNCTIONS))
def test_weighting_functions_expose_exactly_the_declared_keywords(name):
    fn = getattr(pgpo_core, name)
    before, after = WEIGHTING_FUNCTIONS[name]
    declared = _declared(WeightingHyperparameters)
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params] == before + [n for n, _, _ in declared] + after
    assert _keywords(fn, {n for n, _, _ in declared}) == declared
    assert all(p.kind is KW for p in params[len(before):])


def test_jax_wrappers_expose_exactly_the_declared_keywords():
    declared = _declared(WeightingHyperparameters)
    for fn in _jax_wrappers():
        params = list(inspect.signature(fn).parameters.values())
        core = inspect.signature(getattr(pgpo_core, fn.__name__))
        assert [p.name for p in params] == list(core.parameters)
        assert _keywords(fn, {n for n, _, _ in declared}) == declared


@pytest.mark.parametrize("name", sorted(VPPO_FUNCTIONS))
def test_vppo_functions_expose_exactly_the_declared_keywords(name):
    only, before, after = VPPO_FUNCTIONS[name]
    fn = getattr(pgpo_core, name)
    declared = _declared(VPPOHyperparameters, only)
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params] == before + [n for n, _, _ in declared] + after
    assert _keywords(fn, {n for n, _, _ in declared}) == declared


@pytest.mark.parametrize("config, declaration", [
    (pgpo_core.PGPOConfig, WeightingHyperparameters),
    (pgpo_core.VPPOConfig, VPPOHyperparameters),
])
def test_configs_take_their_first_fields_from_the_declaration(config, declaration):
    own = dataclasses.fields(declaration)
    assert issubclass(config, declaration)
    assert dataclasses.fields(config)[:len(own)] == own  # the same Field objects
    kwargs = (config().weight_kwargs() if declaration is WeightingHyperparameters
              else config().advantage_kwargs())
    assert kwargs == {f.name: f.default for f in own}


def _help_classes():
    classes = [pgpo_core.PGPOConfig, pgpo_core.VPPOConfig, WeightingHyperparameters,
               VPPOHyperparameters]
    try:
        from pgpo_torch.blind_pass import BlindPassConfig
    except ImportError:  # torch missing: the core's classes are still checked
        return classes
    return classes + [BlindPassConfig]


@pytest.mark.parametrize("cls", _help_classes(), ids=lambda c: c.__name__)
def test_every_config_field_has_a_help_text(cls):
    for f in dataclasses.fields(cls):
        text = f.metadata.get("help")
        assert isinstance(text, str) and text.strip(), f"{cls.__name__}.{f.name}"


def test_the_keywords_are_validated_by_the_declaration():
    dep, mask = np.ones((1, 3)), np.ones((1, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"^tau: must lie in \[0.0, 1.0\]"):
        pgpo_core.token_weights(dep, mask, tau=1.5)
    with pytest.raises(ValueError, match=r"^tau: must lie in"):
        WeightingHyperparameters(tau=1.5)
    with pytest.raises(ValueError, match=r"^top_p: must be > 0"):
        pgpo_core.vppo_token_mask(dep, mask, top_p=0.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tua'"):
        pgpo_core.token_weights(dep, mask, tua=0.3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'hp'"):
        pgpo_core.token_weights(dep, mask, hp=WeightingHyperparameters())
    with pytest.raises(TypeError, match="positional argument"):
        pgpo_core.token_weights(dep, mask, 0.4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tau'"):
        pgpo_core.vppo_token_mask(dep, mask, tau=0.4)  # not one of its keywords


def test_takes_installs_the_fields_in_place_of_hp():
    @takes(VPPOHyperparameters, only=("eps", "top_p"))
    def f(x, *, before=1, hp, after=2):
        return x, before, hp, after

    assert list(inspect.signature(f).parameters) == ["x", "before", "top_p", "eps", "after"]
    x, before, hp, after = f(0, eps=0.5, after=3)
    assert (x, before, after) == (0, 1, 3)
    assert hp == VPPOHyperparameters(eps=0.5)
    with pytest.raises(ValueError, match="only"):
        takes(VPPOHyperparameters, only=("tau",))
