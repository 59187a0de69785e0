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


def per_token(advantages: Any, mask: Any) -> Any:
    """``(B,)`` or ``(B, T)`` advantages as ``(B, T)`` (shapes already checked by the core)."""
    advantages = jnp.asarray(advantages)
    if advantages.ndim == 1:
        advantages = jnp.broadcast_to(advantages[:, None], jnp.shape(mask))
    return advantages


def dependency(dep: Any, mask: Any) -> None:
    """The core's dependency checks (:func:`pgpo_core.token_weights`), values included."""
    validation.check_dependency(jnp, jnp.asarray(dep), jnp.asarray(mask))
