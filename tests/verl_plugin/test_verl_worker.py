"""Visual and blind passes through verl's real TrainingWorker (FSDP2 engine, CPU, gloo),
against the plain Hugging Face route of pgpo_torch / pgpo_core."""

from __future__ import annotations

import pytest
import torch
from verl.utils import tensordict_utils as tu
from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

import pgpo_core
from pgpo_torch.blind_pass import visual_and_blind_outputs
from pgpo_verl import apply_no_image_workaround, blind_batch, exact_dependency
from pgpo_verl.trainer import pgpo_token_ids
from verl_rollout import build_rollout, token_log_probs

LENGTHS = (7, 3, 5, 1)


def _blind(data, processor):
    ids = pgpo_token_ids(processor, processor.tokenizer)
    return blind_batch(data, image_token_id=ids["image_token_id"],
                       pad_token_id=ids["pad_token_id"], video_token_id=ids["video_token_id"])


def _no_padding(data):
    td = left_right_2_no_padding(data.to_tensordict())
    tu.assign_non_tensor(td, calculate_entropy=False, compute_loss=False)
    return td


def _infer_log_probs(worker, data):
    td = _no_padding(data)
    out = worker.infer_batch(td)
    return no_padding_2_padding(tu.get(out, "log_probs"), td)


@pytest.fixture(scope="module")
def rollout(tiny):
    model, processor, _ = tiny
    hf, data, T, rmask = build_rollout(model, processor, LENGTHS, seed=3)
    with torch.no_grad():
        visual, blind = visual_and_blind_outputs(model, hf, response_length=T, blind="mask")
    tokens = data.batch["responses"]
    return dict(hf=hf, data=data, T=T, rmask=rmask, visual_logits=visual, blind_logits=blind,
                visual_logp=token_log_probs(visual, tokens),
                blind_logp=token_log_probs(blind, tokens))


def test_worker_visual_and_blind_log_probs_match_hf(tiny, verl_worker, rollout):
    apply_no_image_workaround()
    _, processor, _ = tiny
    rmask = rollout["rmask"]
    with verl_worker.patched():
        visual = _infer_log_probs(verl_worker.worker, rollout["data"])
        blind = _infer_log_probs(verl_worker.worker, _blind(rollout["data"], processor))
    torch.testing.assert_close(visual[rmask], rollout["visual_logp"][rmask], rtol=0, atol=2e-5)
    torch.testing.assert_close(blind[rmask], rollout["blind_logp"][rmask], rtol=0, atol=2e-5)
    assert (visual[rmask] - blind[rmask]).abs().max() > 1e-2


def test_no_image_micro_batch_needs_the_workaround(tiny, verl_worker, rollout, monkeypatch):
    """verl 0.9.1 + transformers 5: a micro-batch without pixels raises in verl's own
    code; with the workaround it runs (and matches the HF blind pass above)."""
    import verl.models.transformers.qwen2_vl as qwen2_vl

    apply_no_image_workaround()
    _, processor, _ = tiny
    blind = _blind(rollout["data"], processor)
    buggy = qwen2_vl._get_input_embeds.__wrapped__  # verl's original function
    with verl_worker.patched():
        with monkeypatch.context() as m:
            m.setattr(qwen2_vl, "_get_input_embeds", buggy)
            with pytest.raises(AttributeError, match="mean"):
                _infer_log_probs(verl_worker.worker, blind)
        fixed = _infer_log_probs(verl_worker.worker, blind)
    rmask = rollout["rmask"]
    torch.testing.assert_close(fixed[rmask], rollout["blind_logp"][rmask], rtol=0, atol=2e-5)


def test_workaround_keeps_image_batches_and_the_vision_tower_gradient(tiny, verl_worker):
    """With pixels, verl's code runs unchanged; without, the vision tower still gets a
    (zero) gradient, as verl intends for FSDP."""
    import verl.models.transformers.qwen2_vl as qwen2_vl

    apply_no_image_workaround()
    apply_no_image_workaround()  # idempotent
    model, _, _ = tiny
    assert qwen2_vl._get_input_embeds.__wrapped__.__module__ == qwen2_vl.__name__
    ids = torch.tensor([[5, 6, 7]])
    model.zero_grad()
    embeds, _ = qwen2_vl._get_input_embeds(model.model, ids)
    embeds.sum().backward()
    grads = [p.grad for p in model.model.visual.parameters()]
    assert all(g is not None for g in grads)
    assert all(float(g.abs().max()) == 0.0 for g in grads)
    model.zero_grad()


def test_exact_dependency_in_the_engine_matches_the_core(tiny, verl_worker, rollout):
    _, processor, _ = tiny
    apply_no_image_workaround()
    rmask = rollout["rmask"]
    expected = pgpo_core.token_visual_dependency(rollout["visual_logits"],
                                                 rollout["blind_logits"], rmask)
    visual_td = _no_padding(rollout["data"])
    blind_td = _no_padding(_blind(rollout["data"], processor))
    with verl_worker.patched(), verl_worker.engine.eval_mode():
        got = exact_dependency(verl_worker.engine, visual_td, blind_td, chunk_size=5)
    assert got.shape == rmask.shape
    assert torch.equal(got[~rmask], torch.zeros_like(got[~rmask]))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert float(expected[rmask].min()) > 0
