"""Every pre-registry algorithm's resolved configuration, in many situations.

Run once on the code before the algorithm registry (reference_impl/algorithms.py)::

    python tests/trainer/data/record_algorithms_resolved.py > tests/trainer/data/algorithms_resolved.json

tests/trainer/test_algorithms.py runs :func:`record` again on today's code and compares.
Each entry: the ``Config.flat()`` keys that differ from ``Config()``'s (the ``"base"``
entry), ``reweights_tokens`` and ``uses_dynamic_sampling``; or the error's type and text.
"""
import json, sys
from reference_impl.config import Config, ConfigError, load_config, CONFIG_DIR

NAMES = ["pgpo", "dapo", "grpo", "pgpo_suppress_only", "pgpo_boost_only", "pgpo_no_mass",
         "pgpo_dev_variant"]
SCENARIOS = {
    "defaults": [],
    "clip_low": ["--algo.pgpo.clip_low", "0.15"],
    "weights_given": ["--algo.pgpo.tau", "0.7", "--algo.pgpo.beta", "1.0",
                      "--algo.pgpo.conserve_mass", "false", "--algo.pgpo.threshold", "quantile"],
    "loss_given": ["--algo.dynamic_sampling", "false", "--algo.pgpo.clip_high", "0.3",
                   "--algo.pgpo.aggregation", "token-mean", "--algo.pgpo.dual_clip", "3"],
    "blind_given": ["--algo.blind.mode", "blacken", "--algo.pgpo.estimator", "k3",
                    "--algo.pgpo.estimate_clip", "10", "rollout.temperature=0.7"],
    "paper_7b": ["--config", str(CONFIG_DIR / "paper_qwen2_5_vl_7b.yaml")],
    "tiny_cpu": ["--config", str(CONFIG_DIR / "tiny_cpu.yaml")],
    "bad_tau": ["--algo.pgpo.tau", "1.5"],
    "bad_clip_low": ["--algo.pgpo.clip_low", "1.5"],
    "bad_dual_clip": ["--algo.pgpo.dual_clip", "0.5"],
    "bad_rounds": ["--algo.max_sampling_rounds", "0"],
    "bad_mode": ["--algo.blind.mode", "blackn"],
}


def jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def outcome(make):
    try:
        cfg = make()
    except (ConfigError, ValueError, TypeError) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    flat = {k: jsonable(v) for k, v in cfg.flat().items()}
    return {"flat_changes": {k: v for k, v in flat.items() if BASE.get(k, object()) != v
                             or k not in BASE},
            "reweights_tokens": cfg.algo.reweights_tokens,
            "uses_dynamic_sampling": cfg.algo.uses_dynamic_sampling}


def record():
    global BASE
    BASE = {k: jsonable(v) for k, v in Config().flat().items()}
    out = {"base": BASE}
    for name in NAMES:
        for scen, args in SCENARIOS.items():
            out[f"load:{name}:{scen}"] = outcome(
                lambda: load_config(["--algo", name, *args], check_environment=False))
        # Config.override: from the default pgpo, from grpo with a given clip_low, back to
        # pgpo, a loss value changed; and from_dict.
        out[f"override:pgpo->{name}"] = outcome(lambda: Config().override(**{"algo.name": name}))
        out[f"override:grpo(clip_low=0.15)->{name}"] = outcome(
            lambda: load_config(["--algo", "grpo", "--algo.pgpo.clip_low", "0.15"],
                                check_environment=False).override(**{"algo.name": name}))
        out[f"override:{name}->pgpo"] = outcome(
            lambda: load_config(["--algo", name], check_environment=False).override(
                **{"algo.name": "pgpo"}))
        out[f"override:{name}(clip_low)"] = outcome(
            lambda: load_config(["--algo", name], check_environment=False).override(
                **{"algo.pgpo.clip_low": 0.1}))
        out[f"from_dict:{name}"] = outcome(lambda: Config.from_dict(
            {"algo": {"name": name, "pgpo": {"clip_low": 0.15, "tau": 0.9}}}))
    out["load:unknown_name"] = outcome(
        lambda: load_config(["--algo.name", "pgp"], check_environment=False))
    return out


if __name__ == "__main__":
    json.dump(record(), sys.stdout, indent=1, sort_keys=True)
