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


def _resolved(names, *args):
    from reference_impl.config import load_config

    out = {}
    for name in names:
        cfg = load_config(["--algo", name, *args], check_environment=False)
        out[name] = (cfg.flat(), cfg.algo.uses_dynamic_sampling, cfg.algo.reweights_tokens)
    return out


def test_every_registered_name_resolves_to_its_record():
    from reference_impl import algorithms
    from reference_impl.config import ALGORITHMS, AlgoConfig, build_parser

    assert ALGORITHMS == algorithms.names() == tuple(algorithms.REGISTRY)
    assert ALGORITHMS[0] == AlgoConfig.name == "pgpo"
    help_text = build_parser().format_help()
    for name, record in algorithms.REGISTRY.items():
        assert record.name == name and record.help
        cfg = _resolved([name])[name]
        flat, dynamic, reweights = cfg
        for key, value in record.fixed.items():
            assert flat[f"algo.pgpo.{key}"] == value, (name, key)
        for group, values in record.defaults.items():
            for key, value in values.items():
                if isinstance(value, algorithms.Follows):
                    value = flat[f"algo.{group}.{value.key}"]
                assert flat[f"algo.{group}.{key}"] == value, (name, group, key)
        assert dynamic == record.dynamic_sampling and reweights == record.reweights_tokens
        assert f"{name}:" in " ".join(help_text.split())
    with pytest.raises(ValueError, match=r"^algo\.name: must be one of 'pgpo', "):
        algorithms.get("ppo")
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register(algorithms.REGISTRY["pgpo"])


_ONE_RECORD = """
import dataclasses, json, sys
from pgpo_core.config import ABLATIONS
from reference_impl import algorithms as A
# One changed record (grpo samples dynamically) and one new record: nothing else.
A.REGISTRY["grpo"] = dataclasses.replace(A.REGISTRY["grpo"], dynamic_sampling=True)
A.register(A.Algorithm(name="pgpo_half", advantages="pgpo", fixed={"tau": 0.5},
                       defaults={"blind": {"mode": "mask"}}, help="PGPO at tau 0.5."))
from reference_impl.config import load_config, build_parser
out = {}
for name in A.names():
    cfg = load_config(["--algo", name], check_environment=False)
    out[name] = [{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.flat().items()},
                 cfg.algo.uses_dynamic_sampling, cfg.algo.reweights_tokens]
out["help"] = " ".join(build_parser().format_help().split())
json.dump(out, sys.stdout)
"""


def test_one_record_changes_one_algorithm_and_adds_one():
    """Registering a record adds an algorithm (choices, help, resolution); changing one
    record changes only that algorithm's resolved configuration."""
    import os
    import subprocess
    import sys

    from reference_impl import algorithms

    before = {name: [{k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()},
                     dynamic, reweights]
              for name, (flat, dynamic, reweights) in _resolved(algorithms.names()).items()}
    proc = subprocess.run([sys.executable, "-c", _ONE_RECORD], capture_output=True, text=True,
                          timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads(proc.stdout)
    assert set(after) == set(before) | {"pgpo_half", "help"}
    for name in before:
        if name == "grpo":
            assert after[name][1] is True and before[name][1] is False
            assert after[name][0] == before[name][0] and after[name][2] == before[name][2]
        else:
            assert after[name] == before[name], name
    flat = after["pgpo_half"][0]
    assert (flat["algo.pgpo.tau"], flat["algo.blind.mode"]) == (0.5, "mask")
    assert after["pgpo_half"][1:] == [True, True]
    assert "pgpo_half: PGPO at tau 0.5" in after["help"]
