"""Rollout engines: what samples the G responses per prompt for training and evaluation.

An engine turns (question, image) prompts into a :class:`reference_impl.rollout.batch.RolloutBatch`
(the trainer's padded layout) and, where it keeps its own copy of the policy, takes the
trainer's weights after each optimiser step (:meth:`RolloutEngine.sync_weights`).

Registry (``rollout.backend``):

- ``hf``: Hugging Face ``generate`` on the trained module itself (no copy, nothing to sync).
- ``vllm``: an in-process vLLM ``LLM`` colocated with training (:mod:`.vllm_engine`).
- ``auto``: ``vllm`` when it is importable and the run is one process on CUDA, else ``hf``.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from reference_impl.rollout.engines.base import (RolloutEngine, rollout_mismatch_metrics,
                                         truncated_is_weights)

ENGINES: dict[str, Callable[..., RolloutEngine]] = {}


def register_engine(name: str):
    """Class decorator adding an engine factory to :data:`ENGINES` under ``name``."""
    def wrap(factory):
        if name in ENGINES:
            raise ValueError(f"name: engine {name!r} is already registered")
        ENGINES[name] = factory
        return factory
    return wrap


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str, device_type: str, world_size: int = 1) -> str:
    """``auto`` -> ``vllm`` when vLLM is importable, ``device_type == 'cuda'`` and the run
    is one process, else ``hf`` (with several processes ``vllm`` is asked for by name: an
    engine per rank). Raises
    :class:`ValueError` naming ``rollout.backend`` for ``vllm`` without vLLM."""
    if backend == "auto":
        return ("vllm" if device_type == "cuda" and world_size == 1 and vllm_importable()
                else "hf")
    if backend == "vllm" and not vllm_importable():
        raise ValueError(
            "rollout.backend: 'vllm' needs the vllm package, which is not importable here; "
            "install the extra (GPU: pip install 'pgpo[vllm]'; CPU: see README, 'Rollouts on "
            "vLLM') or use rollout.backend=hf")
    if backend not in ("hf", "vllm") and backend not in ENGINES:
        raise ValueError(f"rollout.backend: unknown engine {backend!r}; "
                         f"known: auto, {', '.join(sorted(set(ENGINES) | {'hf', 'vllm'}))}")
    return backend


def build_engine(name: str, **kwargs: Any) -> RolloutEngine:
    """The engine registered as ``name`` (after :func:`resolve_backend`)."""
    if name == "vllm" and "vllm" not in ENGINES:
        from reference_impl.rollout.engines import vllm_engine  # noqa: F401  (registers itself)
    if name not in ENGINES:
        raise ValueError(f"rollout.backend: unknown engine {name!r}; known: {sorted(ENGINES)}")
    return ENGINES[name](**kwargs)


# ------------------------------------------------------------------ the trainer's engine

#: KV cache given to vLLM on CPU when ``rollout.vllm_kv_cache_memory_mb`` is none.
CPU_KV_CACHE_MB = 64


def _model_config(cfg: Any) -> Any:
    """The policy's HF config without loading weights (the tiny default's, or model.path's)."""
    if cfg.model.path is None:
        from pgpo_torch.tiny import build_tiny_config, build_tiny_processor

        from reference_impl.policy import model

        processor = build_tiny_processor(min_pixels=cfg.data.min_pixels,
                                         max_pixels=cfg.data.max_pixels)
        return build_tiny_config(processor, **model.TINY_MODEL)
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(cfg.model.path, local_files_only=True)


