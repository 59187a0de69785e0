"""Hypothesis profiles for the PGPO property suite (the conformance suite).

Profiles, chosen with the environment variable ``HYPOTHESIS_PROFILE``:

- ``default`` (used when the variable is unset): Hypothesis' default settings
  (100 examples per test) with ``deadline=None``, since the first call on a backend
  (jax especially) compiles or imports and would trip a per-example deadline.
- ``deep``: 2,000 examples per test, for a longer search before a release::

      HYPOTHESIS_PROFILE=deep python -m pytest property_tests

Both profiles suppress Hypothesis' ``function_scoped_fixture`` health check: the
``pgpo`` and ``backend`` fixtures (root ``conftest.py``) are stateless (a module and a
namespace with converters), so reusing one instance across the examples of a test
is sound.

Conformance: every test in this folder (except the mutation self-test in
``mutants/``) is marked ``conformance`` and calls the implementation under test
through the ``pgpo`` fixture, so the suite checks any module with pgpo_core's
public API, on the backends chosen with ``--backends``::

    python -m pytest property_tests -m conformance --pgpo-impl mypackage.pgpo --backends numpy
    PGPO_IMPL=mypackage.pgpo python -m pytest property_tests -m conformance

Fixed seed (what the mutation self-test uses): add ``--hypothesis-seed 0``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.function_scoped_fixture]

settings.register_profile("default", deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("deep", max_examples=2_000, deadline=None,
                          suppress_health_check=_SUPPRESS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_HERE = Path(__file__).resolve().parent
_SELFTEST = _HERE / "mutants"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the conformance tests (this folder, the mutation self-test excluded)."""
    for item in items:
        path = Path(str(item.path)).resolve()
        if _HERE in path.parents and _SELFTEST not in path.parents:
            item.add_marker(pytest.mark.conformance)
