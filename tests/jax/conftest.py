"""Fixtures for the pgpo_jax tests.

The root conftest turns on ``jax_enable_x64`` for the whole process once a ``jax``
backend test has run, so these tests set every dtype explicitly, and the
``set_x64`` fixture runs some comparisons in each mode on purpose.
"""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def set_x64():
    """A switch for ``jax_enable_x64``; the previous mode is restored after the test."""
    before = jax.config.jax_enable_x64
    yield lambda on: jax.config.update("jax_enable_x64", on)
    jax.config.update("jax_enable_x64", before)