def check_trainer_setup(cfg: Any, device: Any, world_size: int) -> str:
    """The engine name ``rollout.backend`` resolves to, after the checks that need no
    model weights; a bad setup raises :class:`ConfigError` (a ``ValueError``) naming the
    config field, which the command line reports in one line (exit status 2)."""
    import torch

    from reference_impl.config import ConfigError

    r = cfg.rollout
    name = resolve_backend(r.backend, torch.device(device).type, world_size)
    if name == "vllm":
        from reference_impl.rollout.engines.vllm_engine import check_vllm_setup
        from reference_impl.policy.model import resolve_dtype

        dev = torch.device(device)
        from reference_impl.policy.distributed import uses_fsdp

        if world_size > 1 and uses_fsdp(cfg.dist.fsdp, dev.type) and cfg.model.path is None:
            raise ConfigError(
                "model.path: with several processes under FSDP2 each rank's vllm engine "
                "starts from a checkpoint folder; give model.path (the built-in tiny model "
                "is exported from an unsharded model only: dist.fsdp=off)")
        mb = r.vllm_kv_cache_memory_mb
        if mb is None and dev.type == "cpu":
            mb = CPU_KV_CACHE_MB
        check_vllm_setup(_model_config(cfg), device_type=dev.type,
                         dtype=resolve_dtype(cfg, dev),
                         max_model_len=r.max_prompt_length + r.max_response_length,
                         kv_cache_memory_bytes=None if mb is None else mb * 2**20,
                         world_size=world_size, sleep=r.vllm_sleep)
    elif r.tis_cap is not None:
        raise ConfigError(
            f"rollout.tis_cap: truncated importance sampling needs an engine that reports "
            f"its log-probs (rollout.backend=vllm); the {name!r} engine samples with the "
            "trained module itself")
    elif r.vllm_sleep:
        raise ConfigError(f"rollout.vllm_sleep: only for the vllm engine; this run uses {name!r}")
    return name


def build_trainer_engine(name: str, *, cfg: Any, env: Any, strategy: Any, processor: Any,
                         ) -> RolloutEngine:
    """The engine ``name`` for the trainer's policy, after the model is built and wrapped
    by ``strategy`` (:mod:`reference_impl.policy.distributed`), on the processes of
    ``env``. The vLLM engine starts from the policy's current weights: a ``model.path``
    checkpoint as is, or the built-in model exported to a temporary folder."""
    if name == "hf":
        return build_engine("hf", model_fn=lambda: strategy.hf_model,
                            processor=processor, device=env.device,
                            gather=strategy.unsharded,
                            synced_gpus=strategy.collective_generate)
    import tempfile

    from reference_impl.rollout.engines.vllm_engine import export_checkpoint
    from reference_impl.policy.model import resolve_dtype

    r = cfg.rollout
    folder = None
    model_path = cfg.model.path
    if model_path is None:
        # The main process exports the policy once; with several processes (replicas: DDP)
        # every rank's engine starts from that folder.
        if env.is_main:
            folder = tempfile.TemporaryDirectory(prefix="pgpo-vllm-policy-")
            model_path = export_checkpoint(strategy.policy, processor, folder.name)
        if env.distributed:
            import torch.distributed as dist

            shared = [model_path]
            dist.broadcast_object_list(shared, src=0)
            model_path = shared[0]
            dist.barrier()
    mb = r.vllm_kv_cache_memory_mb
    if mb is None and env.device.type == "cpu":
        mb = CPU_KV_CACHE_MB
    engine = build_engine(
        name, model_path=model_path, processor=processor, device=env.device,
        dtype=resolve_dtype(cfg, env.device),
        max_model_len=r.max_prompt_length + r.max_response_length,
        max_prompt_length=r.max_prompt_length,
        gpu_memory_utilization=r.vllm_gpu_memory_utilization,
        kv_cache_memory_bytes=None if mb is None else mb * 2**20, sleep=r.vllm_sleep,
        sync_bucket_bytes=r.vllm_sync_bucket_mb * 2**20, seed=cfg.train.seed,
        logprob_temperature=r.temperature)
    engine._exported = folder  # the exported checkpoint lives as long as the engine
    return engine


def weights_version(model: Any) -> int:
    """A number that changes whenever a parameter of ``model`` is modified in place
    (optimiser steps, ``load_state_dict``): the sum of the tensors' version counters."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local._version
    return total


from reference_impl.rollout.engines import hf_engine  # noqa: E402,F401  (registers 'hf')

__all__ = ["CPU_KV_CACHE_MB", "ENGINES", "RolloutEngine", "build_engine",
           "build_trainer_engine", "check_trainer_setup", "register_engine", "resolve_backend",
           "rollout_mismatch_metrics", "truncated_is_weights", "vllm_importable",
           "weights_version"]
