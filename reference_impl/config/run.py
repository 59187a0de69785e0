"""The run's whole configuration (:class:`Config`: the sections of :mod:`.sections` and
the rules across them) and how it is read: the command line and YAML files, parsed once
by `jsonargparse <https://jsonargparse.readthedocs.io>`_ into typed values, with its
errors reworded to name the dotted key.

Precedence: dataclass defaults < ``--config`` YAML files (in order) < command-line
overrides (in order). Every value is checked when the :class:`Config` is built, so
a bad value fails with a :class:`~reference_impl.config.fields.ConfigError` naming its
dotted key (``rollout.top_p``) before any model, data or process group is touched::

    cfg = load_config(["--config", "configs/paper_qwen2_5_vl_7b.yaml",
                       "--model.path", "/models/Qwen2.5-VL-7B-Instruct",
                       "rollout.temperature=0.7"])
"""

import dataclasses
import difflib
import functools
import importlib.util
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml
from jsonargparse import ArgumentParser

from pgpo_core import PGPOConfig
from reference_impl import algorithms
from reference_impl.config.fields import (ConfigError, ConfigTypeError, HelpFormatter, add_leaf, nested_groups, parse_given)
from reference_impl.config.sections import (DERIVED, SECTIONS, AlgoConfig, CheckpointConfig,
                                            DataConfig, DistConfig, EvalConfig, LoggingConfig,
                                            LoraConfig, ModelConfig, OptimConfig,
                                            RewardConfig, RolloutConfig, TrainConfig,
                                            group_defaults, implied_values, leaf_fields)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole run. Sections: model, lora, data, rollout, reward, algo, optim, train,
    eval, checkpoint, logging, dist. Cross-field rules are checked here."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    rollout: RolloutConfig = dataclasses.field(default_factory=RolloutConfig)
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)
    algo: AlgoConfig = dataclasses.field(default_factory=AlgoConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    dist: DistConfig = dataclasses.field(default_factory=DistConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigTypeError(f"{name}: expected a {cls.__name__}, "
                                      f"got {type(getattr(self, name)).__name__}")
        if self.algo.pgpo.temperature != self.rollout.temperature:  # see DERIVED
            object.__setattr__(self, "algo", dataclasses.replace(
                self.algo, pgpo=self.algo.pgpo.replace(temperature=self.rollout.temperature)))
        self._cross_checks()

    def _cross_checks(self) -> None:
        r, o = self.rollout, self.optim
        if r.prompts_per_step % o.mini_batch_size:
            raise ConfigError(
                f"optim.mini_batch_size: must divide rollout.prompts_per_step "
                f"({r.prompts_per_step}), got {o.mini_batch_size}")
        sequences = o.mini_batch_size * r.samples_per_prompt
        if sequences % o.micro_batch_size:
            raise ConfigError(
                f"optim.micro_batch_size: must divide optim.mini_batch_size * "
                f"rollout.samples_per_prompt ({sequences}), got {o.micro_batch_size}")
        if self.model.sft_warmup_steps and self.model.path is not None:
            raise ConfigError(
                "model.sft_warmup_steps: the supervised warm-up is for the built-in tiny model; "
                "set it to 0 with model.path (a pretrained checkpoint needs none)")
        if self.train.total_steps == 0 and not self.model.sft_warmup_steps:
            raise ConfigError("train.total_steps: 0 runs only the warm-up, but "
                              "model.sft_warmup_steps is 0")
        if self.data.opening_steps:
            if (self.data.source != "synthetic"
                    or self.data.synthetic_task not in ("bars", "region", "lengths", "length")):
                raise ConfigError(
                    "data.opening_steps: only the synthetic bars, region, lengths and length "
                    "tasks have an opening question (data.source='synthetic', "
                    "data.synthetic_task='bars', 'region', 'lengths' or 'length'), got "
                    f"data.source={self.data.source!r}, "
                    f"data.synthetic_task={self.data.synthetic_task!r}")
            if self.data.opening_steps > self.model.sft_warmup_steps:
                raise ConfigError(
                    f"data.opening_steps: the opening is part of the warm-up, so at most "
                    f"model.sft_warmup_steps ({self.model.sft_warmup_steps}), got "
                    f"{self.data.opening_steps}")
        if self.train.epochs is not None and self.data.source == "synthetic":
            raise ConfigError("train.epochs: the synthetic task has no epochs; "
                              "set train.total_steps instead")
        if (self.eval.num_prompts is not None and self.data.eval_source is None
                and self.eval.num_prompts > self.data.eval_size):
            raise ConfigError(f"eval.num_prompts: must be <= data.eval_size "
                              f"({self.data.eval_size}), got {self.eval.num_prompts}")
        if self.train.device == "cpu":
            if self.dist.backend == "nccl":
                raise ConfigError("dist.backend: nccl needs CUDA; use 'gloo' or 'auto' "
                                  "with train.device 'cpu'")
        if self.lora.enabled and importlib.util.find_spec("peft") is None:
            raise ConfigError("lora.enabled: LoRA needs the peft package (pip install peft)")

    # ------------------------------------------------------------------ helpers

    def pgpo_config(self) -> PGPOConfig:
        """The :class:`pgpo_core.PGPOConfig` of this run: ``algo.pgpo``, whose temperature
        is ``rollout.temperature``."""
        return self.algo.pgpo

    def check_environment(self) -> None:
        """Checks that depend on this machine: files exist, CUDA present when asked for.
        :func:`load_config` runs them unless told not to."""
        if self.model.path is not None and not Path(self.model.path).exists():
            raise ConfigError(f"model.path: no such file or directory: {self.model.path!r}")
        for key, path in (("data.source", self.data.source),
                          ("data.eval_source", self.data.eval_source)):
            if path is not None and path != "synthetic" and not Path(path).exists():
                raise ConfigError(f"{key}: no such file or directory: {path!r}")
        resume = self.checkpoint.resume
        if resume not in (None, "auto") and not Path(resume).exists():
            raise ConfigError(f"checkpoint.resume: no such checkpoint: {resume!r}")
        if self.train.device == "cuda" or self.dist.backend == "nccl":
            import torch
            if self.train.device == "cuda" and not torch.cuda.is_available():
                raise ConfigError("train.device: 'cuda' requested but CUDA is not available")
            if self.dist.backend == "nccl" and not torch.cuda.is_available():
                raise ConfigError("dist.backend: nccl needs CUDA, and torch sees no GPU here "
                                  "(the run would be on the CPU); use 'gloo' or 'auto'")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples as lists), the inverse of :meth:`from_dict`."""
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.flat().items():
            *path, leaf = key.split(".")
            node = out
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = list(value) if isinstance(value, tuple) else value
        return out

    def flat(self) -> dict[str, Any]:
        """``{"section.field": value}`` (``"algo.pgpo.tau"`` for nested configs) for every key."""
        out = {}
        for key in leaf_fields():
            value: Any = self
            for part in key.split("."):
                value = getattr(value, part)
            out[key] = value
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Build from a nested (or dotted-key) mapping; unknown keys are errors."""
        return cls().override(**data)

    def override(self, **dotted_or_sections: Any) -> "Config":
        """A copy with changes, e.g. ``cfg.override(**{"rollout.temperature": 0.7})``;
        values may be whole sections or nested configs, as objects or mappings."""
        # Values equal to what algo.name implies count as not given, so that they follow a
        # change of algo.name (or of clip_low under grpo), as they would from the command line.
        base = self.to_dict()
        for group in algorithms.GROUPS:
            values = base["algo"][group]
            implied = implied_values(self.algo.name, group, values)
            for key in [k for k, v in implied.items() if values[k] == v]:
                del values[key]
        changes = _parse(lambda p: p.parse_object(_plain(dotted_or_sections), defaults=False),
                         origin="overrides")
        return _build(_merge(base, changes), origin="overrides")


#: Short command-line names for the options people type most: ``--algo dapo``,
#: ``--model /path/to/Qwen2.5-VL-7B-Instruct``, ``--data /path/to/ViRL39K``.
SHORTCUTS = {"algo": "algo.name", "model": "model.path", "data": "data.source"}
_NONE = ("none", "null", "~", "")


@functools.cache
def build_parser(prog: str | None = None) -> ArgumentParser:
    """The jsonargparse parser of every key, one argument group per section."""
    shortcuts = "".join(f"\n  --{short} VALUE{' ' * (7 - len(short))}Shortcut for --{key}."
                        for short, key in SHORTCUTS.items())
    parser = ArgumentParser(
        prog=prog, exit_on_error=False, allow_abbrev=False, print_config=None,
        formatter_class=HelpFormatter,
        usage="%(prog)s [--config FILE.yaml ...] [--print-config] "
              "[--SECTION.FIELD VALUE ...] [SECTION.FIELD=VALUE ...]",
        description="PGPO reference trainer. With no arguments: the tiny CPU run on the "
                    "synthetic task.\nPrecedence: defaults < --config files < command-line "
                    "overrides (later wins).\nBooleans: true/false; 'none' (or null) unsets "
                    "an optional value; lists: a,b or [a, b].\nPaper recipes: "
                    f"reference_impl/configs/paper_qwen2_5_vl_{{3b,7b}}.yaml{shortcuts}")
    parser.add_argument("--config", metavar="FILE.yaml", action="append",
                        help="YAML file of {section: {field: value}}; repeatable.")
    parser.add_argument("--print-config", action="store_true",
                        help="Print the resolved configuration as YAML and exit.")
    for name, cls in SECTIONS.items():
        group = parser.add_argument_group(name, (cls.__doc__ or "").strip().splitlines()[0])
        for key, leaf in leaf_fields().items():
            if key.split(".", 1)[0] == name:
                add_leaf(group, key, leaf)
    return parser


def _parse(parse: Callable[[ArgumentParser], Any], *, origin: str) -> dict[str, Any]:
    """The given values of ``parse(parser)`` over every key (see
    :func:`~reference_impl.config.fields.parse_given`)."""
    return parse_given(lambda: parse(build_parser()), origin=origin, leaves=leaf_fields(),
                       unknown=_unknown_key)


def _unknown_key(key: str, origin: str) -> ConfigError:
    if key in DERIVED:
        return ConfigError(f"{key}: is set by {DERIVED[key]} (from {origin}); set that instead")
    known = list(leaf_fields())
    section = key.split(".", 1)[0]
    if "." in key and section not in SECTIONS:
        close = difflib.get_close_matches(section, list(SECTIONS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return ConfigError(f"{key}: unknown config section {section!r} (from {origin}); "
                           f"sections are {', '.join(SECTIONS)}{hint}")
    leaf = key.rsplit(".", 1)[-1]
    guesses = [k for k in known if k.endswith("." + leaf)]
    guesses += [g for g in difflib.get_close_matches(key, known, n=3, cutoff=0.6)
                if g not in guesses]
    if "." not in key and key not in SECTIONS:
        guesses += difflib.get_close_matches(key, list(SECTIONS), n=2)
    hint = f"; did you mean {', '.join(guesses[:3])}?" if guesses else ""
    return ConfigError(f"{key}: unknown config key (from {origin}){hint}")


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def _split_argv(argv: Sequence[str]) -> tuple[list[str], list[str], bool]:
    """``argv`` -> (``--config`` files, ``--SECTION.FIELD=VALUE`` arguments for the parser,
    ``--print-config``). Also accepted: ``SECTION.FIELD=VALUE``, ``--SECTION.FIELD VALUE``,
    a bare boolean ``--SECTION.FIELD`` (true), the :data:`SHORTCUTS`, ``none`` for null
    and ``a,b`` for a list."""
    files: list[str] = []
    args: list[str] = []
    print_config = False
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--print-config":
            print_config = True
            continue
        if token == "--config" or token.startswith("--config="):
            if "=" not in token and i == len(argv):
                raise ConfigError("--config: expected a YAML file path")
            files.append(token.split("=", 1)[1] if "=" in token else argv[i])
            i += "=" not in token
            continue
        if not token.startswith("-") and "=" in token:
            token = "--" + token
        if not token.startswith("--"):
            raise ConfigError(f"{token}: unexpected argument; use --SECTION.FIELD VALUE or "
                              "SECTION.FIELD=VALUE (see --help)")
        key, eq, value = token[2:].partition("=")
        key = SHORTCUTS.get(key, key)
        if key not in leaf_fields():
            raise _unknown_key(key, "command line")
        tp = leaf_fields()[key].type
        if not eq:
            nxt = argv[i] if i < len(argv) else None
            if tp is bool and (nxt is None or nxt.startswith("--") or "=" in nxt):
                value = "true"
            elif nxt is None:
                raise ConfigError(f"{key}: expected a value after --{key}")
            else:
                value, i = nxt, i + 1
        if _optional(tp) and value.strip().lower() in _NONE:
            value = "null"
        elif typing.get_origin(tp) is tuple and not value.lstrip().startswith("["):
            value = f"[{value}]"
        args.append(f"--{key}={value}")
    return files, args, print_config


def _plain(data: Any, prefix: str = "") -> Any:
    """``data`` for the parser: config objects as mappings of their fields, ``none`` as
    null for optional keys (as on the command line)."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)
                if f"{prefix}{f.name}" not in DERIVED}
    if not isinstance(data, Mapping):
        return data
    out = {}
    for k, v in data.items():
        leaf = leaf_fields().get(f"{prefix}{k}")
        if leaf is not None and _optional(leaf.type) and isinstance(v, str) \
                and v.strip().lower() in _NONE:
            v = None
        out[k] = _plain(v, f"{prefix}{k}.")
    return out


def _merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` over ``base``, mapping by mapping. A mapping given over a value that should
    have been one (``train: 5`` in a YAML file, then ``train.total_steps=1``) keeps that
    value, so that :func:`_build` refuses it instead of it being dropped unseen."""
    out = dict(base)
    for k, v in new.items():
        old = out.get(k)
        if isinstance(v, Mapping) and isinstance(old, Mapping):
            out[k] = _merge(old, v)
        elif not (isinstance(v, Mapping) and old is not None and not isinstance(old, Mapping)):
            out[k] = v
    return out


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"--config: cannot read {path!r}: {err.strerror}") from None
    except UnicodeDecodeError as err:  # e.g. saved as UTF-16 or Latin-1
        raise ConfigError(f"--config: {path!r} is not UTF-8 text (byte {err.start}: "
                          f"{err.reason}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:  # PyYAML's text spans lines: the problem and where, in one
        mark = getattr(err, "problem_mark", None)
        what = ": ".join(p for p in (getattr(err, "context", None), getattr(err, "problem", None))
                         if p) or " ".join(str(err).split())
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"--config: {path!r} is not valid YAML: {what}{where}") from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return _plain(data or {})


def _build(given: Mapping[str, Any], *, origin: str) -> Config:
    """The :class:`Config` of ``given`` (nested values from the parser) over the defaults,
    with what ``algo.name`` implies for the ``algo.pgpo`` keys not given."""
    def mapping(value: Any, key: str) -> dict[str, Any]:
        if value is not None and not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of fields, got "
                              f"{type(value).__name__} (from {origin})")
        return dict(value or {})

    values = {name: mapping(given.get(name), name) for name in SECTIONS}
    for name, cls in SECTIONS.items():
        for group in nested_groups(cls):
            values[name][group] = mapping(values[name].get(group), f"{name}.{group}")
    algorithm = algorithms.REGISTRY.get(values["algo"].get("name", AlgoConfig.name))
    for group in algorithms.GROUPS if algorithm is not None else ():
        given = values["algo"][group]
        for key, value in algorithm.defaults_for(group, given, group_defaults(group)).items():
            given.setdefault(key, value)
    for name, cls in SECTIONS.items():
        for group, group_cls in nested_groups(cls).items():
            try:
                values[name][group] = group_cls(**values[name][group])
            except (TypeError, ValueError) as err:  # the class's checks, renamed to the dotted key
                kind = ConfigTypeError if isinstance(err, TypeError) else ConfigError
                raise kind(f"{name}.{group}.{err}") from None
    return Config(**{name: cls(**values[name]) for name, cls in SECTIONS.items()})


def load_config(argv: Sequence[str] | None = None, *, prog: str | None = None,
                check_environment: bool = True) -> Config:
    """Parse ``argv`` (default ``sys.argv[1:]``) into a validated :class:`Config`.

    Accepts ``--config FILE.yaml`` (repeatable), ``--SECTION.FIELD VALUE``,
    ``--SECTION.FIELD=VALUE``, ``SECTION.FIELD=VALUE`` and, for booleans, a bare
    ``--SECTION.FIELD`` (true), and the shortcuts ``--algo``, ``--model``, ``--data``
    (:data:`SHORTCUTS`). ``--help`` prints the grouped help and ``--print-config``
    the resolved YAML; both then raise ``SystemExit(0)``. Any bad key or value raises
    :class:`ConfigError` naming it. With ``check_environment`` the machine-dependent
    checks of :meth:`Config.check_environment` run too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        build_parser(prog).print_help()
        raise SystemExit(0)
    files, args, print_config = _split_argv(argv)
    # Defaults < YAML files (in order) < command line (in order). The merge happens on
    # the given values and the Config is built once, so intermediate combinations that
    # are only invalid half-way (e.g. a YAML batch size fixed by a CLI override) do not fail.
    given: dict[str, Any] = {}
    for path in files:
        data = _read_yaml(path)
        given = _merge(given, _parse(lambda p, data=data: p.parse_object(data, defaults=False),
                                     origin=path))
    given = _merge(given, _parse(lambda p: p.parse_args(args, defaults=False),
                                 origin="command line"))
    model_path = (given.get("model") or {}).get("path") if isinstance(given.get("model"), dict) \
        else None
    if check_environment and isinstance(model_path, str) and not Path(model_path).exists():
        # The first thing to fix, before what the other settings say about a model.path.
        raise ConfigError(f"model.path: no such file or directory: {model_path!r}")
    config = _build(given, origin="configuration")
    if check_environment:
        config.check_environment()
    if print_config:
        sys.stdout.write(config.to_yaml())
        raise SystemExit(0)
    return config


def preset(name: str, *overrides: str, check_environment: bool = False) -> Config:
    """A shipped preset from ``reference_impl/configs`` (``"tiny_cpu"``, ``"paper_qwen2_5_vl_7b"``,
    ``"paper_qwen2_5_vl_3b"``) with optional ``SECTION.FIELD=VALUE`` overrides."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"name: no preset {name!r}; available: {', '.join(available)}")
    return load_config(["--config", str(path), *overrides], check_environment=check_environment)


__all__ = ["CONFIG_DIR", "Config", "SHORTCUTS", "build_parser", "load_config", "preset"]
