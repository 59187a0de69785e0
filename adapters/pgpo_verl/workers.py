"""The actor worker with PGPO's exact dependency, and the engine-level function it runs.

:func:`exact_dependency` runs the visual and the blind pass of each micro-batch through a
verl FSDP engine, keeps the final hidden states of the response positions (a forward
pre-hook on the LM head, which then only sees one position, so no ``(L, V)`` logits are
made), and calls :func:`pgpo_torch.dependency_from_hidden_states`: the core's KL (PGPO
Eq. 1) over the whole vocabulary, ``chunk_size`` tokens at a time, inside the worker. Only
the ``(B, T)`` dependency leaves it.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from tensordict import TensorDict
from verl.single_controller.base.decorator import make_nd_compute_dataproto_dispatch_fn, register
from verl.utils import tensordict_utils as tu
from verl.utils.device import get_device_id, get_device_name
from verl.workers.engine_workers import ActorRolloutRefWorker
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

from pgpo_torch.dependency import dependency_from_hidden_states
from pgpo_verl.workaround import apply_no_image_workaround, apply_position_ids_workaround

__all__ = ["PGPOActorRolloutRefWorker", "exact_dependency"]

DEPENDENCY_KEY = "pgpo_dependency"


def _full(tensor):
    """A DTensor's full value (tensor-parallel LM heads), a plain tensor unchanged."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _response_hidden(hidden: torch.Tensor, micro_batch: TensorDict, *,
                     remove_padding: bool) -> torch.Tensor:
    """``(B, T, H)`` hidden states at the positions predicting each response token."""
    if remove_padding:  # packed layout: (1, nnz (+ pad), H)
        packed = hidden[0, : micro_batch["input_ids"].values().shape[0]]
    else:  # padded layout: (B, max_len, H), sample b in [0, len_b)
        lengths = micro_batch["input_ids"].offsets().diff().tolist()
        packed = torch.cat([hidden[b, :n] for b, n in enumerate(lengths)])
    # verl's own response slicing (log-probs: position p + t - 1 predicts response token t).
    return no_padding_2_padding(packed, micro_batch)


@torch.no_grad()
def exact_dependency(engine, visual: TensorDict, blind: TensorDict, *,
                     chunk_size: int = 256) -> torch.Tensor:
    """Exact ``S = KL(pi_I || pi_0)`` of every response token, ``(B, T)``, 0 on padding.

    ``visual`` and ``blind`` are the two passes' batches in verl's no-padding layout
    (``left_right_2_no_padding`` of the rollout batch and of :func:`pgpo_verl.blind_batch`),
    same samples in the same order. Micro-batches of the engine's
    ``infer_micro_batch_size_per_gpu`` go through ``engine.prepare_model_inputs`` and
    ``engine.module`` exactly as verl's ``compute_log_prob`` does (same autocast, same
    temperature: the ``temperature`` of the batch). Sequence parallelism is not supported.
    """
    if len(visual) != len(blind):
        raise ValueError(f"blind: {len(blind)} samples, visual has {len(visual)}")
    if getattr(engine, "ulysses_sequence_parallel_size", 1) > 1:
        raise ValueError("ulysses_sequence_parallel_size: the exact PGPO dependency does not "
                         "support sequence parallelism; use pgpo.estimator=k3")
    config = engine.engine_config
    micro = config.infer_micro_batch_size_per_gpu or 1
    remove_padding = bool(engine.model_config.get("use_remove_padding", False))
    defaults = dict(use_remove_padding=remove_padding, use_fused_kernels=False)
    for data in (visual, blind):
        for key, value in defaults.items():
            tu.assign_non_tensor(data, **{key: value})
    temperature = tu.get_non_tensor_data(data=visual, key="temperature", default=1.0)
    module = engine.module
    head = module.lm_head
    autocast_dtype = getattr(engine, "_autocast_dtype", torch.bfloat16)
    autocast = nullcontext() if autocast_dtype == torch.float32 else \
        torch.autocast(device_type=get_device_name(), dtype=autocast_dtype)
    n_chunks = (len(visual) + micro - 1) // micro
    out = []
    weight = bias = None
    for mb_visual, mb_blind in zip(tu.chunk_tensordict(visual, n_chunks),
                                   tu.chunk_tensordict(blind, n_chunks), strict=True):
        captured: dict[str, torch.Tensor] = {}

        def keep_hidden(_module, args, name=None):
            captured[name] = args[0]
            return (args[0][..., :1, :],)  # the head's output is not used: one position

        hiddens = []
        for name, mb in (("visual", mb_visual), ("blind", mb_blind)):
            mb = mb.to(get_device_id())
            inputs, _ = engine.prepare_model_inputs(micro_batch=mb)
            handle = head.register_forward_pre_hook(
                lambda m, a, name=name: keep_hidden(m, a, name))
            try:
                with autocast:
                    module(**inputs, use_cache=False)
            finally:
                handle.remove()
            hiddens.append(_response_hidden(captured[name], mb, remove_padding=remove_padding))
        mask = mb_visual["response_mask"].bool().to(hiddens[0].device)
        if weight is None:  # gathered once per call (a collective under FSDP), after a forward
            weight = _full(head.weight)
            bias = None if getattr(head, "bias", None) is None else _full(head.bias)
        out.append(dependency_from_hidden_states(
            hiddens[0], hiddens[1].to(hiddens[0].dtype), weight, mask,
            temperature=float(temperature), chunk_size=chunk_size, lm_head_bias=bias).cpu())
    width = max(d.shape[1] for d in out)
    return torch.cat([torch.nn.functional.pad(d, (0, width - d.shape[1])) for d in out])


class PGPOActorRolloutRefWorker(ActorRolloutRefWorker):
    """verl's actor/rollout/ref worker with the no-image workaround and the exact
    dependency (``compute_pgpo_dependency``)."""

    def __init__(self, *args, **kwargs):
        apply_no_image_workaround()
        apply_position_ids_workaround()  # compute_pgpo_dependency unpads here (workaround.py)
        super().__init__(*args, **kwargs)

    @register(dispatch_mode=make_nd_compute_dataproto_dispatch_fn(mesh_name="actor"))
    def compute_pgpo_dependency(self, visual: TensorDict, blind: TensorDict) -> TensorDict:
        """Both passes per micro-batch and the exact KL, in the actor's engine; returns
        ``pgpo_dependency``, ``(B, T)`` aligned with the responses (0 on padding).
        ``visual`` and ``blind`` come left-right padded (:func:`pgpo_verl.steps.
        exact_dependency_via` says why) or already in the no-padding layout."""
        chunk = tu.get_non_tensor_data(data=visual, key="pgpo_chunk_size", default=256)
        visual, blind = (td if td["input_ids"].is_nested else left_right_2_no_padding(td)
                         for td in (visual, blind))
        engine = self.actor.engine
        with engine.eval_mode():
            dependency = exact_dependency(engine, visual, blind, chunk_size=int(chunk))
        if not engine.is_mp_src_rank_with_outputs():
            return None
        return tu.get_tensordict({DEPENDENCY_KEY: dependency})
