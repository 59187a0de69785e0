"""The engines by name (``rollout.backend``): registration, ``auto`` resolved in one
place, and building one."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from reference_impl.config.fields import ConfigError

ENGINES: dict[str, Callable[..., Any]] = {}
"""Engine classes (subclasses of :class:`~reference_impl.rollout.engines.base.RolloutEngine`)
by name; ``vllm`` registers itself when its module is first imported."""

_LAZY = {"hf": "reference_impl.rollout.engines.hf_engine",
         "vllm": "reference_impl.rollout.engines.vllm_engine"}


def register_engine(name: str):
    """Class decorator adding an engine class to :data:`ENGINES` under ``name``."""
    def wrap(factory):
        if name in ENGINES:
            raise ValueError(f"name: engine {name!r} is already registered")
        ENGINES[name] = factory
        return factory
    return wrap


def vllm_importable() -> bool:
    """Whether the ``vllm`` package can be imported here."""
    return importlib.util.find_spec("vllm") is not None


def resolve_backend(backend: str, device_type: str, world_size: int = 1) -> str:
    """``auto`` -> ``vllm`` when vLLM is importable, ``device_type == 'cuda'`` and the run
    is one process, else ``hf`` (with several processes ``vllm`` is asked for by name: an
    engine per rank). Raises :class:`~reference_impl.config.ConfigError` naming
    ``rollout.backend`` for ``vllm`` without vLLM, or an unknown engine."""
    if backend == "auto":
        return ("vllm" if device_type == "cuda" and world_size == 1 and vllm_importable()
                else "hf")
    if backend == "vllm" and not vllm_importable():
        raise ConfigError(
            "rollout.backend: 'vllm' needs the vllm package, which is not importable here; "
            "install the extra (GPU: pip install 'pgpo[vllm]'; CPU: see README, 'Rollouts on "
            "vLLM') or use rollout.backend=hf")
    if backend not in _LAZY and backend not in ENGINES:
        raise ConfigError(f"rollout.backend: unknown engine {backend!r}; "
                          f"known: auto, {', '.join(sorted(set(ENGINES) | set(_LAZY)))}")
    return backend


def engine_class(name: str) -> Any:
    """The class registered as ``name`` (after :func:`resolve_backend`), importing the
    built-in engine's module on first use."""
    if name not in ENGINES and name in _LAZY:
        importlib.import_module(_LAZY[name])  # registers itself
    if name not in ENGINES:
        raise ConfigError(f"rollout.backend: unknown engine {name!r}; known: {sorted(ENGINES)}")
    return ENGINES[name]


def build_engine(name: str, **kwargs: Any) -> Any:
    """The engine ``name`` built from its constructor's keyword arguments."""
    return engine_class(name)(**kwargs)


__all__ = ["ENGINES", "build_engine", "engine_class", "register_engine", "resolve_backend",
           "vllm_importable"]
