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

Conformance: every property calls the implementation under test through the ``pgpo``
fixture, so the suite checks any module with pgpo_core's public API::

    python -m pytest property_tests --pgpo-impl mypackage.pgpo      # or
    PGPO_IMPL=mypackage.pgpo python -m pytest property_tests
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.function_scoped_fixture]

settings.register_profile("default", deadline=None, suppress_health_check=_SUPPRESS)
settings.register_profile("deep", max_examples=2_000, deadline=None,
                          suppress_health_check=_SUPPRESS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
