"""Value checks for eager calls of the jitted wrappers.

Inside ``jax.jit`` :mod:`pgpo_core` checks shapes, dtypes and hyper-parameters
(all static) but cannot read array values, so its NaN/inf and sign checks are
skipped. The wrappers of :mod:`pgpo_jax` are jitted, so they run those same
core checks themselves after the call when the arguments are concrete arrays
(an ordinary eager call). Under an outer ``jit``/``vmap``/``grad`` the
arguments are tracers and, as in the core, only the static checks apply.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pgpo_core import validation


def concrete(*arrays: Any) -> bool:
    """True when no argument is a jax tracer (values can be read)."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays if a is not None)


def finite(name: str, x: Any, mask: Any = None) -> None:
    validation.check_finite(name, jnp, jnp.asarray(x), None if mask is None else jnp.asarray(mask))


def advantages(adv: Any, mask: Any, ref_name: str, ref: Any) -> None:
    """The core's advantages check (:func:`pgpo_core.validation.check_advantages`), values
    included."""
    validation.check_advantages(jnp, jnp.asarray(adv), jnp.asarray(mask), ref_name,
                                jnp.asarray(ref))


def dependency(dep: Any, mask: Any) -> None:
    """The core's dependency checks (:func:`pgpo_core.token_weights`), values included."""
    validation.check_dependency(jnp, jnp.asarray(dep), jnp.asarray(mask))
