"""The CUDA paths: pgpo_torch and the reference trainer on a GPU, against the CPU.

CI has no GPU, so these tests skip there with that reason (shown by ``-ra``); on a machine
with CUDA run them with ``python -m pytest tests/cuda``. The core's own suites run on the
GPU through the array backend ``torch_cuda``::

    python -m pytest tests/core property_tests -m "not mutation" --backends torch_cuda,jax

What is checked here, each against an independent route on the CPU:
- ``compute_pgpo_advantages`` (both blind passes, exact and k3) on CUDA in float32: the
  dependency equals the CPU's to float32 rounding (TF32 off), and the advantages equal the
  core's on the CPU from that dependency;
- under bfloat16 autocast (the trainer's default on CUDA) it stays finite and conserves
  each response's advantage mass, and the dependency tracks float32's;
- ``dependency_from_hidden_states`` at Qwen2.5-VL's vocabulary, float32 and a bfloat16 LM
  head, against the core's exact KL in float64 on the CPU;
- the trainer on CUDA (bfloat16 autocast over float32 master weights): a resumed run equals
  an uninterrupted one bit for bit, and torchrun with FSDP2 over NCCL trains and saves.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

import pgpo_core
from pgpo_core import PGPOConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (CI has none); run on a GPU machine")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fixtures = _load("pgpo_torch_test_fixtures", REPO / "tests" / "torch" / "conftest.py")
_tiny_run = _load("pgpo_tiny_run", REPO / "tests" / "trainer" / "_tiny_run.py")

QUESTIONS = ("How many triangles are there?", "Area?", "x", "What is shown?")
SIZES = [(56, 56), (84, 112), (56, 84), (56, 56)]
REWARDS = [1.0, 0.0, 1.0, 0.0]
GROUPS = [0, 0, 1, 1]


@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 matmuls and convolutions (the vision tower's patch embedding is a
    Conv3d, which cuDNN runs in TF32 by default)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def tiny():
    from pgpo_torch.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor()
    model = build_tiny_model(processor, seed=0)
    g = torch.Generator().manual_seed(5)
    responses = [torch.randint(0, 500, (n,), generator=g).tolist() for n in (6, 3, 8, 5)]
    batch, T, rmask = _fixtures.make_rollout(processor, QUESTIONS, responses, image_sizes=SIZES)
    return model, batch, T, rmask


def _on(device, batch):
    return {k: v.to(device) for k, v in batch.items()}


def _advantages(model, batch, T, device, **kwargs):
    from pgpo_torch import compute_pgpo_advantages

    return compute_pgpo_advantages(model, _on(device, batch), torch.tensor(REWARDS, device=device),
                                   torch.tensor(GROUPS, device=device), response_length=T,
                                   **kwargs)


@pytest.mark.parametrize("estimator", ["exact", "k3"])
@pytest.mark.parametrize("blind", ["drop", "mask"])
def test_advantages_on_cuda_equal_the_cpu(tiny, blind, estimator):
    import copy

    model, batch, T, rmask = tiny
    config = PGPOConfig(estimator=estimator)
    cpu = _advantages(model, batch, T, "cpu", config=config, blind=blind)
    gpu_model = copy.deepcopy(model).to("cuda")
    gpu = _advantages(gpu_model, batch, T, "cuda", config=config, blind=blind)
    assert gpu.token_advantages.device.type == "cuda"
    # Dependencies are KLs of ~1e-3 nats summed over a 151k vocabulary: float32 rounding
    # of the two passes' log-softmaxes (different reduction orders on the two devices).
    torch.testing.assert_close(gpu.dependency.cpu(), cpu.dependency, rtol=1e-3, atol=2e-6)
    # The weights amplify those differences (Eqs. 4-7 divide by the smallest and largest
    # dependency of a response): measured 3e-3 relative. So the rest of the pipeline is
    # checked from CUDA's own dependency, against the core on the CPU.
    want = pgpo_core.reshape_advantages(
        pgpo_core.group_advantages(torch.tensor(REWARDS), torch.tensor(GROUPS)).advantages,
        gpu.dependency.cpu(), rmask, **config.weight_kwargs())
    torch.testing.assert_close(gpu.token_advantages.cpu(), want, rtol=1e-5, atol=1e-6)
    assert torch.equal(gpu.response_mask.cpu(), rmask)


def test_bfloat16_autocast_stays_finite_and_conserves_mass(tiny):
    import copy

    model, batch, T, rmask = tiny
    gpu_model = copy.deepcopy(model).to("cuda")
    ref = _advantages(gpu_model, batch, T, "cuda", config=PGPOConfig())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = _advantages(gpu_model, batch, T, "cuda", config=PGPOConfig())
    for name in ("dependency", "weights", "token_advantages"):
        value = getattr(out, name)
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value).all(), name
    mask = rmask.to("cuda")
    # Eq. 8 conserves each response's mass: sum_t A_t = |o| * A exactly up to rounding.
    base = pgpo_core.group_advantages(torch.tensor(REWARDS), torch.tensor(GROUPS)).advantages
    mass = (out.token_advantages * mask).sum(1).cpu()
    torch.testing.assert_close(mass, base * rmask.sum(1), rtol=1e-5, atol=1e-5)
    # bfloat16 logits carry ~3 significant digits: the dependency follows float32's in
    # rank (correlation over the response tokens), not to float32 precision.
    a, b = ref.dependency[mask], out.dependency[mask]
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1]
    assert corr > 0.9, float(corr)


@pytest.mark.parametrize("head_dtype", [torch.float32, torch.bfloat16])
def test_dependency_from_hidden_states_on_cuda(head_dtype):
    from pgpo_torch import dependency_from_hidden_states

    g = torch.Generator().manual_seed(0)
    T, H, V = 96, 256, 152_064
    hv = torch.randn(2, T, H, generator=g)
    hb = hv + 0.3 * torch.randn(2, T, H, generator=g)
    w = torch.randn(V, H, generator=g) / H**0.5 * 4
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, T // 2:] = False
    # The independent route: the core's exact KL in float64 on the CPU, from the logits the
    # head gives: float64 products of the (rounded) inputs, rounded to the head's dtype as
    # a GEMM with float32 accumulation rounds its output.
    hv_used, hb_used, w_used = (x.to(head_dtype) for x in (hv, hb, w))

    def logits(h):
        return (h.double() @ w_used.double().T).to(head_dtype).double()

    want = pgpo_core.token_visual_dependency(logits(hv_used), logits(hb_used), mask)
    got = dependency_from_hidden_states(hv_used.cuda(), hb_used.cuda(), w_used.cuda(),
                                        mask.cuda(), chunk_size=32)
    assert got.dtype == torch.float32 and got.device.type == "cuda"
    assert torch.equal(got.cpu()[~mask], torch.zeros(int((~mask).sum())))
    # float32: the KL's float32 rounding over a V-term sum. bfloat16: the same, plus the odd
    # logit that the GEMM's float32 accumulation rounds to the neighbouring bfloat16 value
    # (one ulp, 2^-8 relative, of a logit whose probability is small).
    rtol, atol = (1e-4, 1e-5) if head_dtype == torch.float32 else (2e-3, 2e-4)
    torch.testing.assert_close(got.cpu().double(), want, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ the trainer on CUDA


def _train_rows(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [r for r in map(json.loads, f) if r["kind"] == "train"]
    from reference_impl.loop.timing import comparable_rows
    return comparable_rows(rows)


def test_trainer_on_cuda_resumes_bit_for_bit(tmp_path, monkeypatch):
    from reference_impl.loop import rl_step as rl_step_mod
    from reference_impl.runlog.checkpoint import load_checkpoint
    from reference_impl.data.rewards import RewardBreakdown
    from reference_impl.train import main

    def varied_rewards(texts, answers, **_):
        return [RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
                for t in texts]

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    common = ("algo.dynamic_sampling=false", "model.sft_warmup_steps=2", "train.device=cuda")
    straight, split = tmp_path / "straight", tmp_path / "split"
    main(_tiny_run.tiny_args(straight, "train.total_steps=4", *common))
    main(_tiny_run.tiny_args(split, "train.total_steps=2", *common))
    second = main(_tiny_run.tiny_args(split, "train.total_steps=4", "checkpoint.resume=auto",
                                      *common))
    assert second["resumed_from"] == 2 and second["steps"] == 4
    a = load_checkpoint(straight / "checkpoints")
    b = load_checkpoint(split / "checkpoints")
    # float32 master weights under bfloat16 autocast (model.dtype=auto on CUDA).
    assert {v.dtype for v in a.model_state.values() if v.is_floating_point()} == {torch.float32}
    for k in a.model_state:
        assert torch.equal(a.model_state[k], b.model_state[k]), k
    first = load_checkpoint(split / "checkpoints" / "step_00000002")
    assert any(not torch.equal(first.model_state[k], b.model_state[k]) for k in b.model_state)
    rows_a, rows_b = _train_rows(straight), _train_rows(split)
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    assert rows_a == rows_b
    assert all(r["grad_norm"] == r["grad_norm"] for r in rows_a)  # no NaN


def test_torchrun_fsdp2_over_nccl(tmp_path):
    from reference_impl.runlog.checkpoint import load_checkpoint

    out = tmp_path / "run"
    _tiny_run.run_torchrun(REPO / "reference_impl" / "train.py",
                           _tiny_run.tiny_args(out, "train.total_steps=2",
                                               "algo.dynamic_sampling=false",
                                               "dist.backend=nccl", "train.device=cuda",
                                               "dist.fsdp=on", "checkpoint.every=1",
                                               "model.sft_warmup_steps=2"),
                           processes=1, timeout=300)
    with open(out / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]
    step1 = load_checkpoint(out / "checkpoints" / "step_00000001", consolidate=True)
    step2 = load_checkpoint(out / "checkpoints" / "step_00000002", consolidate=True)
    assert any(not torch.equal(step1.model_state[k], step2.model_state[k])
               for k in step2.model_state)
    assert all(torch.isfinite(v).all() for v in step2.model_state.values()
               if v.is_floating_point())
