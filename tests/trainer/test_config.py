"""reference_impl.config: defaults, YAML and command-line loading, validation, --help."""

import dataclasses
import importlib.util

import pytest
import yaml

from reference_impl.config import run as config_module
from pgpo_core import PGPOConfig
from pgpo_torch import BlindPassConfig
from reference_impl.config import (
    CONFIG_DIR, SECTIONS, AlgoConfig, Config, ConfigError, ConfigTypeError, RolloutConfig,
    leaf_fields, load_config, preset,
)


def write_yaml(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


# ------------------------------------------------------------------ defaults

def test_defaults_are_the_tiny_cpu_run():
    cfg = Config()
    assert cfg.model.path is None and cfg.data.source == "synthetic"
    assert cfg.algo.name == "pgpo" and cfg.train.total_steps == 100
    assert (cfg.rollout.prompts_per_step, cfg.rollout.samples_per_prompt) == (8, 4)
    assert load_config([]) == cfg
    # The shipped tiny preset mirrors the defaults field by field.
    assert preset("tiny_cpu") == cfg
    raw = yaml.safe_load((CONFIG_DIR / "tiny_cpu.yaml").read_text())
    assert {k: set(v) for k, v in raw.items()} == {k: set(v) for k, v in cfg.to_dict().items()}


def test_default_pgpo_config_is_the_dapo_recipe_with_paper_weights():
    core = Config().pgpo_config()
    assert (core.tau, core.beta, core.clip_low, core.clip_high) == (0.4, 2.0, 0.2, 0.28)
    assert core.aggregation == "token-mean" and core.conserve_mass
    assert Config().algo.uses_dynamic_sampling and Config().algo.reweights_tokens


def test_sections_are_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.rollout.temperature = 0.5


# ------------------------------------------------------------- YAML and CLI

def test_yaml_load(tmp_path):
    path = write_yaml(tmp_path, "run.yaml", {
        "rollout": {"temperature": 0.6, "samples_per_prompt": 8},
        "algo": {"name": "dapo"}, "lora": {"enabled": True, "r": 4}})
    cfg = load_config(["--config", path])
    assert cfg.rollout.temperature == 0.6 and cfg.rollout.samples_per_prompt == 8
    assert cfg.algo.name == "dapo" and cfg.lora.enabled and cfg.lora.r == 4
    assert cfg.optim == Config().optim  # untouched sections keep their defaults


def test_precedence_cli_over_yaml_over_defaults(tmp_path):
    first = write_yaml(tmp_path, "a.yaml", {"rollout": {"temperature": 0.5, "top_p": 0.9},
                                            "optim": {"lr": 3e-5}})
    second = write_yaml(tmp_path, "b.yaml", {"optim": {"lr": 2e-5}})
    cfg = load_config(["--config", first, "--config", second,
                       "--rollout.temperature", "0.7", "rollout.top_p=0.8",
                       "--rollout.top_p=0.95"])
    assert cfg.rollout.temperature == 0.7      # CLI over YAML
    assert cfg.rollout.top_p == 0.95           # later CLI over earlier CLI
    assert cfg.optim.lr == 2e-5                # later YAML over earlier YAML
    assert cfg.rollout.max_response_length == Config().rollout.max_response_length  # default


def test_values_that_are_only_valid_together_may_come_from_different_sources(tmp_path):
    # mini_batch 3 does not divide the default 8 prompts; the CLI fixes prompts to 9.
    path = write_yaml(tmp_path, "a.yaml", {"optim": {"mini_batch_size": 3, "micro_batch_size": 4}})
    cfg = load_config(["--config", path, "--rollout.prompts_per_step", "9"])
    assert (cfg.optim.mini_batch_size, cfg.rollout.prompts_per_step) == (3, 9)


@pytest.mark.parametrize("argv, key, expected", [
    (["--rollout.temperature", "0.7"], "rollout.temperature", 0.7),
    (["--rollout.temperature", "1"], "rollout.temperature", 1.0),
    (["--rollout.max_response_length", "128"], "rollout.max_response_length", 128),
    (["--lora.enabled"], "lora.enabled", True),
    (["--lora.enabled", "yes"], "lora.enabled", True),
    (["--logging.tensorboard", "off"], "logging.tensorboard", False),
    (["logging.jsonl=False"], "logging.jsonl", False),
    (["--optim.grad_clip", "none"], "optim.grad_clip", None),
    (["--checkpoint.keep_last", "null"], "checkpoint.keep_last", None),
    (["--algo.dynamic_sampling", "false"], "algo.dynamic_sampling", False),
    (["--algo.pgpo.aggregation", "seq-mean-token-sum"], "algo.pgpo.aggregation", "seq-mean-token-sum"),
    (["--algo.pgpo.chunk_size", "none"], "algo.pgpo.chunk_size", None),
    (["--algo.pgpo.conserve_mass", "false"], "algo.pgpo.conserve_mass", False),
    (["--algo.blind.mode", "mask"], "algo.blind.mode", "mask"),
    (["--algo.blind.blacken_probability", "1"], "algo.blind.blacken_probability", 1.0),
    (["--lora.target_modules", "q_proj,v_proj"], "lora.target_modules", ("q_proj", "v_proj")),
    (["--lora.target_modules", "[q_proj, v_proj]"], "lora.target_modules", ("q_proj", "v_proj")),
    (["--optim.betas", "0.8,0.95"], "optim.betas", (0.8, 0.95)),
    (["--model.dtype=bfloat16"], "model.dtype", "bfloat16"),
    (["--algo.pgpo.tau", "-0"], "algo.pgpo.tau", 0.0),
    (["algo.pgpo.tau=1"], "algo.pgpo.tau", 1.0),
])
def test_cli_values_are_coerced_to_the_annotated_type(argv, key, expected):
    value = load_config(argv)
    for part in key.split("."):
        value = getattr(value, part)
    assert value == expected and type(value) is type(expected)


def test_yaml_strings_and_ints_are_coerced(tmp_path):
    # PyYAML reads 1e-6 (no dot) as a string and 1 as an int; both become floats.
    path = write_yaml(tmp_path, "a.yaml", "optim:\n  lr: 1e-6\nrollout:\n  top_p: 1\n")
    cfg = load_config(["--config", path])
    assert cfg.optim.lr == 1e-6 and isinstance(cfg.optim.lr, float)
    assert cfg.rollout.top_p == 1.0 and isinstance(cfg.rollout.top_p, float)


def test_print_config_round_trips(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--rollout.temperature", "0.3", "--algo.name", "grpo", "--print-config"])
    assert exit_info.value.code == 0
    dumped = capsys.readouterr().out
    assert yaml.safe_load(dumped)["rollout"]["temperature"] == 0.3
    path = write_yaml(tmp_path, "dump.yaml", dumped)
    assert load_config(["--config", path]) == load_config(["--rollout.temperature", "0.3",
                                                           "--algo.name", "grpo"])


def test_override_and_from_dict():
    cfg = Config().override(**{"rollout.temperature": 0.5}, algo={"name": "dapo"})
    assert cfg.rollout.temperature == 0.5 and cfg.algo.name == "dapo"
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"^rollout\.top_p: must lie in \(0, 1\]"):
        cfg.override(**{"rollout.top_p": 0.0})


# --------------------------------------------------------------- validation

@pytest.mark.parametrize("argv, message", [
    (["--rollout.top_p", "1.5"], r"^rollout\.top_p: must lie in \(0, 1\], got 1\.5"),
    (["--rollout.top_p", "0"], r"^rollout\.top_p: must lie in \(0, 1\]"),
    (["--rollout.temperature", "0"], r"^rollout\.temperature: must lie in \(0, inf\)"),
    (["--rollout.temperature", "nan"], r"^rollout\.temperature: expected a float, got 'nan'"),
    (["--rollout.samples_per_prompt", "1"], r"^rollout\.samples_per_prompt: group advantages need G >= 2"),
    (["--rollout.max_response_length", "0"], r"^rollout\.max_response_length: must lie in \[1, inf\)"),
    (["--algo.pgpo.tau", "1.5"], r"^algo\.pgpo\.tau: must lie in \[0\.0, 1\.0\], got 1\.5"),
    (["--algo.pgpo.beta", "-1"], r"^algo\.pgpo\.beta: must be >= 0"),
    (["--algo.pgpo.clip_low", "1.5"], r"^algo\.pgpo\.clip_low: must lie in"),
    (["--algo.pgpo.dual_clip", "0.5"], r"^algo\.pgpo\.dual_clip: must be a number > 1"),
    (["--algo.pgpo.chunk_size", "0"], r"^algo\.pgpo\.chunk_size: must be a positive int"),
    (["--algo.pgpo.low_weight_floor", "2"], r"^algo\.pgpo\.low_weight_floor: must lie in"),
    (["--algo.name", "pgp"], r"^algo\.name: must be one of .*got 'pgp' \(did you mean 'pgpo'\?\)"),
    (["--algo.pgpo.estimator", "k4"], r"^algo\.pgpo\.estimator: must be one of 'exact', 'k1', 'k2', 'k3'"),
    (["--algo.pgpo.threshold", "median"], r"^algo\.pgpo\.threshold: must be one of 'fixed', 'quantile'"),
    (["--algo.blind.mode", "blur"], r"^algo\.blind\.mode: must be one of 'drop', 'mask', 'blacken'"),
    (["--algo.blind.blacken_probability", "1.5"], r"^algo\.blind\.blacken_probability: must be a number in \[0, 1\]"),
    (["--algo.pgpo.temperature", "0.5"], r"^algo\.pgpo\.temperature: is set by rollout\.temperature"),
    (["--algo.tau", "0.3"], r"^algo\.tau: unknown config key .*did you mean algo\.pgpo\.tau"),
    (["--model.dtype", "float16"], r"^model\.dtype: must be one of"),
    (["--optim.lr", "0"], r"^optim\.lr: must lie in \(0, inf\)"),
    (["--optim.betas", "0.9,1.0"], r"^optim\.betas: each beta must lie in \[0, 1\)"),
    (["--optim.betas", "0.9"], r"^optim\.betas: expected 2 comma-separated values"),
    (["--optim.mini_batch_size", "3"], r"^optim\.mini_batch_size: must divide rollout\.prompts_per_step \(8\), got 3"),
    (["--optim.micro_batch_size", "5"], r"^optim\.micro_batch_size: must divide .* \(16\), got 5"),
    (["--reward.accuracy_weight", "0", "--reward.format_weight", "0"], r"^reward\.accuracy_weight: .* must be > 0"),
    (["--train.epochs", "2"], r"^train\.total_steps: set exactly one of"),
    (["--train.total_steps", "none", "--train.epochs", "2"], r"^train\.epochs: the synthetic task has no epochs"),
    (["--model.path", "/m", "--data.source", "/d.jsonl"], r"^model\.sft_warmup_steps: .*tiny model"),
    (["--rollout.tis_cap", "0"], r"^rollout\.tis_cap: must lie in \(0, inf\)"),
    (["--rollout.vllm_kv_cache_memory_mb", "0"], r"^rollout\.vllm_kv_cache_memory_mb: must lie in \[1, inf\)"),
    (["--train.device", "cpu", "--dist.backend", "nccl"], r"^dist\.backend: nccl needs CUDA"),
    (["--eval.num_prompts", "257"], r"^eval\.num_prompts: must be <= data\.eval_size \(256\)"),
    (["--checkpoint.keep_last", "0"], r"^checkpoint\.keep_last: must lie in \[1, inf\)"),
    (["--data.format", "jsonl"], r"^data\.format: unknown config key"),  # removed: never read
    (["--data.opening_steps", "100"],
     r"^data\.opening_steps: only the synthetic bars, region, lengths and length tasks .*"
     r"got data\.source='synthetic', data\.synthetic_task='chain'$"),
    (["--data.synthetic_task", "bars", "--data.opening_steps", "801"],
     r"^data\.opening_steps: .* at most model\.sft_warmup_steps \(800\), got 801"),
    (["--data.opening_steps", "-1"], r"^data\.opening_steps: must lie in \[0, inf\)"),
])
def test_invalid_values_are_rejected_naming_the_field(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv, check_environment=False)


@pytest.mark.parametrize("argv, message", [
    (["--rollout.top_p", "high"], r"^rollout\.top_p: expected a float, got 'high'"),
    (["--rollout.prompts_per_step", "2.5"], r"^rollout\.prompts_per_step: expected an int"),
    (["--lora.enabled", "maybe"], r"^lora\.enabled: expected a bool"),
])
def test_values_of_the_wrong_type_are_rejected(argv, message):
    with pytest.raises(ConfigTypeError, match=message) as info:
        load_config(argv)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_direct_construction_is_type_checked():
    with pytest.raises(ConfigTypeError, match=r"^rollout\.temperature: expected a float, got 'hot'"):
        RolloutConfig(temperature="hot")
    with pytest.raises(ConfigTypeError, match=r"^rollout\.prompts_per_step: expected an int, got 'True'"):
        RolloutConfig(prompts_per_step=True)
    assert RolloutConfig(temperature=1).temperature == 1.0  # ints are fine for floats
    with pytest.raises(ConfigTypeError, match=r"^rollout: expected a RolloutConfig"):
        Config(rollout={"temperature": 1.0})
    with pytest.raises(ConfigTypeError, match=r"^algo\.pgpo: expected a PGPOConfig, got dict"):
        AlgoConfig(pgpo={"tau": 0.3})
    with pytest.raises(ConfigError, match=r"^rollout\.top_p: must be finite"):
        RolloutConfig(top_p=float("nan"))
    with pytest.raises(ConfigTypeError, match=r"^algo\.pgpo\.tau: expected a float, got '\[1\]'"):
        Config.from_dict({"algo": {"pgpo": {"tau": [1]}}})
    with pytest.raises(ConfigTypeError, match=r"^algo\.pgpo\.conserve_mass: expected a bool"):
        Config.from_dict({"algo": {"pgpo": {"conserve_mass": 1}}})


def test_lora_requires_peft(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(config_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^lora\.enabled: LoRA needs the peft package"):
        load_config(["--lora.enabled", "true"])
    assert not load_config([]).lora.enabled  # no LoRA, no peft needed


def test_environment_checks_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.path: no such file or directory"):
        load_config(["--model.path", str(tmp_path / "absent"), "--model.sft_warmup_steps", "0"])
    with pytest.raises(ConfigError, match=r"^checkpoint\.resume: no such checkpoint"):
        load_config(["--checkpoint.resume", str(tmp_path / "absent")])
    assert load_config(["--checkpoint.resume", "auto"]).checkpoint.resume == "auto"


# -------------------------------------------------------------- unknown keys

def test_unknown_cli_key_is_rejected_with_suggestions():
    with pytest.raises(ConfigError, match=r"^rollout\.temprature: unknown config key .*"
                                          r"did you mean rollout\.temperature"):
        load_config(["--rollout.temprature", "0.7"])
    with pytest.raises(ConfigError, match=r"^temperature: unknown config key .*rollout\.temperature, "
                                          r"eval\.temperature"):
        load_config(["temperature=0.7"])
    with pytest.raises(ConfigError, match=r"^rollot\.top_p: unknown config section 'rollot'.*"
                                          r"did you mean rollout"):
        load_config(["--rollot.top_p", "0.9"])
    with pytest.raises(ConfigError, match=r"^stray: unexpected argument"):
        load_config(["stray"])


def test_unknown_yaml_key_is_rejected_with_suggestions(tmp_path):
    path = write_yaml(tmp_path, "a.yaml", {"rollout": {"top-p": 0.9}})
    with pytest.raises(ConfigError, match=r"^rollout\.top-p: unknown config key \(from .*a\.yaml\); "
                                          r"did you mean rollout\.top_p"):
        load_config(["--config", path])
    path = write_yaml(tmp_path, "b.yaml", {"optimizer": {"lr": 1e-5}})
    with pytest.raises(ConfigError, match=r"^optimizer\.lr: unknown config section 'optimizer' "
                                          r"\(from .*b\.yaml\).*did you mean optim"):
        load_config(["--config", path])
    path = write_yaml(tmp_path, "c.yaml", {"rollout": 3})
    with pytest.raises(ConfigError, match=r"^rollout: expected a mapping of fields, got int"):
        load_config(["--config", path])
    # ... also when the command line sets a key of that section (it was dropped unseen).
    with pytest.raises(ConfigError, match=r"^rollout: expected a mapping of fields, got int"):
        load_config(["--config", path, "rollout.top_p=0.9"])
    path = write_yaml(tmp_path, "d.yaml", {"algo": {"pgpo": [0.3]}})
    with pytest.raises(ConfigError, match=r"^algo\.pgpo: expected a mapping of fields, got list"):
        load_config(["--config", path])
    path = write_yaml(tmp_path, "e.yaml", "optim:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=r"^optim\.lr: must be finite"):
        load_config(["--config", path])
    path = write_yaml(tmp_path, "f.yaml", "- rollout\n")
    with pytest.raises(ConfigError, match=r"f\.yaml: expected a mapping of sections, got list"):
        load_config(["--config", path])


# --------------------------------------------------------------------- help

def test_help_is_grouped_and_describes_every_field(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_config(["--help"], prog="train.py")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: train.py")
    flat = " ".join(text.split())  # undo argparse's line wrapping
    for name, cls in SECTIONS.items():
        assert f"\n{name}:\n" in text, name
        assert " ".join(cls.__doc__.split("\n")[0].split()) in flat
    leaves = leaf_fields()
    for key, leaf in leaves.items():
        assert f"--{key} " in flat, key
        assert " ".join(leaf.help.split()) in flat, key
    # Every field of the nested configs is a key, except the one another section sets.
    assert {k for k in leaves if k.startswith("algo.pgpo.")} == \
        {f"algo.pgpo.{f.name}" for f in dataclasses.fields(PGPOConfig)} - {"algo.pgpo.temperature"}
    assert {k for k in leaves if k.startswith("algo.blind.")} == \
        {f"algo.blind.{f.name}" for f in dataclasses.fields(BlindPassConfig)}
    # jsonargparse's help format: the field's help, the paper's value, then type and default.
    assert ("--rollout.top_p TOP_P Nucleus sampling threshold in (0, 1]. [paper: 0.99] "
            "(type: float, default: 1.0)") in flat
    assert "--algo.blind.mode {drop,mask,blacken}" in flat
    assert "--algo.pgpo.estimator {exact,k1,k2,k3}" in flat and "[paper: k3]" in flat
    assert "(type: Optional[float], default: 1.0)" in flat  # optim.grad_clip
    assert "--lora.enabled [{true,false}]" in flat


# ------------------------------------------------------------ paper presets

PAPER = ["paper_qwen2_5_vl_7b", "paper_qwen2_5_vl_3b"]


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_hold_the_papers_recipe(name):
    cfg = preset(name)
    r, o, a = cfg.rollout, cfg.optim, cfg.algo
    assert (r.prompts_per_step, r.samples_per_prompt, o.mini_batch_size) == (384, 5, 128)
    assert (r.temperature, r.top_p, r.max_response_length) == (1.0, 0.99, 2048)
    assert (o.lr, o.lr_schedule) == (1e-6, "constant") and not cfg.model.freeze_vision_tower
    assert (cfg.reward.accuracy_weight, cfg.reward.format_weight) == (0.9, 0.1)
    assert (cfg.eval.k, cfg.eval.temperature, cfg.train.epochs) == (8, 1.0, 2.0)
    assert a.name == "pgpo" and a.pgpo.estimator == "k3" and a.uses_dynamic_sampling
    core = cfg.pgpo_config()
    assert (core.tau, core.beta, core.clip_low, core.clip_high) == (0.4, 2.0, 0.2, 0.28)
    assert core.aggregation == "token-mean" and core.conserve_mass
    assert not cfg.lora.enabled and cfg.model.sft_warmup_steps == 0
    assert f"Qwen2.5-VL-{name[-2:].upper()}" in cfg.model.path


@pytest.mark.parametrize("name", PAPER)
def test_paper_presets_agree_with_the_paper_values_in_the_field_metadata(name):
    cfg = preset(name)
    noted = {k: leaf.paper for k, leaf in leaf_fields().items()
             if leaf.paper is not dataclasses.MISSING}
    assert len(noted) >= 10 and "algo.pgpo.estimator" in noted
    flat = cfg.flat()
    for key, paper in noted.items():
        assert flat[key] == paper, key


def test_paper_preset_checks_the_machine_when_asked(tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.path: no such file or directory"):
        preset("paper_qwen2_5_vl_7b", check_environment=True)
    (tmp_path / "model").mkdir()
    (tmp_path / "data.parquet").write_bytes(b"")
    cfg = preset("paper_qwen2_5_vl_7b", f"model.path={tmp_path / 'model'}",
                 f"data.source={tmp_path / 'data.parquet'}", check_environment=True)
    assert cfg.model.path == str(tmp_path / "model")
    with pytest.raises(ConfigError, match=r"^name: no preset 'paper_7b'; available: "):
        preset("paper_7b")


# ------------------------------------------------------- algorithm switches

def test_grpo_resolves_to_symmetric_clip_sequence_mean_and_no_dynamic_sampling():
    cfg = load_config(["--algo", "grpo", "--algo.pgpo.clip_low", "0.15"])
    core, algo = cfg.pgpo_config(), cfg.algo
    assert (core.clip_low, core.clip_high, core.aggregation) == (0.15, 0.15, "seq-mean-token-mean")
    assert (core.tau, core.beta) == (0.0, 0.0) and not algo.uses_dynamic_sampling
    assert not algo.reweights_tokens
    assert Config.from_dict({"algo": {"name": "grpo", "pgpo": {"clip_low": 0.15}}}) == cfg
    assert Config().override(**{"algo.name": "grpo", "algo.pgpo.clip_low": 0.15}) == cfg
    # The resolved values are what the config holds and prints.
    assert cfg.to_dict()["algo"]["pgpo"]["clip_high"] == 0.15
    # clip_high follows clip_low under grpo unless given; given values win.
    assert cfg.override(**{"algo.pgpo.clip_low": 0.1}).pgpo_config().clip_high == 0.1
    explicit = load_config(["--algo", "grpo", "--algo.pgpo.clip_high", "0.3",
                            "--algo.pgpo.aggregation", "token-mean",
                            "--algo.dynamic_sampling", "true"])
    core = explicit.pgpo_config()
    assert (core.clip_high, core.aggregation) == (0.3, "token-mean")
    assert explicit.algo.uses_dynamic_sampling
    # Switching back to pgpo restores pgpo's defaults for the values grpo implied.
    assert cfg.override(**{"algo.name": "pgpo", "algo.pgpo.clip_low": 0.2}).pgpo_config() == \
        Config().pgpo_config()


def test_the_nested_pgpo_config_is_pgpo_cores_at_the_rollout_temperature():
    cfg = load_config(["--rollout.temperature", "0.7", "--algo.pgpo.tau", "0.3",
                       "--algo.pgpo.estimator", "k3"])
    assert isinstance(cfg.algo.pgpo, PGPOConfig)
    assert cfg.pgpo_config() is cfg.algo.pgpo
    assert cfg.algo.pgpo == PGPOConfig(tau=0.3, estimator="k3", temperature=0.7)
    assert "temperature" not in cfg.to_dict()["algo"]["pgpo"]
    assert cfg.override(**{"rollout.temperature": 0.9}).algo.pgpo.temperature == 0.9
    # A section or nested config object may be passed whole.
    blind = BlindPassConfig(mode="blacken", blacken_probability=0.6)
    assert Config().override(**{"algo.blind": blind}).algo.blind == blind
    assert Config().override(algo={"blind": {"mode": "mask"}}).algo.blind.mode == "mask"


@pytest.mark.parametrize("name, expected", [
    ("pgpo", dict(tau=0.4, beta=2.0, conserve_mass=True, threshold="fixed")),
    ("dapo", dict(tau=0.0, beta=0.0, conserve_mass=True, clip_high=0.28)),
    ("pgpo_suppress_only", dict(tau=1.0, beta=2.0, conserve_mass=True)),
    ("pgpo_boost_only", dict(tau=0.0, beta=2.0, conserve_mass=True)),
    ("pgpo_no_mass", dict(tau=0.4, beta=2.0, conserve_mass=False)),
    ("pgpo_dev_variant", dict(tau=0.4, threshold="quantile", low_weight_floor=0.1,
                              conserve_mass=False)),
])
def test_algorithm_names_map_to_pgpo_core_settings(name, expected):
    core = Config().override(**{"algo.name": name, "rollout.temperature": 0.8}).pgpo_config()
    assert core.temperature == 0.8
    for field, value in expected.items():
        assert getattr(core, field) == value, field


def test_shortcuts_set_their_dotted_fields():
    from reference_impl.config import load_config

    cfg = load_config(["--algo", "dapo", "--data=synthetic"], check_environment=False)
    assert cfg.algo.name == "dapo"
    assert cfg.data.source == "synthetic"
    with pytest.raises(ValueError, match="algo.name"):
        load_config(["--algo", "ppo"], check_environment=False)


def test_help_lists_the_shortcuts(capsys):
    from reference_impl.config import load_config

    with pytest.raises(SystemExit):
        load_config(["--help"], check_environment=False)
    out = capsys.readouterr().out
    assert "--algo VALUE" in out and "Shortcut for --algo.name." in out

