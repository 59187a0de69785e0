"""Fixtures for the PyTorch adapter tests: one tiny offline Qwen2.5-VL per session."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import torch  # a hard requirement of these tests: no skip

from pgpo_torch.tiny import build_tiny_model, build_tiny_processor


@contextlib.contextmanager
def one_torch_thread():
    """Tiny shapes run fastest on one thread; with several OpenMP threads on a shared,
    busy 2-core machine a 64-wide matmul can be hundreds of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_processor():
    return build_tiny_processor()


@pytest.fixture(scope="session")
def tiny_model(tiny_processor):
    with one_torch_thread():
        return build_tiny_model(tiny_processor, seed=0)


def make_image(seed: int, height: int = 56, width: int = 56):
    """A deterministic random RGB PIL image."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def user_prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


@pytest.fixture
def image_factory():
    return make_image


@pytest.fixture
def prompt_factory():
    return user_prompt


def make_rollout(processor, questions, responses, *, image_sizes=None, seed=0):
    """A GRPO-style rollout batch: left-padded prompts (one image each) + right-padded
    responses. ``responses`` are lists of token ids. Returns ``(batch, T, response_mask)``
    with ``batch`` a dict of tensors (mm_token_type_ids zero on the responses)."""
    tok = processor.tokenizer
    sizes = image_sizes or [(56, 56)] * len(questions)
    texts = [user_prompt(processor, q) for q in questions]
    images = [make_image(seed + i, *hw) for i, hw in enumerate(sizes)]
    prompt = processor(text=texts, images=images, return_tensors="pt", padding=True,
                       padding_side="left")
    width = max(len(r) for r in responses)
    ids = torch.full((len(responses), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(responses), width), dtype=torch.long)
    for i, r in enumerate(responses):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    batch = dict(
        input_ids=torch.cat([prompt["input_ids"], ids], dim=1),
        attention_mask=torch.cat([prompt["attention_mask"], mask], dim=1),
        mm_token_type_ids=torch.cat([prompt["mm_token_type_ids"], torch.zeros_like(ids)], 1),
        pixel_values=prompt["pixel_values"],
        image_grid_thw=prompt["image_grid_thw"],
    )
    return batch, width, mask.bool()


@pytest.fixture
def rollout_factory():
    return make_rollout
