"""The algorithm registry (reference_impl/algorithms.py): every existing algorithm resolves
as before the registry, each name is one record, and VPPO (``--algo vppo``) resolves and
trains with pgpo_core.vppo_advantages."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


def _recorder():
    spec = importlib.util.spec_from_file_location(
        "record_algorithms_resolved", DATA / "record_algorithms_resolved.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_existing_algorithms_resolve_as_before_the_registry():
    """Config.flat(), reweights_tokens, uses_dynamic_sampling and the errors of the seven
    pre-registry algorithms in 17 situations each (command line, presets, overrides,
    from_dict, invalid values), against the values recorded from the code before it."""
    from reference_impl.config import ALGORITHMS

    expected = json.loads((DATA / "algorithms_resolved.json").read_text())
    actual = _recorder().record()
    assert set(actual) == set(expected)
    assert actual["base"] == expected["base"]
    for key in sorted(expected):
        want, got = expected[key], actual[key]
        if key == "load:unknown_name":
            # The list of choices is the registry's, which now holds more names.
            names = ", ".join(map(repr, ALGORITHMS))
            want = {"error": re.sub(r"must be one of .*; got", f"must be one of {names}; got",
                                    want["error"])}
        assert got == want, key
