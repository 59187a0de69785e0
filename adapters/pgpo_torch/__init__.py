"""pgpo_torch: PGPO inside PyTorch / Hugging Face training loops.

Thin over :mod:`pgpo_core` (every equation lives there): blind passes for Qwen2.5-VL
batches, the exact visual-dependency KL chunked from hidden states, a one-call
``compute_pgpo_advantages`` and the ``PGPOLoss`` module. Ye et al., "Not All Tokens See
Equally: Perception-Grounded Policy Optimization for Large Vision-Language Models",
arXiv 2604.01840 (2026).
"""

from pgpo_core import PGPOConfig
from pgpo_torch.advantages import (PGPOAdvantages, batch_visual_dependency,
                                   compute_pgpo_advantages)
from pgpo_torch.blind_pass import (
    BLIND_MODES,
    BlindPassConfig,
    blacken_generator,
    blacken_patches,
    blind_inputs,
    drop_visual_tokens,
    mask_visual_attention,
    mrope_position_ids,
    response_outputs,
    visual_and_blind_outputs,
    visual_inputs,
    visual_token_mask,
)
from pgpo_torch.dependency import (
    dependency_from_hidden_states,
    token_logprobs_from_hidden_states,
)
from pgpo_torch.logprobs import logprobs_from_logits
from pgpo_torch.loss import PGPOLoss, response_token_logprobs
from pgpo_torch.tiny import build_tiny_model, build_tiny_processor, build_tiny_qwen2_5_vl

__all__ = [
    "BLIND_MODES",
    "BlindPassConfig",
    "PGPOAdvantages",
    "PGPOConfig",
    "PGPOLoss",
    "batch_visual_dependency",
    "blacken_generator",
    "blacken_patches",
    "blind_inputs",
    "build_tiny_model",
    "build_tiny_processor",
    "build_tiny_qwen2_5_vl",
    "compute_pgpo_advantages",
    "logprobs_from_logits",
    "dependency_from_hidden_states",
    "drop_visual_tokens",
    "mask_visual_attention",
    "mrope_position_ids",
    "response_outputs",
    "response_token_logprobs",
    "token_logprobs_from_hidden_states",
    "visual_and_blind_outputs",
    "visual_inputs",
    "visual_token_mask",
]
