"""``hf``: Hugging Face ``generate`` on the trained module itself."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch

from reference_impl.rollout.engines.registry import register_engine
from reference_impl.rollout.engines.base import RolloutEngine
from reference_impl.rollout.batch import RolloutBatch, generate_rollouts


@register_engine("hf")
class HFEngine(RolloutEngine):
    """Samples with :func:`reference_impl.rollout.batch.generate_rollouts` on ``model_fn()``.

    ``model_fn`` returns the current ``Qwen2_5_VLForConditionalGeneration`` (the trainer's,
    so there is nothing to sync); ``gather`` is a context manager factory run around each
    ``generate`` (FSDP2: gather the root's weights); ``synced_gpus`` keeps FSDP ranks in
    step. No rollout log-probs: the sampler is the trained module.
    """

    name = "hf"
    needs_sync = False

    def __init__(self, *, model_fn: Callable[[], Any], processor: Any,
                 device: torch.device | str = "cpu",
                 gather: Callable[[], Any] = contextlib.nullcontext,
                 synced_gpus: bool = False, **_: Any) -> None:
        self.model_fn, self.processor, self.device = model_fn, processor, device
        self.gather, self.synced_gpus = gather, synced_gpus

    @classmethod
    def for_trainer(cls, *, cfg: Any, env: Any, strategy: Any, processor: Any) -> "HFEngine":
        return cls(model_fn=lambda: strategy.hf_model, processor=processor, device=env.device,
                   gather=strategy.unsharded, synced_gpus=strategy.collective_generate)

    def generate(self, questions: Sequence[str], images: Sequence[Any], answers: Sequence[str],
                 *, group_size: int, max_new_tokens: int, temperature: float, top_p: float,
                 system_prompt: str | None = None, min_new_tokens: int = 0) -> RolloutBatch:
        with self.gather():
            return generate_rollouts(
                self.model_fn(), self.processor, questions, images, answers,
                group_size=group_size, max_new_tokens=max_new_tokens, temperature=temperature,
                top_p=top_p, system_prompt=system_prompt, device=self.device,
                synced_gpus=self.synced_gpus, min_new_tokens=min_new_tokens)


__all__ = ["HFEngine"]
