"""pgpo_torch: PGPO inside PyTorch / Hugging Face training loops (thin over pgpo_core)."""

from pgpo_torch.tiny import build_tiny_model, build_tiny_processor, build_tiny_qwen2_5_vl

__all__ = ["build_tiny_model", "build_tiny_processor", "build_tiny_qwen2_5_vl"]
