"""pgpo_jax: Perception-Grounded Policy Optimization in JAX training loops.

Thin, jitted wrappers over :mod:`pgpo_core` (which holds all of PGPO's math) with
static shapes and static hyper-parameters, so they compose with ``jax.jit``,
``jax.vmap`` and ``jax.grad``, plus what JAX needs on top of the core:

- :func:`token_visual_dependency_chunked` / :func:`dependency_from_hidden_states`:
  the exact full-vocabulary ``KL(pi_I || pi_0)`` (Eq. 1) over token chunks with
  ``jax.lax.map``; the hidden-state form never materialises ``(B*T, V)`` logits.
- :func:`token_weights`, :func:`reshape_advantages` (Eqs. 4-8),
  :func:`group_advantages` (Eq. 2).
- :func:`policy_loss` and :func:`pgpo_loss` (Eq. 9, DAPO recipe): ``(loss, metrics)``,
  an ordinary scalar function for ``jax.value_and_grad`` and any optax optimiser.

A :class:`PGPOConfig` is frozen and hashable: pass it as a static argument, or
spread ``config.weight_kwargs()`` / ``config.loss_kwargs()`` into the wrappers.

Ye et al., "Not All Tokens See Equally: Perception-Grounded Policy Optimization
for Large Vision-Language Models", arXiv 2604.01840 (2026).
"""

from pgpo_core import GroupAdvantages, PGPOConfig

from pgpo_jax.advantages import group_advantages
from pgpo_jax.dependency import dependency_from_hidden_states, token_visual_dependency_chunked
from pgpo_jax.loss import pgpo_loss, policy_loss
from pgpo_jax.weights import reshape_advantages, token_weights

__all__ = [
    "GroupAdvantages",
    "PGPOConfig",
    "dependency_from_hidden_states",
    "group_advantages",
    "pgpo_loss",
    "policy_loss",
    "reshape_advantages",
    "token_visual_dependency_chunked",
    "token_weights",
]
