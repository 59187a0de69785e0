"""pgpo_core: Perception-Grounded Policy Optimization on the Python array API.

Pure functions over numpy, torch, jax, cupy or array-api-strict arrays (found
with ``array_api_compat.array_namespace``); results come back in the caller's
namespace and device, keep autograd, and trace under ``jax.jit``.

VPPO (Huang et al., arXiv 2510.09285), the strongest baseline of the PGPO paper, is here
as well: :func:`vppo_advantages` (trajectory advantage shaping and token gradient
filtering) with :class:`VPPOConfig`.

Ye et al., "Not All Tokens See Equally: Perception-Grounded Policy Optimization
for Large Vision-Language Models", arXiv 2604.01840 (2026).
"""

from pgpo_core.advantages import GroupAdvantages, group_advantages
from pgpo_core.config import ABLATIONS, VPPO_ABLATIONS, PGPOConfig, VPPOConfig
from pgpo_core.dependency import sampled_token_dependency, token_visual_dependency
from pgpo_core.diagnostics import vppo_diagnostics, weight_diagnostics
from pgpo_core.loss import AGGREGATIONS, aggregate, masked_mean, policy_loss
from pgpo_core.vppo import (VPPOAdvantages, vppo_advantages, vppo_token_mask,
                            vppo_trajectory_scale)
from pgpo_core.weights import reshape_advantages, token_weights, weighted_advantages

__version__ = "0.1.0"

__all__ = [
    "ABLATIONS",
    "AGGREGATIONS",
    "GroupAdvantages",
    "PGPOConfig",
    "aggregate",
    "group_advantages",
    "masked_mean",
    "policy_loss",
    "reshape_advantages",
    "sampled_token_dependency",
    "token_visual_dependency",
    "token_weights",
    "VPPO_ABLATIONS",
    "VPPOAdvantages",
    "VPPOConfig",
    "vppo_advantages",
    "vppo_diagnostics",
    "vppo_token_mask",
    "vppo_trajectory_scale",
    "weighted_advantages",
    "weight_diagnostics",
]
