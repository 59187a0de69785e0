"""Fixtures for the PyTorch adapter tests: one tiny offline Qwen2.5-VL per session."""

from __future__ import annotations

import numpy as np
import pytest

import torch  # noqa: F401  (a hard requirement of these tests: no skip)

from pgpo_torch.tiny import build_tiny_model, build_tiny_processor  # noqa: E402


@pytest.fixture(scope="session")
def tiny_processor():
    return build_tiny_processor()


@pytest.fixture(scope="session")
def tiny_model(tiny_processor):
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
