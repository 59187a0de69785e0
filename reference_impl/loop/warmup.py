"""Supervised warm-up before RL: teach the response format, leave the perception to RL.

A randomly initialised (tiny) policy never produces ``<think>...</think> \\boxed{}`` and
would start RL with every reward equal, so no group carries signal. The warm-up
minimises the token-mean negative log-likelihood of a reference response

    L = - sum_{i,t} m_{i,t} log pi(y_{i,t} | q_i, I_i, y_{i,<t}) / sum_{i,t} m_{i,t}

for a fixed number of AdamW steps (constant learning rates, no weight decay; the vision
tower at its own, lower rate, ``model.sft_warmup_vision_lr``: at the language model's
rate Adam inflates the tiny tower's output into one shared direction within a few steps,
and perception then emerges late or not at all, docs/evidence.md). The
optimiser is the caller's (:func:`warmup_optimizer`), so that a warm-up stopped at step
``k`` can be checkpointed with it and resumed at step ``k + 1`` exactly. The reference response of an example is
:func:`warmup_target`: the source's own reference (the chain task's noisy chains, or a
file's reasoning column) or, failing that, a minimal ``<think>`` block and the answer.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any, Callable, ContextManager, Sequence

import torch

from reference_impl.data.examples import Example
from reference_impl.policy.distributed import all_reduce
from reference_impl.rollout.batch import response_logprobs, teacher_forced_batch

__all__ = ["FALLBACK_REASONING", "supervised_warmup", "warmup_optimizer", "warmup_target"]

FALLBACK_REASONING = "I look at the image."
"""The ``<think>`` text taught for examples whose source has no reference reasoning."""


def warmup_target(example: Example) -> str:
    """The response the warm-up teaches for ``example``.

    A reference that already holds ``<think>`` and ``\\boxed{`` is used as it is; other
    reference text is the reasoning, wrapped as ``<think>{text}</think> \\boxed{answer}``;
    without one the reasoning is :data:`FALLBACK_REASONING`."""
    reference = (example.reference or "").strip()
    if "<think>" in reference and "\\boxed{" in reference:
        return reference
    return f"<think>{reference or FALLBACK_REASONING}</think> \\boxed{{{example.answer}}}"


_VISION = re.compile(r"(?:^|\.)visual\.")
"""Names of the vision tower's parameters (Qwen2.5-VL's ``model.visual``, also under a
DDP/FSDP ``module.`` or peft ``base_model.model.`` prefix)."""


def warmup_optimizer(model: torch.nn.Module, *, lr: float,
                     vision_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, no weight decay: the vision tower's
    (:data:`_VISION`) at ``vision_lr`` (``None``: ``lr``), all others at ``lr``.

    Two parameter groups, ``[language model and the rest, vision tower]``, always in that
    order (an empty group is kept), so that a checkpointed warm-up optimiser loads into
    one built with other rates."""
    if vision_lr is None:
        vision_lr = lr
    for name, value in (("lr", lr), ("vision_lr", vision_lr)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name}: expected a positive learning rate, got {value!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    vision = [p for n, p in named if _VISION.search(n)]
    other = [p for n, p in named if not _VISION.search(n)]
    return torch.optim.AdamW([{"params": other, "lr": lr}, {"params": vision, "lr": vision_lr}],
                             lr=lr, weight_decay=0.0)


def supervised_warmup(model: torch.nn.Module, processor: Any,
                      next_examples: Callable[[int], Sequence[Example]], *,
                      optimizer: torch.optim.Optimizer, steps: int, start: int = 0,
                      batch_size: int, grad_clip: float | None,
                      device: torch.device, world_size: int = 1,
                      autocast: Callable[[], ContextManager] | None = None,
                      should_stop: Callable[[], bool] = lambda: False,
                      on_step: Callable[[int, float], None] = lambda step, loss: None,
                      max_response_length: int | None = None) -> bool:
    """Run supervised steps ``start + 1 .. steps`` on ``next_examples(batch_size)`` with
    ``optimizer``; False if ``should_stop()`` ended it first.

    The loss is normalised by the token count over all processes, so DDP/FSDP gradient
    averaging gives the global token mean. ``on_step(step, loss)`` receives the
    1-based step and the loss averaged over processes, after the step's update.
    Targets longer than ``max_response_length`` (``rollout.max_response_length``) are
    trained on whole, and said once: RL's responses stop at that length, before such a
    chain's answer, so they earn no reward."""
    if not 0 <= start <= steps:
        raise ValueError(f"start: must be in [0, steps={steps}], got {start}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    warned = max_response_length is None
    for step in range(start + 1, steps + 1):
        if should_stop():
            return False
        examples = next_examples(batch_size)
        batch = teacher_forced_batch(
            processor, [e.prompt for e in examples], [e.image for e in examples],
            [warmup_target(e) for e in examples], device=device)
        if not warned:
            longest = int(batch.response_mask.sum(-1).max())
            if longest > max_response_length:
                warned = True
                warnings.warn(f"warm-up targets up to {longest} tokens (step {step}) are "
                              f"longer than rollout.max_response_length={max_response_length}"
                              ": RL's responses stop there, before such a chain's answer",
                              RuntimeWarning, stacklevel=2)
        with (autocast() if autocast is not None else contextlib.nullcontext()):
            logp, _ = response_logprobs(model, batch)
        tokens = all_reduce(batch.response_mask.sum().float()) / world_size
        loss = -(logp * batch.response_mask).sum() / tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        on_step(step, float(all_reduce(loss.detach().reshape(1)).item()) / world_size)
    return True
