"""Process groups and model wrapping for ``torchrun``: gloo + DDP on CPU, nccl + FSDP2 on GPUs.

Nothing here is home-made parallelism: data parallelism on CPU is
``torch.nn.parallel.DistributedDataParallel``; sharding on GPUs is FSDP2
(``torch.distributed.fsdp.fully_shard``), one unit per decoder layer and per
vision block, plus the root.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Sequence

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size``, its device, the backend used."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(*, device: str = "auto", backend: str = "auto",
                     timeout_minutes: int = 30) -> DistEnv:
    """Initialise ``torch.distributed`` from torchrun's environment (or run single-process).

    ``device``: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; ``backend``:
    ``"auto"`` (nccl on CUDA, gloo on CPU), ``"nccl"`` or ``"gloo"``.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        dev = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
        return DistEnv(device=dev)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend,
                                timeout=datetime.timedelta(minutes=timeout_minutes),
                                **({"device_id": dev} if use_cuda else {}))
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend)


def shutdown(*, synchronize: bool = True) -> None:
    """Leave the process group: a barrier (so that no rank closes its connections while
    another still waits on a collective), then ``destroy_process_group``.

    Call it after the last reference to a DDP/FSDP model is gone (``gc.collect()``):
    a wrapped model keeps the process group alive, and a gloo group freed only during
    interpreter shutdown can abort the process ("terminate called without an active
    exception") after a run that finished correctly. ``synchronize=False`` skips the
    barrier (a rank that failed must not wait for ranks that may never arrive)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if synchronize:
        dist.barrier()
    dist.destroy_process_group()


def unwrap(model: Any) -> Any:
    """The underlying Hugging Face model of a DDP-wrapped one (FSDP2 wraps in place)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def wrap_model(model: torch.nn.Module, env: DistEnv, *, fsdp: str = "auto",
               cpu_offload: bool = False, compute_dtype: torch.dtype | None = None,
               ) -> tuple[torch.nn.Module, str]:
    """Wrap ``model`` for data-parallel training; returns ``(model, kind)`` where ``kind`` is
    ``"none"``, ``"ddp"`` or ``"fsdp2"``.

    ``fsdp="auto"`` shards with FSDP2 when several processes run on CUDA, and uses DDP
    otherwise (gloo on CPU). With FSDP2 and a ``compute_dtype`` other than the
    parameters' (bfloat16 over float32 master weights), parameters are gathered in
    ``compute_dtype`` and gradients reduced in float32 (``MixedPrecisionPolicy``).
    """
    if not env.distributed:
        return model, "none"
    use_fsdp = fsdp == "on" or (fsdp == "auto" and env.device.type == "cuda")
    if not use_fsdp:
        if cpu_offload:
            raise ValueError("dist.cpu_offload: needs FSDP (dist.fsdp on)")
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
        return ddp, "ddp"
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    param_dtype = next(model.parameters()).dtype
    if compute_dtype is not None and compute_dtype != param_dtype:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype,
                                                   reduce_dtype=torch.float32)
    if cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for block in _shardable_blocks(model):
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model, "fsdp2"


def _shardable_blocks(model: torch.nn.Module) -> Sequence[torch.nn.Module]:
    """Decoder layers of the language model and blocks of the vision tower."""
    blocks: list[torch.nn.Module] = []
    inner = getattr(model, "model", model)
    lm = getattr(inner, "language_model", None)
    if lm is not None and hasattr(lm, "layers"):
        blocks.extend(lm.layers)
    visual = getattr(inner, "visual", None)
    if visual is not None and hasattr(visual, "blocks"):
        blocks.extend(visual.blocks)
    return blocks


def all_reduce(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``values`` reduced over all processes (a copy; identity when single-process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values.clone()
    out = values.clone()
    dist.all_reduce(out, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
                             "min": dist.ReduceOp.MIN}[op])
    return out


def any_process(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is True on any process (e.g. a SIGTERM seen by one rank)."""
    return bool(all_reduce(torch.tensor([float(flag)], device=device), "max").item() > 0)


__all__ = ["DistEnv", "all_reduce", "any_process", "init_distributed", "launched_by_torchrun",
           "shutdown", "unwrap", "wrap_model"]
