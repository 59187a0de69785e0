"""Shared pytest fixtures: the implementation under test and the array backends.

Conformance: the unit and property suites test ``pgpo_core`` by default. Point them
at another implementation of the same public API with ``--pgpo-impl package.module``
or the environment variable ``PGPO_IMPL=package.module``.

Backends: every array test runs once per backend in ``BACKENDS`` through the ``backend``
fixture. A backend that cannot be imported is an error, never a silent skip; restrict
the set on purpose with ``--backends numpy,torch`` or ``PGPO_BACKENDS=numpy,torch``.
``torch_cuda`` (torch tensors on the first CUDA device) is never in the default set, since
CI has no GPU; asked for on a machine without CUDA it is an error, not a skip.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Callable

import numpy as np
import pytest

BACKENDS = ("numpy", "array_api_strict", "torch", "jax")
#: Selectable with --backends, never run by default.
EXTRA_BACKENDS = ("torch_cuda",)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgpo")
    group.addoption("--pgpo-impl", default=None,
                    help="module implementing the pgpo_core API to test (default: pgpo_core; "
                         "env PGPO_IMPL)")
    group.addoption("--backends", default=None,
                    help="comma-separated array backends to run (default: all of "
                         f"{','.join(BACKENDS)}; env PGPO_BACKENDS)")


def _selected_backends(config: pytest.Config) -> list[str]:
    raw = config.getoption("--backends") or os.environ.get("PGPO_BACKENDS") or ",".join(BACKENDS)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BACKENDS) - set(EXTRA_BACKENDS))
    if unknown:
        raise pytest.UsageError(f"--backends: unknown backend(s) {unknown}; choose from "
                                f"{BACKENDS + EXTRA_BACKENDS}")
    return names


@dataclasses.dataclass(frozen=True)
class Backend:
    """One array library on one device: its namespace plus converters to and from numpy.

    ``library`` names the array library (``torch`` for both torch backends), for the tests
    that reach past the array API (automatic differentiation)."""

    name: str
    xp: Any
    asarray: Callable[..., Any]
    to_numpy: Callable[[Any], np.ndarray]
    library: str = ""

    def __post_init__(self) -> None:
        if not self.library:
            object.__setattr__(self, "library", self.name)

    def __repr__(self) -> str:  # shows in test ids
        return self.name


def make_backend(name: str) -> Backend:
    if name == "numpy":
        import array_api_compat.numpy as xp

        return Backend(name, xp, lambda a, dtype=None: np.asarray(a, dtype=dtype),
                       lambda a: np.asarray(a))
    if name == "array_api_strict":
        import array_api_strict as xp

        def to_strict(a, dtype=None):
            a = np.asarray(a, dtype=dtype)
            return xp.asarray(a, dtype=getattr(xp, a.dtype.name) if a.dtype != bool else xp.bool)

        return Backend(name, xp, to_strict, lambda a: np.asarray(a))
    if name == "torch":
        import array_api_compat.torch as xp
        import torch

        return Backend(name, xp, lambda a, dtype=None: torch.asarray(np.asarray(a, dtype=dtype)),
                       lambda a: a.detach().cpu().numpy())
    if name == "torch_cuda":
        import array_api_compat.torch as xp
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--backends torch_cuda: torch sees no CUDA device on this machine")
        return Backend(name, xp,
                       lambda a, dtype=None: torch.asarray(np.asarray(a, dtype=dtype),
                                                           device="cuda"),
                       lambda a: a.detach().cpu().numpy(), library="torch")
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as xp

        return Backend(name, xp, lambda a, dtype=None: xp.asarray(np.asarray(a, dtype=dtype)),
                       lambda a: np.asarray(a))
    raise ValueError(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", _selected_backends(metafunc.config), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param)


@pytest.fixture(scope="session")
def pgpo(pytestconfig: pytest.Config):
    """The implementation under test (``pgpo_core`` unless --pgpo-impl / PGPO_IMPL says otherwise)."""
    name = pytestconfig.getoption("--pgpo-impl") or os.environ.get("PGPO_IMPL") or "pgpo_core"
    return importlib.import_module(name)
