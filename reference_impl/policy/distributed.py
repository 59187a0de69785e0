"""Process groups and model wrapping for ``torchrun``: gloo + DDP on CPU, nccl + FSDP2 on GPUs.

Nothing here is home-made parallelism: data parallelism on CPU is
``torch.nn.parallel.DistributedDataParallel``; sharding on GPUs is FSDP2
(``torch.distributed.fsdp.fully_shard``), one unit per decoder layer and per
vision block, plus the root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
from typing import Any, Callable, Iterator, Sequence

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


class PeerProcessError(RuntimeError):
    """Another process of a torchrun job failed (a collective lost its connection): the
    message names the ranks that stopped answering and how to resume."""


# What a collective says when a peer process is gone (gloo, NCCL, the c10d store).
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "Connection refused", "ECONNRESET", "EPIPE", "timed out", "Timed out",
              "NCCL communicator was aborted", "remote process exited")


def peer_failure(err: BaseException, env: DistEnv, last_checkpoint: str | None,
                 *, wait_s: float = 3.0) -> PeerProcessError | None:
    """``err`` as a :class:`PeerProcessError` when it is a collective failing because
    another process of the job is gone (None otherwise). The ranks still alive each
    leave a mark in torchrun's key-value store and wait up to ``wait_s`` seconds for the
    others': the ranks that leave none are named as the ones that failed."""
    if not env.distributed or not isinstance(err, RuntimeError) \
            or isinstance(err, PeerProcessError):
        return None
    text = str(err)
    known = tuple(getattr(dist, name) for name in ("DistNetworkError", "DistBackendError")
                  if hasattr(dist, name))
    if not (isinstance(err, known) or any(marker in text for marker in _PEER_GONE)):
        return None
    silent = _silent_ranks(env, wait_s)
    who = (f"rank {', '.join(map(str, silent))} stopped answering" if silent
           else "another process stopped answering")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0][:160]  # gloo's source place
    where = f"the last checkpoint is {last_checkpoint}" if last_checkpoint else \
        "no checkpoint was saved yet"
    return PeerProcessError(
        f"rank {env.rank}: {who} ({first}); training stopped, {where}. See that rank's "
        "own output and torchrun's report for why it failed, then rerun the same torchrun "
        "command with checkpoint.resume=auto")


def _silent_ranks(env: DistEnv, wait_s: float) -> list[int] | None:
    """The ranks that leave no mark in the job's store within ``wait_s`` seconds (None
    when the store cannot be reached, e.g. it lived in the failed process)."""
    import time

    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(f"pgpo/alive_after_failure/{env.rank}", "1")
        deadline = time.monotonic() + wait_s
        while True:
            seen = [r for r in range(env.world_size)
                    if store.check([f"pgpo/alive_after_failure/{r}"])]
            if len(seen) == env.world_size or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    except Exception:  # the store is gone too, or this torch has no such call
        return None
    return [r for r in range(env.world_size) if r not in seen]


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


