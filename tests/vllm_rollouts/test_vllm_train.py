"""Training with rollout.backend=vllm end to end on CPU, and the setups refused up front."""

import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "trainer"))
from _vllm_tiny import NEEDS_VLLM, VLLM_TINY  # noqa: E402

pytest.importorskip(*NEEDS_VLLM)

from _tiny_run import run_torchrun, tiny_args  # noqa: E402

from reference_impl.loop import trainer as trainer_mod  # noqa: E402
from reference_impl.loop import rl_step as rl_step_mod  # noqa: E402
from reference_impl.policy import model as policy_model  # noqa: E402
from reference_impl.config import load_config  # noqa: E402
from reference_impl.policy.distributed import DistEnv  # noqa: E402
from reference_impl.data.rewards import RewardBreakdown  # noqa: E402
from reference_impl.train import main  # noqa: E402


def varied_rewards(texts, answers, **_):
    """Rewards that differ within groups (the untrained model never answers right)."""
    return [RewardBreakdown(reward=float(len(t) % 2 == 0), accuracy=0.0, format=0.0)
            for t in texts]


def test_two_steps_with_vllm_rollouts_and_truncated_is(tmp_path, monkeypatch):
    monkeypatch.setattr(policy_model, "TINY_MODEL", VLLM_TINY)
    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    synced = []
    from reference_impl.rollout.engines.vllm_engine import VLLMEngine
    original = VLLMEngine.sync_weights
    monkeypatch.setattr(VLLMEngine, "sync_weights",
                        lambda self, model: (synced.append(1), original(self, model)))
    summary = main(tiny_args(out, "train.total_steps=2", "algo.dynamic_sampling=false",
                             "rollout.backend=vllm", "rollout.tis_cap=2", "optim.lr=1e-2",
                             "rollout.vllm_kv_cache_memory_mb=16"))
    assert summary["steps"] == 2
    with open(out / "metrics.jsonl") as f:
        train = [r for r in map(json.loads, f) if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["updated"] == 1.0 and r["nonfinite_skipped"] == 0.0
        for key in ("loss", "grad_norm", "reward", "rollout_logprob_diff_mean",
                    "rollout_logprob_diff_max", "tis_weight_mean"):
            assert math.isfinite(r[key]), key
        # float32 on CPU: vLLM samples from the trainer's policy to within 1e-4 in log-prob,
        # at step 2 too, so the weights the step-1 update changed (lr 1e-2) were synced.
        assert r["rollout_logprob_diff_max"] <= 1e-4
        assert r["tis_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    # Synced before the step-2 rollout and before the final evaluation (eval.at_start off).
    assert len(synced) == 2
    final = [r for r in map(json.loads, open(out / "metrics.jsonl")) if r["kind"] == "eval"][-1]
    assert final["phase"] == "final" and final["responses"] == 2.0


def test_two_processes_each_with_its_own_engine(tmp_path):
    """torchrun, two gloo processes (DDP): one vLLM engine per rank (tensor parallel 1,
    vLLM's external launcher), each sampling its own prompts and synced to its replica."""
    out = tmp_path / "run"
    run_torchrun(os.path.join(os.path.dirname(__file__), "_torchrun_driver.py"),
                 tiny_args(out, "train.total_steps=2", "algo.dynamic_sampling=false",
                           "rollout.backend=vllm", "rollout.tis_cap=2", "optim.lr=1e-2",
                           "rollout.vllm_kv_cache_memory_mb=16", "dist.backend=gloo",
                           "dist.fsdp=off", "train.device=cpu"),
                 processes=2, timeout=600, env={"OMP_NUM_THREADS": "1"})
    with open(out / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["updated"] == 1.0
        # Each rank's engine samples from that rank's policy to float32 rounding, at step
        # 2 too (the step-1 update reached both engines); here the mean over ranks.
        assert r["rollout_logprob_diff_max"] <= 1e-4
    final = [r for r in rows if r["kind"] == "eval"][-1]
    assert final["responses"] == 2.0  # 2 held-out prompts over 2 ranks, k = 1


def test_several_processes_under_fsdp_need_a_model_path():
    from reference_impl.rollout.engines import check_trainer_setup

    cfg = load_config(tiny_args("/tmp/unused", "rollout.backend=vllm", "dist.fsdp=on"),
                      check_environment=False)
    with pytest.raises(ValueError, match="model.path"):
        check_trainer_setup(cfg, "cpu", world_size=2)


def _trainer(tmp_path, *extra):
    cfg = load_config(tiny_args(tmp_path / "run", "train.total_steps=1", *extra),
                      check_environment=False)
    return trainer_mod.Trainer(cfg, DistEnv())


def test_unsupported_head_size_is_refused_before_any_work(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(trainer_mod, "build_policy", lambda *a: built.append(1))
    with pytest.raises(ValueError, match=r"^rollout\.backend: vLLM on CPU supports attention "
                                         r"head sizes 32, .*this model's is 16"):
        _trainer(tmp_path, "rollout.backend=vllm")  # the tiny default: 4 heads of 16
    assert not built


def test_too_small_kv_cache_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(policy_model, "TINY_MODEL", VLLM_TINY)
    built = []
    monkeypatch.setattr(trainer_mod, "build_policy", lambda *a: built.append(1))
    # 2 layers x 2 KV heads x 32 x (K, V) x 4 bytes = 1 KiB per token: 1 MiB holds 1024
    # tokens, fewer than 256 + 2048.
    with pytest.raises(ValueError, match=r"^rollout\.vllm_kv_cache_memory_mb: 1 MiB of KV "
                                         r"cache hold 1024 tokens, fewer than .* = 2304"):
        _trainer(tmp_path, "rollout.backend=vllm", "rollout.vllm_kv_cache_memory_mb=1",
                 "rollout.max_response_length=2048")
    assert not built


def test_vllm_without_vllm_installed_is_refused(tmp_path, monkeypatch):
    from reference_impl.rollout import engines

    monkeypatch.setattr(engines, "vllm_importable", lambda: False)
    with pytest.raises(ValueError, match=r"^rollout\.backend: 'vllm' needs the vllm package"):
        _trainer(tmp_path, "rollout.backend=vllm")
    # auto falls back to HF generate (and on CPU is HF anyway).
    assert engines.resolve_backend("auto", "cuda") == "hf"
    assert engines.resolve_backend("auto", "cpu") == "hf"


def test_sleep_mode_and_tis_need_what_they_need(tmp_path, monkeypatch):
    monkeypatch.setattr(policy_model, "TINY_MODEL", VLLM_TINY)
    with pytest.raises(ValueError, match=r"^rollout\.vllm_sleep: vLLM's sleep mode needs CUDA"):
        _trainer(tmp_path, "rollout.backend=vllm", "rollout.vllm_sleep=true")
    with pytest.raises(ValueError, match=r"^rollout\.tis_cap: truncated importance sampling "
                                         r"needs an engine that reports"):
        _trainer(tmp_path, "rollout.backend=hf", "rollout.tis_cap=2")
