"""Building the trained policy: the model (the built-in tiny Qwen2.5-VL or a local
checkpoint, LoRA, frozen parts), its dtypes, the setup a checkpoint records, and the
learning-rate schedule of its optimiser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reference_impl.config import Config

# Size of the built-in tiny Qwen2.5-VL (pgpo_torch.tiny), chosen so that the default run
# (warm-up + RL + evaluations) finishes in minutes on 2 CPU cores and still learns.
TINY_MODEL = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  intermediate_size=128, vision_hidden_size=64, vision_depth=2)


def resolve_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """The compute dtype: ``auto`` is bfloat16 on CUDA, float32 on CPU."""
    if cfg.model.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.model.dtype]


def parameter_dtype(cfg: Config) -> torch.dtype:
    """The dtype the trained weights (and AdamW's state) are kept in.

    ``auto`` keeps float32 master weights and computes in bfloat16 on CUDA (autocast,
    or FSDP2's mixed precision), since AdamW updates at the paper's lr of 1e-6 are
    below bfloat16's resolution; ``bfloat16`` stores the weights in bfloat16 (less
    memory, e.g. with LoRA, whose adapters peft keeps in float32)."""
    return torch.bfloat16 if cfg.model.dtype == "bfloat16" else torch.float32


def model_setup(cfg: Config, world_size: int) -> dict[str, Any]:
    """What a checkpoint's weights and optimiser state depend on, recorded in its
    manifest so that a resume can check it before the model is built: the model (the
    built-in tiny one's sizes, or the architecture in ``model.path``'s config.json),
    LoRA, the frozen vision tower and the process count."""
    if cfg.model.path is None:
        model: Any = {"tiny": dict(TINY_MODEL)}
    else:
        import json

        try:
            config = json.loads((Path(cfg.model.path) / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        model = {k: config.get(k, text.get(k)) for k in
                 ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")}
    lora = cfg.lora
    return {"model": model,
            "lora": {"r": lora.r, "target_modules": sorted(lora.target_modules)}
            if lora.enabled else None,
            "freeze_vision_tower": cfg.model.freeze_vision_tower,
            "processes": world_size}


def build_policy(cfg: Config, device: torch.device) -> tuple[torch.nn.Module, Any]:
    """``(model, processor)``: the tiny Qwen2.5-VL built from a config, or a local checkpoint."""
    dtype = parameter_dtype(cfg)
    if cfg.model.path is None:
        from pgpo_torch.tiny import build_tiny_model, build_tiny_processor

        processor = build_tiny_processor(min_pixels=cfg.data.min_pixels,
                                         max_pixels=cfg.data.max_pixels)
        model = build_tiny_model(processor, seed=cfg.train.seed, dtype=dtype, **TINY_MODEL)
        if cfg.algo.blind.mode != "mask":  # the masked blind pass needs eager attention
            model.set_attn_implementation(
                "sdpa" if cfg.model.attn_implementation == "auto" else cfg.model.attn_implementation)
    else:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        processor = AutoProcessor.from_pretrained(
            cfg.model.path, local_files_only=True, min_pixels=cfg.data.min_pixels,
            max_pixels=cfg.data.max_pixels)
        attn = cfg.model.attn_implementation
        if attn == "auto":
            attn = "sdpa"
            if device.type == "cuda":
                import importlib.util
                if importlib.util.find_spec("flash_attn") is not None:
                    attn = "flash_attention_2"
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            cfg.model.path, local_files_only=True, dtype=dtype, attn_implementation=attn)
    model.to(device)
    if cfg.model.freeze_vision_tower:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if cfg.model.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig as PeftLoraConfig, get_peft_model

        model = get_peft_model(model, PeftLoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
    model.train()
    return model, processor


def build_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, warmup: int,
                       total: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``transformers.get_scheduler``: linear warm-up over ``warmup`` optimiser steps (from
    0), then ``"constant"``, ``"linear"`` decay to 0 or half-period ``"cosine"`` decay to 0
    at ``total`` optimiser steps. The trainer steps it once per *planned* update (see
    ``_scheduler_step``), so the learning rate is a function of the RL step."""
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(schedule, schedule)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


__all__ = ["TINY_MODEL", "build_lr_scheduler", "build_policy", "model_setup",
           "parameter_dtype", "resolve_dtype"]
