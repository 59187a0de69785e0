"""The algorithm registry (reference_impl/algorithms.py): every existing algorithm resolves
as before the registry, each name is one record, and VPPO (``--algo vppo``) resolves and
trains with pgpo_core.vppo_advantages."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
ADDED_SINCE_THE_RECORDING = {"data.chain_filler": 0, "data.opening_steps": 0}
"""Config keys that did not exist when ``algorithms_resolved.json`` was recorded."""


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
    # Options added after the recording resolve to their defaults and are not compared.
    for key, default in ADDED_SINCE_THE_RECORDING.items():
        assert actual["base"].pop(key) == default, key
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


# ------------------------------------------------------------------------- VPPO

def test_vppo_resolves_to_vppos_published_recipe():
    from pgpo_core import VPPOConfig
    from reference_impl.config import Config, load_config

    cfg = load_config(["--algo", "vppo"], check_environment=False)
    a, core, recipe = cfg.algo, cfg.pgpo_config(), VPPOConfig()
    assert a.algorithm.advantages == "vppo" and a.algorithm.vppo == recipe
    assert (recipe.top_p, recipe.scale_min) == (0.4, 0.9)
    assert (core.estimator, core.estimate_clip) == ("k3", 10.0)
    assert (core.clip_low, core.clip_high, core.dual_clip, core.aggregation) == \
        (0.2, 0.28, 3.0, "token-mean")
    assert (a.blind.mode, a.blind.blacken_probability) == ("blacken", 0.5)
    assert (core.tau, core.beta) == (0.0, 0.0)  # no PGPO weights
    assert a.uses_dynamic_sampling and not a.reweights_tokens
    assert a.algorithm.needs_blind_pass
    # Given values win over the record's defaults; switching algorithm restores them.
    given = load_config(["--algo", "vppo", "--algo.pgpo.dual_clip", "none",
                         "--algo.blind.mode", "mask"], check_environment=False)
    assert given.algo.pgpo.dual_clip is None and given.algo.blind.mode == "mask"
    assert cfg.override(**{"algo.name": "pgpo"}) == Config()
    assert Config().override(**{"algo.name": "vppo"}) == cfg


def test_compare_runs_vppo_now_that_the_trainer_accepts_it():
    from reference_impl.experiments import compare
    from reference_impl.config import ALGORITHMS

    assert "vppo" in compare.DEFAULT_ALGOS and "vppo" in ALGORITHMS


@pytest.mark.slow
def test_two_vppo_steps_train_with_vppo_advantages(tmp_path, monkeypatch):
    """``--algo vppo``: two RL steps on the tiny model, and the token advantages that
    reach the loss are pgpo_core.vppo_advantages' over the whole rollout batch, on the
    k3 dependency (clip 10) against the blackened blind pass, computed here again from
    the same random patches."""
    import math
    import os
    import sys

    import torch

    import pgpo_core
    from pgpo_torch import batch_visual_dependency
    from reference_impl.loop import trainer as trainer_mod
    from reference_impl.loop import rl_step as rl_step_mod
    from reference_impl.config import load_config
    from reference_impl.policy.distributed import DistEnv
    from reference_impl.train import main

    sys.path.insert(0, os.path.dirname(__file__))
    from _tiny_run import tiny_args
    from test_train_e2e import varied_rewards

    monkeypatch.setattr(rl_step_mod, "verifiable_rewards", varied_rewards)
    out = tmp_path / "run"
    summary = main(tiny_args(out, "--algo", "vppo", "train.total_steps=2",
                             "algo.dynamic_sampling=false"))
    assert summary["steps"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["updated"] == 1.0 and math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
        # VPPO's own diagnostics reach the log (kept share about top_p = 0.4); PGPO's
        # weight statistics, meaningless for VPPO, do not.
        assert 0.4 <= r["kept_frac"] < 0.6 and 0.4 <= r["kept_dependency_frac"] <= 1.0
        assert r["scale_min"] <= r["scale_mean"] <= r["scale_max"]
        assert "weight_max" not in r and "frac_above_tau" not in r

    # The advantage path itself, on a batch of 4 responses split into 2 micro-batches.
    cfg = load_config(tiny_args(tmp_path / "t", "--algo", "vppo", "train.total_steps=1",
                                "algo.dynamic_sampling=false", "rollout.max_response_length=8"))
    t = trainer_mod.Trainer(cfg, DistEnv())
    batch = t.collect().batch
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])[:batch.size]
    torch.manual_seed(123)
    scored = t.score(batch, adv)
    old, token_adv = scored.old_logprobs, scored.token_advantages
    assert scored.dependency is None and scored.weights is None
    torch.manual_seed(123)  # the same blackened patches, micro-batch by micro-batch
    deps, logps = [], []
    for start in range(0, batch.size, cfg.optim.micro_batch_size):
        sub = batch.select(list(range(start, min(start + cfg.optim.micro_batch_size,
                                                 batch.size))))
        d, lp = batch_visual_dependency(
            t.strategy.hf_model, sub.model_inputs(), sub.response_mask,
            response_length=sub.response_mask.shape[1], config=t.pgpo, blind=cfg.algo.blind,
            return_logprobs=True)
        deps.append(d.float())
        logps.append(lp.float())
    dep = torch.cat(deps)
    assert float(dep.max()) <= 10.0 and float(dep[batch.response_mask].max()) > 0.0
    expected = pgpo_core.vppo_advantages(adv, dep, batch.response_mask, top_p=0.4,
                                         scale_min=0.9)
    assert torch.allclose(token_adv, expected.advantages, atol=1e-6)
    assert torch.allclose(old, torch.cat(logps), atol=1e-6)
    diag = pgpo_core.vppo_diagnostics(dep, batch.response_mask, scale=expected.scale,
                                      token_mask=expected.token_mask)
    assert set(scored.metrics) == set(diag)
    for name, value in diag.items():
        assert scored.metrics[name] == pytest.approx(float(value), rel=1e-5, abs=1e-7), name
    # Token filtering acted: some response tokens get 0, and every response keeps
    # ceil(0.4 |o_i|) of them.
    kept = (token_adv != 0) & batch.response_mask
    lengths = batch.response_mask.sum(-1)
    assert torch.equal(expected.token_mask.sum(-1), torch.ceil(0.4 * lengths - 1e-6).long())
    assert int(kept.sum()) < int(lengths.sum())
    # One call over the batch, not per micro-batch: the trajectory factors average 1
    # over the whole batch.
    active = expected.scale != 1
    if bool(active.any()):
        assert float(expected.scale.mean()) == pytest.approx(1.0, abs=1e-5)


def test_the_gradient_probe_refuses_vppo_rather_than_measuring_dapo():
    from reference_impl.experiments.probe_gradients import _algo_settings

    assert _algo_settings([], "dapo")[1] is False and _algo_settings([], "pgpo")[1] is True
    with pytest.raises(ValueError, match="does not support 'vppo'"):
        _algo_settings([], "vppo")
