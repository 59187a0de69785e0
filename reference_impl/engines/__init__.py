"""Rollout engines: what samples the G responses per prompt for training and evaluation.

An engine turns (question, image) prompts into a :class:`reference_impl.rollout.RolloutBatch`
(the trainer's padded layout) and, where it keeps its own copy of the policy, takes the
trainer's weights after each optimiser step (:meth:`RolloutEngine.sync_weights`).

Registry (``rollout.backend``):

- ``hf``: Hugging Face ``generate`` on the trained module itself (no copy, nothing to sync).
- ``vllm``: an in-process vLLM ``LLM`` colocated with training (:mod:`.vllm_engine`).
- ``auto``: ``vllm`` when it is importable and the run is on CUDA, else ``hf``.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from reference_impl.engines.base import (RolloutEngine, rollout_mismatch_metrics,
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


def resolve_backend(backend: str, device_type: str) -> str:
    """``auto`` -> ``vllm`` when vLLM is importable and ``device_type == 'cuda'``, else ``hf``.
    Raises :class:`ValueError` naming ``rollout.backend`` for ``vllm`` without vLLM."""
    if backend == "auto":
        return "vllm" if device_type == "cuda" and vllm_importable() else "hf"
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
        from reference_impl.engines import vllm_engine  # noqa: F401  (registers itself)
    if name not in ENGINES:
        raise ValueError(f"rollout.backend: unknown engine {name!r}; known: {sorted(ENGINES)}")
    return ENGINES[name](**kwargs)


from reference_impl.engines import hf_engine  # noqa: E402,F401  (registers 'hf')

__all__ = ["ENGINES", "RolloutEngine", "build_engine", "register_engine", "resolve_backend",
           "rollout_mismatch_metrics", "truncated_is_weights", "vllm_importable"]
