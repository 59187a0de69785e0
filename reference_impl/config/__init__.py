"""The run's configuration, every option declared once with its help and validation:

- :mod:`.fields`: the building blocks (errors, ``option``, the ``Section`` base);
- :mod:`.sections`: one frozen dataclass per section (model, data, rollout, algo, ...);
- :mod:`.run`: the whole run's :class:`Config`, read from the command line and YAML.

What each ``algo.name`` sets is one record of :mod:`reference_impl.algorithms`::

    from reference_impl.config import load_config, preset
    cfg = load_config(["algo.name=dapo", "rollout.temperature=0.7"])
"""

from reference_impl.config.fields import ConfigError, ConfigTypeError, Leaf
from reference_impl.config.run import (CONFIG_DIR, SHORTCUTS, Config, build_parser, load_config,
                                       preset)
from reference_impl.config.sections import (ALGORITHMS, DERIVED, SECTIONS, AlgoConfig,
                                            AlgorithmName, CheckpointConfig, DataConfig,
                                            DistConfig, EvalConfig, LoggingConfig, LoraConfig,
                                            ModelConfig, OptimConfig, RewardConfig,
                                            RolloutConfig, TrainConfig, leaf_fields)

__all__ = [
    "ALGORITHMS", "AlgoConfig", "AlgorithmName", "CONFIG_DIR", "DERIVED", "Leaf", "SHORTCUTS",
    "build_parser", "leaf_fields",
    "CheckpointConfig", "Config", "ConfigError", "ConfigTypeError", "DataConfig", "DistConfig",
    "EvalConfig", "LoggingConfig", "LoraConfig", "ModelConfig", "OptimConfig", "RewardConfig",
    "RolloutConfig", "SECTIONS", "TrainConfig", "load_config", "preset",
]