class ParallelStrategy:
    """How the policy is laid out over the processes, and everything that depends on it.

    One subclass per layout (:class:`SingleProcess`, :class:`DataParallel`,
    :class:`FullyShardedDataParallel`), built by :func:`parallel_strategy`. The trainer
    never asks which layout it runs; it calls these:

    - ``model`` (the wrapped module, for the training forward) and ``policy`` (the module
      without a wrapper, whose weights are saved);
    - ``prepare(first_forward)``: anything to do once before the first generate or
      optimiser (FSDP2's lazy initialisation);
    - ``unsharded()``: a context in which code may call sub-modules of the policy directly
      (the PGPO adapter calls ``model.model`` and ``model.lm_head``; generation);
    - ``no_sync(skip)``: a context for a backward pass whose gradients are not reduced yet
      (gradient accumulation);
    - ``collective_generate``: every rank must take part in each generate call (FSDP2's
      all-gathers), so a rank with no prompt left generates a dummy one;
    - ``checkpoint_state(optimizer)`` / ``load_checkpoint_state(optimizer, checkpoint,
      with_optimizer=)``: the model's and optimiser's part of a checkpoint (keyword
      arguments of :func:`reference_impl.runlog.checkpoint.save_checkpoint`) and back. The
      optimiser's state is left out while it has taken no step (asking FSDP2 for it would
      initialise it with a zero step, which shifts Adam's bias correction).
    """

    collective_generate = False

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    @property
    def policy(self) -> torch.nn.Module:
        return self.model

    @property
    def hf_model(self) -> torch.nn.Module:
        """The ``Qwen2_5_VLForConditionalGeneration`` itself (LoRA layers included), for
        generation and the PGPO adapter, which calls ``model.model`` / ``model.lm_head``."""
        policy = self.policy
        return policy.get_base_model() if hasattr(policy, "get_base_model") else policy

    def prepare(self, first_forward: Callable[[], None]) -> None:
        """Nothing to do before training in this layout."""

    def unsharded(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def checkpoint_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``model_state`` (the policy's full state dict) and ``optimizer_state`` (None
        while the optimiser has taken no step)."""
        return {"model_state": self.policy.state_dict(),
                "optimizer_state": optimizer.state_dict() if optimizer.state else None}

    def load_checkpoint_state(self, optimizer: torch.optim.Optimizer, checkpoint: Any, *,
                              with_optimizer: bool) -> None:
        """Load ``checkpoint``'s model, and its optimiser state when ``with_optimizer`` and
        it holds one (otherwise the optimiser keeps its fresh state)."""
        if checkpoint.model_state is None:
            raise ValueError(f"checkpoint.resume: {checkpoint.path} holds a sharded (FSDP2) "
                             "model; resume it under torchrun with dist.fsdp=on, or read it "
                             "with load_checkpoint(..., consolidate=True)")
        self.policy.load_state_dict(checkpoint.model_state)
        if with_optimizer and checkpoint.optimizer_state is not None:
            optimizer.load_state_dict(checkpoint.optimizer_state)


class SingleProcess(ParallelStrategy):
    """One process: the model as built."""


class DataParallel(ParallelStrategy):
    """``DistributedDataParallel``: a full replica per process, gradients all-reduced."""

    def __init__(self, model: torch.nn.Module, env: DistEnv) -> None:
        super().__init__(torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None))

    @property
    def policy(self) -> torch.nn.Module:
        return self.model.module

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        return self.model.no_sync() if skip else contextlib.nullcontext()


class FullyShardedDataParallel(ParallelStrategy):
    """FSDP2 (``fully_shard``): one unit per decoder layer and per vision block, plus the
    root. With a ``compute_dtype`` other than the parameters' (bfloat16 over float32
    master weights), parameters are gathered in ``compute_dtype`` and gradients reduced in
    float32 (``MixedPrecisionPolicy``)."""

    collective_generate = True

    def __init__(self, model: torch.nn.Module, *, cpu_offload: bool = False,
                 compute_dtype: torch.dtype | None = None) -> None:
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
        super().__init__(model)

    def prepare(self, first_forward: Callable[[], None]) -> None:
        """FSDP2 initialises lazily on the first forward through the root module: run one
        before generate or the adapter call sub-modules directly, then shard the root's
        parameters again so that the optimiser (built next) holds the sharded ones."""
        with torch.no_grad():
            first_forward()
        self.model.reshard()

    @contextlib.contextmanager
    def unsharded(self) -> Iterator[None]:
        """Gather the root's parameters (embeddings, LM head) for direct sub-module calls."""
        self.model.unshard()
        try:
            yield
        finally:
            self.model.reshard()

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        self.model.set_requires_gradient_sync(not skip)
        return contextlib.nullcontext()

    def checkpoint_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``sharded_state``: this rank's shards of the model (and of the optimiser, once
        it has taken a step), which every rank writes with torch.distributed.checkpoint;
        nothing is gathered."""
        from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                             get_optimizer_state_dict)

        state = {"model": get_model_state_dict(self.model)}
        if optimizer.state:
            state["optimizer"] = get_optimizer_state_dict(self.model, optimizer)
        return {"sharded_state": state}

    def load_checkpoint_state(self, optimizer: torch.optim.Optimizer, checkpoint: Any, *,
                              with_optimizer: bool) -> None:
        """Each rank reads its own shards (torch.distributed.checkpoint). A full-state
        checkpoint (written by one process) is loaded too, every rank taking its shards
        of the full tensors."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             get_model_state_dict,
                                                             get_optimizer_state_dict,
                                                             set_model_state_dict,
                                                             set_optimizer_state_dict)

        if checkpoint.sharded is None:
            options = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, checkpoint.model_state, options=options)
            if with_optimizer and checkpoint.optimizer_state is not None:
                set_optimizer_state_dict(self.model, optimizer, checkpoint.optimizer_state,
                                         options=options)
            return
        import torch.distributed.checkpoint as dcp

        saved = dcp.FileSystemReader(str(checkpoint.sharded)).read_metadata()
        with_optimizer = with_optimizer and any(
            key.startswith("optimizer.") for key in saved.state_dict_metadata)
        state = {"model": get_model_state_dict(self.model)}
        if with_optimizer:  # (initialises the optimiser's state, then overwritten)
            state["optimizer"] = get_optimizer_state_dict(self.model, optimizer)
        dcp.load(state, checkpoint_id=str(checkpoint.sharded))
        set_model_state_dict(self.model, state["model"])
        if with_optimizer:
            set_optimizer_state_dict(self.model, optimizer, state["optimizer"])


