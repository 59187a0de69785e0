"""The advantages check is written once (pgpo_core.validation.check_advantages) and the
loss, the weights and VPPO all call it: the same errors, and the same acceptance of
padding (a response without tokens may hold any advantage, NaN included).

pgpo_core-specific (it pins that the callers share one check), so it imports pgpo_core
directly instead of using the ``pgpo`` conformance fixture.
"""

from __future__ import annotations

import numpy as np
import pytest

import pgpo_core
from pgpo_core import validation


def test_advantages_check_is_shared_by_the_loss_and_the_weights():
    dep = np.array([[0.1, 0.5, 0.0], [0.2, 0.3, 0.0]])
    mask = np.array([[True, True, False], [False, False, False]])  # row 1 has no tokens
    logp = np.log(np.full((2, 3), 0.5))
    calls = {
        "reshape_advantages": lambda a: pgpo_core.reshape_advantages(a, dep, mask),
        "weighted_advantages": lambda a: pgpo_core.weighted_advantages(a, dep, mask),
        "vppo_advantages": lambda a: pgpo_core.vppo_advantages(a, dep, mask),
        "policy_loss": lambda a: pgpo_core.policy_loss(logp, logp, a, mask),
    }
    for name, call in calls.items():
        ref = "logp" if name == "policy_loss" else (
            "weights" if name == "weighted_advantages" else "dependency")
        call(np.array([1.0, np.nan]))  # NaN on a response without tokens: padding
        call(np.where(mask, 1.0, np.nan))
        with pytest.raises(ValueError, match=r"^advantages: contains NaN or inf"):
            call(np.array([np.nan, 1.0]))
        with pytest.raises(ValueError, match=rf"^advantages: 3 responses, but {ref} has 2 rows"):
            call(np.ones(3))
        with pytest.raises(ValueError, match=rf"^advantages: shape \(2, 2\) does not match "
                                             rf"{ref}'s shape"):
            call(np.ones((2, 2)))
        with pytest.raises(TypeError, match=r"^advantages: expected a real floating dtype"):
            call(np.ones(2, dtype=np.int64))
        with pytest.raises(ValueError, match=r"^advantages: expected 1 or 2 dimensions"):
            call(np.ones((2, 3, 1)))


def test_validation_returns_per_token_advantages():
    mask = np.ones((2, 3), dtype=bool)
    ref = np.zeros((2, 3))
    assert validation.check_advantages(np, np.ones(2), mask, "ref", ref).shape == (2, 1)
    assert validation.check_advantages(np, np.ones((2, 3)), mask, "ref", ref).shape == (2, 3)


def test_jax_wrappers_run_the_same_check_on_concrete_values():
    pytest.importorskip("jax")
    import jax.numpy as jnp
    import pgpo_jax

    dep = jnp.asarray([[0.1, 0.5, 0.0], [0.2, 0.3, 0.0]])
    mask = jnp.asarray([[True, True, False], [False, False, False]])
    logp = jnp.log(jnp.full((2, 3), 0.5))
    calls = [lambda a: pgpo_jax.reshape_advantages(a, dep, mask),
             lambda a: pgpo_jax.policy_loss(logp, logp, a, mask)]
    for call in calls:
        call(jnp.asarray([1.0, jnp.nan]))
        with pytest.raises(ValueError, match=r"^advantages: contains NaN or inf"):
            call(jnp.asarray([jnp.nan, 1.0]))
