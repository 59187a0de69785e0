"""Fixtures for the verl plugin tests: verl's real FSDP engine on CPU, on the tiny Qwen2.5-VL.

These tests need verl (0.9.x), which lives in its own environment (``.venv-verl``, built by
``.ci/run``; see the README's "verl" section). In an environment without verl the folder
is not collected, and the test header says so; ``.ci/run`` runs it in the verl venv.
"""

from __future__ import annotations

import contextlib
import os
import socket
from importlib import metadata

import pytest


def _has_verl() -> bool:
    # The installed distribution, not find_spec("verl"): with tests/ on sys.path, this very
    # folder would pass for a namespace package named "verl".
    try:
        metadata.version("verl")
    except metadata.PackageNotFoundError:
        return False
    return True


HAS_VERL = _has_verl()
if not HAS_VERL:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    if not HAS_VERL:
        return ["tests/verl_plugin: not collected, verl is not installed in this environment "
                "(they run in the verl venv: bash .ci/run, block 'verl')"]
    return []


if HAS_VERL:
    # verl picks its platform and engine on first use: CPU platform, CUDA engine registration.
    os.environ.setdefault("VERL_PLATFORM", "cpu")
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    os.environ.setdefault("VERL_LOGGING_LEVEL", "WARN")

    import torch

    import cpu_platform  # noqa: F401  (registers the "cpu" platform)
    from verl_rollout import build_rollout  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _one_thread_gloo():
    """One torch thread (tiny shapes on a busy 2-core machine) and a world-size-1 gloo
    process group, made before verl's worker would try NCCL."""
    torch.set_num_threads(1)
    import torch.distributed as dist

    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
                          WORLD_SIZE="1", LOCAL_RANK="0")
        dist.init_process_group("gloo", rank=0, world_size=1)
    yield


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``(model, processor, path)``: the tiny Qwen2.5-VL, saved where verl can load it."""
    from pgpo_torch.tiny import build_tiny_qwen2_5_vl

    model, processor = build_tiny_qwen2_5_vl(seed=0, attn_implementation="sdpa")
    model.eval()
    path = tmp_path_factory.mktemp("tiny_qwen2_5_vl")
    model.save_pretrained(path)
    processor.tokenizer.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    return model, processor, str(path)


# verl's engine monkey-patches Qwen2.5-VL's forwards for the whole process (they then need
# 4-row position ids). The plain Hugging Face route of the tests must run unpatched, so the
# patches are active only inside ``verl_patched()``.
def _forward_owners():
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as q25
    from transformers.models.qwen2_vl import modeling_qwen2_vl as q2

    return [q25.Qwen2_5_VLModel, q25.Qwen2_5_VLForConditionalGeneration,
            q25.Qwen2_5_VLAttention, q2.Qwen2VLModel, q2.Qwen2VLForConditionalGeneration,
            q2.Qwen2VLAttention]


def _forwards():
    return {cls: cls.__dict__.get("forward") for cls in _forward_owners()}


def _install(forwards):
    for cls, fn in forwards.items():
        setattr(cls, "forward", fn)


class VerlWorker:
    """A real verl ``TrainingWorker`` (FSDP2 engine, world size 1) and the HF forwards
    before and after verl patched them."""

    def __init__(self, worker, hf, patched):
        self.worker, self._hf, self._patched = worker, hf, patched

    @property
    def engine(self):
        return self.worker.engine

    @contextlib.contextmanager
    def patched(self):
        _install(self._patched)
        try:
            yield self
        finally:
            _install(self._hf)


@pytest.fixture(scope="session")
def verl_worker(tiny):
    from verl.workers.config import HFModelConfig
    from verl.workers.config.engine import FSDPEngineConfig, TrainingWorkerConfig
    from verl.workers.config.optimizer import FSDPOptimizerConfig
    from verl.workers.engine_workers import TrainingWorker

    hf = _forwards()
    model_config = HFModelConfig(path=tiny[2], use_remove_padding=False,
                                 enable_gradient_checkpointing=False,
                                 override_config={"attn_implementation": "sdpa"})
    # float32 compute (no bf16 autocast), so the engine can be compared at 2e-5.
    engine_config = FSDPEngineConfig(strategy="fsdp2", use_dynamic_bsz=False, dtype="float32",
                                     mixed_precision={"param_dtype": "fp32"},
                                     micro_batch_size_per_gpu=2,
                                     infer_micro_batch_size_per_gpu=2,
                                     use_torch_compile=False)
    worker = TrainingWorker(TrainingWorkerConfig(
        model_type="language_model", model_config=model_config, engine_config=engine_config,
        optimizer_config=FSDPOptimizerConfig(lr=1e-3)))
    worker.reset()
    patched = _forwards()
    _install(hf)
    return VerlWorker(worker, hf, patched)
