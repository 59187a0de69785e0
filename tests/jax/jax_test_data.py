"""Small data builders shared by the pgpo_jax tests."""

from __future__ import annotations

import numpy as np


def ragged_mask(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    """``(batch, length)`` boolean mask, response lengths 1..length, one row full."""
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    return np.arange(length)[None, :] < lengths[:, None]
