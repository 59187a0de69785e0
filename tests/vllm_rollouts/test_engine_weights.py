"""What the engines hand over, without vLLM (so these run in the main environment too):
weights for the sync (LoRA merged, bucketed) and the rollout/trainer mismatch math."""

import copy
import math

import pytest
import torch

from reference_impl.rollout.engines import (resolve_backend, rollout_mismatch_metrics,
                                    truncated_is_weights)
from reference_impl.rollout.engines.vllm_engine import iter_hf_weights


def test_truncated_is_weights_by_hand():
    trainer = torch.tensor([[-1.0, -2.0, -3.0]])
    rollout = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[True, True, False]])
    w = truncated_is_weights(trainer, rollout, mask, cap=1.5)
    # exp(0.5) = 1.6487 > 1.5 -> 1.5; exp(-1) = 0.3679; padding 0.
    assert w[0].tolist() == pytest.approx([1.5, math.exp(-1.0), 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="^cap: must be > 0"):
        truncated_is_weights(trainer, rollout, mask, cap=0.0)
    with pytest.raises(ValueError, match="^rollout_logprobs: shape"):
        truncated_is_weights(trainer, rollout[:, :2], mask, cap=2.0)


def test_mismatch_metrics_by_hand():
    trainer = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    rollout = torch.tensor([[-1.25, -1.5], [-0.5, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    m = rollout_mismatch_metrics(trainer, rollout, mask)
    assert m["rollout_logprob_diff_mean"] == pytest.approx((0.25 + 0.5 + 0.0) / 3)
    assert m["rollout_logprob_diff_max"] == pytest.approx(0.5)


def test_auto_backend_is_hf_on_cpu_and_with_several_processes():
    assert resolve_backend("auto", "cpu") == "hf"
    assert resolve_backend("auto", "cuda", world_size=2) == "hf"
    assert resolve_backend("hf", "cuda") == "hf"


def test_lora_weights_are_merged_for_the_sync_under_their_checkpoint_names():
    peft = pytest.importorskip("peft", reason="LoRA needs peft (the torch extra installs it)")
    from pgpo_torch.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor()
    base = build_tiny_model(processor, seed=0)
    names = list(base.state_dict())
    model = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():  # a trained adapter: B != 0
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    merged = dict(iter_hf_weights(model, bucket_bytes=4096))  # many small buckets
    # Independent route: peft's own merge on a copy.
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert sorted(merged) == sorted(names) == sorted(reference)
    for name in names:
        torch.testing.assert_close(merged[name], reference[name], rtol=0, atol=1e-6)
    q = next(n for n in names if n.endswith("self_attn.q_proj.weight"))
    assert not torch.allclose(merged[q], base.state_dict()[q])  # the adapter is in there
    # The trained module is untouched (still unmerged LoRA layers).
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_plain_model_weights_are_its_state_dict():
    from pgpo_torch.tiny import build_tiny_model

    model = build_tiny_model(seed=0)
    got = list(iter_hf_weights(model, bucket_bytes=None))
    assert [n for n, _ in got] == list(model.state_dict())
    assert all(torch.equal(t, model.state_dict()[n]) for n, t in got)