def uses_fsdp(fsdp: str, device_type: str) -> bool:
    """Whether several processes shard with FSDP2: ``dist.fsdp`` ``"on"``, or ``"auto"``
    on CUDA (DDP otherwise)."""
    return fsdp == "on" or (fsdp == "auto" and device_type == "cuda")


def parallel_strategy(model: torch.nn.Module, env: DistEnv, *, fsdp: str = "auto",
                      cpu_offload: bool = False, compute_dtype: torch.dtype | None = None,
                      ) -> ParallelStrategy:
    """The layout for ``model`` in this process group (``dist.fsdp``, ``dist.cpu_offload``).

    One process: :class:`SingleProcess`. Several: ``fsdp="on"``, or ``"auto"`` on CUDA,
    shards with FSDP2; otherwise DDP (the CPU default, over gloo)."""
    if not env.distributed:
        if cpu_offload:
            raise ValueError("dist.cpu_offload: needs several processes with FSDP (dist.fsdp on)")
        return SingleProcess(model)
    if uses_fsdp(fsdp, env.device.type):
        return FullyShardedDataParallel(model, cpu_offload=cpu_offload,
                                        compute_dtype=compute_dtype)
    if cpu_offload:
        raise ValueError("dist.cpu_offload: needs FSDP (dist.fsdp on)")
    return DataParallel(model, env)


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


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` in a one-process run)."""
    if not env.distributed:
        return [obj]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def reduce_metrics(metrics: dict[str, float], env: DistEnv,
                   device: torch.device) -> dict[str, float]:
    """Per-process metrics made one value each for the whole run: a name ending in
    ``_max`` is the maximum over processes, one ending in ``_min`` the minimum, every
    other the mean over processes (each process's own averages weigh alike). The
    identity in a one-process run."""
    if not env.distributed:
        return dict(metrics)
    out: dict[str, float] = {}
    for op, keys in (("max", [k for k in metrics if k.endswith("_max")]),
                     ("min", [k for k in metrics if k.endswith("_min")]),
                     ("sum", [k for k in metrics if not k.endswith(("_max", "_min"))])):
        keys = sorted(keys)  # the same order on every process
        values = all_reduce(torch.tensor([float(metrics[k]) for k in keys],
                                         dtype=torch.float64, device=device), op)
        if op == "sum":
            values = values / env.world_size
        out.update(zip(keys, values.tolist()))
    return out


def any_process(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is True on any process (e.g. a SIGTERM seen by one rank)."""
    return bool(all_reduce(torch.tensor([float(flag)], device=device), "max").item() > 0)


__all__ = ["DataParallel", "DistEnv", "FullyShardedDataParallel", "ParallelStrategy",
           "PeerProcessError", "peer_failure",
           "SingleProcess", "all_reduce", "any_process", "gather_objects", "init_distributed",
           "launched_by_torchrun", "parallel_strategy", "reduce_metrics", "shutdown", "uses_fsdp"]
