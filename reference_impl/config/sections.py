"""Typed, validated configuration of the reference trainer.

The defaults are the laptop run: a tiny Qwen2.5-VL built from a config, the synthetic
task, small batches, float32 on CPU. The paper's recipe (Ye et al. 2026, Sec. 5 and
App. C; EasyR1 on Qwen2.5-VL-3B/7B) ships as ``reference_impl/configs/paper_*.yaml``
and each field whose paper value differs records it in its metadata (shown by
``--help``).

This module declares the sections (frozen dataclasses: defaults, help, validation) and
the algorithm and paper presets; parsing, type checking and ``--help`` are
`jsonargparse <https://jsonargparse.readthedocs.io>`_'s, with the glue at the end.

Precedence: dataclass defaults < ``--config`` YAML files (in order) < command-line
overrides (in order). Every value is checked when the :class:`Config` is built, so
a bad value fails with a :class:`ConfigError` naming its dotted key (``rollout.top_p``)
before any model, data or process group is touched::

    cfg = load_config(["--config", "configs/paper_qwen2_5_vl_7b.yaml",
                       "--model.path", "/models/Qwen2.5-VL-7B-Instruct",
                       "rollout.temperature=0.7"])
"""

import argparse
import dataclasses
import difflib
import functools
import importlib.util
import math
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Optional, Sequence

import yaml
from jsonargparse import ArgumentParser, DefaultHelpFormatter

from pgpo_core import AGGREGATIONS, PGPOConfig
from pgpo_core.config import DEPENDENCY_ESTIMATORS, THRESHOLDS
from pgpo_torch.blind_pass import BLIND_MODES, BlindPassConfig
from reference_impl import algorithms

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

#: ``algo.name``'s choices: the names of :data:`reference_impl.algorithms.REGISTRY`.
ALGORITHMS = algorithms.names()

AlgorithmName = Literal[ALGORITHMS]
DType = Literal["auto", "float32", "bfloat16"]
Device = Literal["auto", "cpu", "cuda"]


class ConfigError(ValueError):
    """An invalid configuration value; the message starts with the dotted key."""


class ConfigTypeError(ConfigError, TypeError):
    """A configuration value of the wrong type; the message starts with the dotted key."""


def _field(default: Any, help: str, *, paper: Any = dataclasses.MISSING,
           factory: bool = False) -> Any:
    """A dataclass field with a one-line description and, where it differs, the paper's value."""
    meta = {"help": help}
    if paper is not dataclasses.MISSING:
        meta["paper"] = paper
    if factory:
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---------------------------------------------------------------------- sections

class _Section:
    """Base of every config section: values type-checked (and normalised: 1 -> 1.0 for a
    float, a list -> tuple) by the parser, then the section's own ``_validate``."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        groups = _groups(type(self))
        for name, cls in groups.items():  # a nested config validates itself
            if not isinstance(getattr(self, name), cls):
                raise ConfigTypeError(f"{self._section}.{name}: expected a {cls.__name__}, "
                                      f"got {type(getattr(self, name)).__name__}")
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                 if f.name not in groups}
        checked = _parse(lambda p: p.parse_object({self._section: plain}, defaults=False),
                         origin=type(self).__name__)
        for name, value in checked.get(self._section, {}).items():
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        pass

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(f"{self._section}.{name}: {message}")

    def _range(self, name: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False) -> None:
        value = getattr(self, name)
        if value is None:
            return
        bad = ((low is not None and (value < low or (low_open and value == low)))
               or (high is not None and (value > high or (high_open and value == high))))
        if bad:
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
            self._fail(name, f"must lie in {interval}, got {value}")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Section):
    """Policy model: the built-in tiny Qwen2.5-VL, or a local checkpoint."""

    _section: ClassVar[str] = "model"

    path: Optional[str] = _field(
        None, "Local Qwen2.5-VL checkpoint directory (weights and processor); none builds "
              "the tiny model from a config.")
    dtype: DType = _field(
        "auto", "Parameter/compute dtype; auto = bfloat16 on CUDA, float32 on CPU.")
    gradient_checkpointing: bool = _field(
        False, "Recompute activations in the backward pass to save memory.")
    freeze_vision_tower: bool = _field(
        False, "Keep the vision encoder fixed (the paper trains it).")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = _field(
        "auto", "Attention kernel; auto = sdpa (flash_attention_2 when installed on CUDA).")
    sft_warmup_steps: int = _field(
        800, "Supervised warm-up steps on the synthetic task before RL (tiny model only), "
            "so that rewards are not all zero.", paper=0)
    sft_warmup_lr: float = _field(3e-3, "Learning rate of the supervised warm-up.")
    sft_warmup_vision_lr: Optional[float] = _field(
        3e-4, "Learning rate of the vision tower during the supervised warm-up (none: "
              "sft_warmup_lr). Lower than the language model's: at 3e-3 Adam inflates the "
              "tiny vision tower's output ~15x in 10 steps into one shared direction, and "
              "perception then emerges late or never (docs/evidence.md).")

    def _validate(self) -> None:
        if self.path is not None and not self.path.strip():
            self._fail("path", "must be a non-empty path or none")
        self._range("sft_warmup_steps", 0)
        self._range("sft_warmup_lr", 0, low_open=True)
        self._range("sft_warmup_vision_lr", 0, low_open=True)


@dataclasses.dataclass(frozen=True)
class LoraConfig(_Section):
    """Optional LoRA adapters (peft) for small GPUs; off in the paper."""

    _section: ClassVar[str] = "lora"

    enabled: bool = _field(False, "Train LoRA adapters instead of all weights (needs peft).")
    r: int = _field(16, "LoRA rank.")
    alpha: float = _field(32.0, "LoRA scaling alpha (the update is scaled by alpha / r).")
    dropout: float = _field(0.05, "Dropout on the LoRA input.")
    target_modules: tuple[str, ...] = _field(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        "Names of the linear modules that get adapters (comma-separated on the command line).")

    def _validate(self) -> None:
        self._range("r", 1)
        self._range("alpha", 0, low_open=True)
        self._range("dropout", 0, 1, high_open=True)
        if not self.target_modules or any(not m.strip() for m in self.target_modules):
            self._fail("target_modules", f"must name at least one module, got {self.target_modules!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig(_Section):
    """Training and held-out data: the synthetic task or local JSONL/Parquet files."""

    _section: ClassVar[str] = "data"

    source: str = _field(
        "synthetic", "'synthetic' (generated on the fly) or a local JSONL/Parquet file or "
                     "dataset directory (Hugging Face layout).")
    prompt_column: str = _field("problem", "Column holding the question text.")
    answer_column: str = _field("answer", "Column holding the ground-truth answer.")
    image_column: str = _field(
        "images", "Column holding the image(s): paths (relative to the file) or bytes.")
    eval_source: Optional[str] = _field(
        None, "Separate held-out file; none holds out eval_size prompts of source "
              "(synthetic: a disjoint seed).")
    eval_size: int = _field(256, "Number of held-out prompts.")
    shuffle: bool = _field(True, "Shuffle the training prompts every epoch (seeded).")
    synthetic_task: Literal["chain", "spatial", "bars", "simple"] = _field(
        "chain", "Synthetic task: 'chain' (count squares of 2-3 colours, then add: perception "
                 "steps inside a reasoning chain, reference_impl/data/chains.py), 'spatial' "
                 "(the row and column of a coloured square, then its cell number), 'bars' "
                 "(read two bar heights, then subtract; both reference_impl/data/"
                 "visual_tasks.py) or 'simple' (one-step count/colour/position/chart "
                 "questions).")
    chain_facts: int = _field(2, "Chain task: colours to count, i.e. perception steps (2-4).")
    chain_max_count: int = _field(4, "Chain task: largest count of one colour.")
    chain_distractors: int = _field(1, "Chain task: up to this many grey squares no question asks about.")
    chain_warmup_noise: float = _field(
        0.3, "Chain, spatial and bars tasks: probability that a fact stated in a warm-up "
             "reference chain is wrong (the warm-up teaches the format, not the answers).")
    reference_column: Optional[str] = _field(
        None, "File sources: column with a reference response or reasoning for the "
              "supervised warm-up (taught as <think>reasoning</think> \\boxed{answer}).")
    image_size: int = _field(112, "Side in pixels of the synthetic images.")
    min_pixels: int = _field(
        3136, "Smallest image area the processor resizes to (pixels).")
    max_pixels: int = _field(
        50176, "Largest image area the processor resizes to (pixels).")

    def _validate(self) -> None:
        for name in ("source", "prompt_column", "answer_column", "image_column"):
            if not getattr(self, name).strip():
                self._fail(name, "must not be empty")
        if self.eval_source is not None and not self.eval_source.strip():
            self._fail("eval_source", "must be a non-empty path or none")
        self._range("eval_size", 1)
        self._range("chain_facts", 2, 4)
        self._range("chain_max_count", 2, 9)
        self._range("chain_distractors", 0)
        self._range("chain_warmup_noise", 0, 1, high_open=True)
        if self.reference_column is not None and not self.reference_column.strip():
            self._fail("reference_column", "must be a non-empty column name or none")
        self._range("image_size", 28)
        self._range("min_pixels", 784)
        if self.max_pixels < self.min_pixels:
            self._fail("max_pixels", f"must be >= data.min_pixels ({self.min_pixels}), "
                                     f"got {self.max_pixels}")


@dataclasses.dataclass(frozen=True)
class RolloutConfig(_Section):
    """Sampling of G responses per prompt with the current (old) policy."""

    _section: ClassVar[str] = "rollout"

    prompts_per_step: int = _field(
        8, "Prompts per RL step (the rollout batch).", paper=384)
    samples_per_prompt: int = _field(
        4, "Responses sampled per prompt (the group size G, >= 2).", paper=5)
    max_prompt_length: int = _field(
        256, "Longest prompt in tokens, image tokens included; longer prompts are skipped "
             "and counted.")
    max_response_length: int = _field(
        72, "Most tokens generated per response.", paper=2048)
    temperature: float = _field(1.0, "Sampling temperature (> 0).")
    top_p: float = _field(1.0, "Nucleus sampling threshold in (0, 1].", paper=0.99)
    backend: Literal["auto", "hf", "vllm"] = _field(
        "auto", "Generation engine (reference_impl/rollout/engines): hf = Hugging Face generate on the "
                "trained module; vllm = an in-process vLLM engine colocated with training, "
                "weights synced after each optimiser step (one process only); auto = vllm "
                "when importable and one process on CUDA, else hf.")
    vllm_gpu_memory_utilization: float = _field(
        0.5, "Share of GPU memory vLLM may reserve for its weights and KV cache (vllm backend "
             "on CUDA).")
    vllm_kv_cache_memory_mb: Optional[int] = _field(
        None, "vLLM's KV cache in MiB; must hold max_prompt_length + max_response_length "
              "tokens (checked before any work); none = 64 MiB on CPU, set by "
              "vllm_gpu_memory_utilization on CUDA.")
    vllm_sleep: bool = _field(
        False, "Put vLLM to sleep between rollouts (level 1: KV cache freed, weights moved to "
               "host memory) to leave the GPU to training; CUDA only.")
    vllm_sync_bucket_mb: int = _field(
        512, "Weight sync to vLLM hands over the weights this many MiB at a time (under FSDP2 "
             "each bucket is all-gathered just before it is copied; LoRA merged on the fly).")
    tis_cap: Optional[float] = _field(
        None, "Truncated importance sampling for the rollout/trainer mismatch: each token's "
              "advantage times min(pi_train / pi_rollout, C) with C = tis_cap (e.g. 2); "
              "needs an engine reporting log-probs (vllm); none = off.")

    def _validate(self) -> None:
        self._range("prompts_per_step", 1)
        if self.samples_per_prompt < 2:
            self._fail("samples_per_prompt", "group advantages need G >= 2, got "
                                             f"{self.samples_per_prompt}")
        self._range("max_prompt_length", 1)
        self._range("max_response_length", 1)
        self._range("temperature", 0, low_open=True)
        self._range("top_p", 0, 1, low_open=True)
        self._range("vllm_gpu_memory_utilization", 0, 1, low_open=True)
        if self.vllm_kv_cache_memory_mb is not None:
            self._range("vllm_kv_cache_memory_mb", 1)
        self._range("vllm_sync_bucket_mb", 1)
        if self.tis_cap is not None:
            self._range("tis_cap", 0, low_open=True)


@dataclasses.dataclass(frozen=True)
class RewardConfig(_Section):
    """Verifiable reward: accuracy of the \\boxed{} answer plus the <think> format."""

    _section: ClassVar[str] = "reward"

    accuracy_weight: float = _field(0.9, "Weight of the answer-correctness reward (0/1).")
    format_weight: float = _field(
        0.1, "Weight of the format reward (<think>...</think> then \\boxed{}).")

    def _validate(self) -> None:
        self._range("accuracy_weight", 0)
        self._range("format_weight", 0)
        if self.accuracy_weight + self.format_weight <= 0:
            self._fail("accuracy_weight", "accuracy_weight + format_weight must be > 0")


# Nested configs: declared (fields, types, defaults, validation) in pgpo_core / pgpo_torch.
# Here only what the command line needs on top: a one-line description of each field,
# the choices of its string fields, the paper's value where the laptop default differs.
_GROUP_HELP: dict[type, dict[str, str]] = {
    PGPOConfig: {
        "tau": "Threshold on the normalised dependency I_t (Eq. 6), in [0, 1].",
        "beta": "Boost slope above tau (Eq. 6), >= 0.",
        "eps": "Small constant in Eqs. 5-7.",
        "threshold": "fixed: tau itself (the paper); quantile: each response's tau-quantile "
                     "of I_t.",
        "low_weight_floor": "Lift token weights below this value to it, in [0, 1]; 0 = off.",
        "conserve_mass": "Eq. 7: each response's weights sum to its length.",
        "estimator": "Token visual dependency (Eq. 1): exact full-vocabulary KL, or the "
                     "single-sample k1/k2/k3 estimate at the sampled token.",
        "temperature": "Temperature of the two distributions; set by rollout.temperature.",
        "chunk_size": "Tokens per chunk of the exact full-vocabulary KL (bounds memory); "
                      "none = all.",
        "estimate_clip": "Upper bound on a k1/k2/k3 estimate; none = off.",
        "clip_low": "Lower clip range of the importance ratio (1 - clip_low).",
        "clip_high": "Upper clip range (1 + clip_high).",
        "dual_clip": "Dual-clip constant c > 1 bounding negative-advantage ratios; none = off.",
        "aggregation": "Loss reduction.",
    },
    BlindPassConfig: {
        "mode": "Blind pass without the image: drop the image tokens keeping the text's "
                "position ids (= the paper's mask, cheaper), mask attention to them, or "
                "blacken random patches (VPPO/PAPO).",
        "blacken_probability": "Probability of blacking out each patch (mode blacken only).",
        "include_markers": "Also hide the <|vision_start|>/<|vision_end|> marker tokens.",
    },
}
_GROUP_CHOICES = {(PGPOConfig, "estimator"): DEPENDENCY_ESTIMATORS,
                  (PGPOConfig, "threshold"): THRESHOLDS,
                  (PGPOConfig, "aggregation"): AGGREGATIONS,
                  (BlindPassConfig, "mode"): BLIND_MODES}
_GROUP_PAPER = {(PGPOConfig, "estimator"): "k3"}
#: Keys that another section sets: the dependency is measured at the sampling temperature.
DERIVED = {"algo.pgpo.temperature": "rollout.temperature"}


@dataclasses.dataclass(frozen=True)
class AlgoConfig(_Section):
    """Policy-gradient algorithm: PGPO (default), its ablations, or the DAPO/GRPO baselines."""

    _section: ClassVar[str] = "algo"

    name: AlgorithmName = _field(
        "pgpo", "The algorithm (reference_impl/algorithms.py). "
                + " | ".join(a.describe() for a in algorithms.REGISTRY.values())
                + ". What an algorithm fixes overrides algo.pgpo; its defaults apply to "
                  "keys not given.")
    pgpo: PGPOConfig = _field(
        PGPOConfig(), "PGPO's hyper-parameters (pgpo_core.PGPOConfig).", factory=True)
    blind: BlindPassConfig = _field(
        BlindPassConfig(), "The blind pass (pgpo_torch.BlindPassConfig).", factory=True)
    dynamic_sampling: Optional[bool] = _field(
        None, "Drop groups whose rewards are all equal and sample more prompts; none = the "
              "algorithm's default (off for "
              + (", ".join(n for n, a in algorithms.REGISTRY.items() if not a.dynamic_sampling)
                 or "none") + ", on for the others).")
    max_sampling_rounds: int = _field(
        3, "Most rollout rounds per step used to fill the batch under dynamic sampling.")

    def _validate(self) -> None:
        self._range("max_sampling_rounds", 1)
        fixed = self.algorithm.fixed
        if any(getattr(self.pgpo, k) != v for k, v in fixed.items()):
            object.__setattr__(self, "pgpo", self.pgpo.replace(**fixed))

    @property
    def algorithm(self) -> algorithms.Algorithm:
        """The registry's record of ``name``."""
        return algorithms.get(self.name)

    @property
    def reweights_tokens(self) -> bool:
        """True when the algorithm multiplies advantages by PGPO token weights (needs the blind pass)."""
        return self.algorithm.reweights_tokens

    @property
    def uses_dynamic_sampling(self) -> bool:
        """``dynamic_sampling`` resolved against the algorithm's default."""
        if self.dynamic_sampling is not None:
            return self.dynamic_sampling
        return self.algorithm.dynamic_sampling


def _group_defaults(group: str) -> dict[str, Any]:
    """The class defaults of ``algo.<group>`` (``pgpo``: PGPOConfig's, ``blind``: BlindPassConfig's)."""
    cls = _groups(AlgoConfig)[group]
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def _implied(name: str, group: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``algo.<group>`` field's value under algorithm ``name`` when not given (the
    class default, the algorithm's default, what it fixes); ``given`` resolves a
    :class:`~reference_impl.algorithms.Follows` default."""
    algorithm = algorithms.get(name)
    values = _group_defaults(group)
    values.update(algorithm.defaults_for(group, given, values))
    if group == "pgpo":
        values.update(algorithm.fixed)
    return {k: v for k, v in values.items() if f"algo.{group}.{k}" not in DERIVED}


@dataclasses.dataclass(frozen=True)
class OptimConfig(_Section):
    """AdamW, learning-rate schedule and PPO-style mini-batch updates."""

    _section: ClassVar[str] = "optim"

    lr: float = _field(1e-4, "AdamW learning rate.", paper=1e-6)
    weight_decay: float = _field(0.01, "AdamW decoupled weight decay.")
    betas: tuple[float, float] = _field((0.9, 0.999), "AdamW (beta1, beta2).")
    adam_eps: float = _field(1e-8, "AdamW epsilon.")
    lr_schedule: Literal["constant", "cosine", "linear"] = _field(
        "constant", "Learning-rate schedule after warm-up (the paper: constant).")
    lr_warmup_steps: int = _field(
        0, "Linear learning-rate warm-up from 0 over this many optimiser steps.")
    grad_clip: Optional[float] = _field(1.0, "Clip the global gradient norm to this; none = off.")
    ppo_epochs: int = _field(1, "Passes over each rollout batch.")
    mini_batch_size: int = _field(
        4, "Prompts (groups) per optimiser step; must divide rollout.prompts_per_step.",
        paper=128)
    micro_batch_size: int = _field(
        8, "Sequences per forward/backward (gradient accumulation); must divide "
           "mini_batch_size * samples_per_prompt.")
    max_nonfinite_steps: int = _field(
        5, "Consecutive optimiser updates (mini-batch steps, counted across RL steps) "
           "with a NaN/inf loss or gradient tolerated before the run stops; each is "
           "skipped, logged (nonfinite_skipped) and printed.")

    def _validate(self) -> None:
        self._range("lr", 0, low_open=True)
        self._range("weight_decay", 0)
        for i, b in enumerate(self.betas):
            if not 0 <= b < 1:
                self._fail("betas", f"each beta must lie in [0, 1), got betas[{i}] = {b}")
        self._range("adam_eps", 0, low_open=True)
        self._range("lr_warmup_steps", 0)
        self._range("grad_clip", 0, low_open=True)
        self._range("ppo_epochs", 1)
        self._range("mini_batch_size", 1)
        self._range("micro_batch_size", 1)
        self._range("max_nonfinite_steps", 1)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Section):
    """Run length, seed, device and output folder."""

    _section: ClassVar[str] = "train"

    total_steps: Optional[int] = _field(
        100, "RL steps to run; none = derive from epochs; 0 = only the supervised warm-up "
             "(and its checkpoint, to start several RL runs from).", paper=None)
    epochs: Optional[float] = _field(
        None, "Passes over a file data source (exclusive with total_steps).", paper=2.0)
    seed: int = _field(0, "Seed of python, numpy and torch RNGs and of the data order.")
    output_dir: str = _field(
        "runs/pgpo-tiny", "Folder for checkpoints, metrics, TensorBoard, plots and the report.")
    device: Device = _field("auto", "auto = CUDA when available, else CPU.")

    def _validate(self) -> None:
        if (self.total_steps is None) == (self.epochs is None):
            self._fail("total_steps", "set exactly one of train.total_steps and train.epochs, "
                                      f"got {self.total_steps!r} and {self.epochs!r}")
        self._range("total_steps", 0)
        self._range("epochs", 0, low_open=True)
        self._range("seed", 0)
        if not self.output_dir.strip():
            self._fail("output_dir", "must not be empty")


@dataclasses.dataclass(frozen=True)
class EvalConfig(_Section):
    """Periodic avg@k accuracy on the held-out split."""

    _section: ClassVar[str] = "eval"

    every: int = _field(25, "Evaluate every this many RL steps; 0 = only at the end.")
    at_start: bool = _field(True, "Also evaluate before the first step (the untrained baseline).")
    num_prompts: Optional[int] = _field(
        None, "Held-out prompts per evaluation; none = all data.eval_size.")
    k: int = _field(4, "Samples per prompt; the accuracy is averaged over them (avg@k).", paper=8)
    temperature: float = _field(1.0, "Sampling temperature of the evaluation.")
    top_p: float = _field(1.0, "Nucleus threshold of the evaluation.")

    def _validate(self) -> None:
        self._range("every", 0)
        self._range("num_prompts", 1)
        self._range("k", 1)
        self._range("temperature", 0, low_open=True)
        self._range("top_p", 0, 1, low_open=True)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig(_Section):
    """Atomic checkpoints and exact resume."""

    _section: ClassVar[str] = "checkpoint"

    every: int = _field(25, "Save every this many RL steps (and after the warm-up, at the "
                            "end, and on SIGTERM); 0 = only those.")
    keep_last: Optional[int] = _field(2, "Checkpoints to keep; none = all.")
    resume: Optional[str] = _field(
        None, "'auto' = the newest intact checkpoint in output_dir if any (damaged ones "
              "are skipped; an error if all are damaged), a checkpoint path, or none = "
              "start fresh (overwrites output_dir's logs and checkpoints).")

    def _validate(self) -> None:
        self._range("every", 0)
        self._range("keep_last", 1)
        if self.resume is not None and not self.resume.strip():
            self._fail("resume", "must be 'auto', a path, or none")


@dataclasses.dataclass(frozen=True)
class LoggingConfig(_Section):
    """Progress bar, metrics files and end-of-run report."""

    _section: ClassVar[str] = "logging"

    log_every: int = _field(1, "Write metrics every this many steps.")
    jsonl: bool = _field(True, "Write metrics to <output_dir>/metrics.jsonl.")
    tensorboard: bool = _field(True, "Write TensorBoard events to <output_dir>/tensorboard.")
    progress_bar: bool = _field(True, "Show a progress bar (main process only).")
    plot: bool = _field(True, "Write a PNG of the learning curves at the end.")
    html_report: bool = _field(
        True, "Write an HTML page of sample responses, tokens coloured by visual dependency.")
    html_samples: int = _field(8, "Responses shown in the HTML report.")

    def _validate(self) -> None:
        self._range("log_every", 1)
        self._range("html_samples", 0)


@dataclasses.dataclass(frozen=True)
class DistConfig(_Section):
    """Multi-process training under torchrun (FSDP2 on GPUs, gloo on CPU)."""

    _section: ClassVar[str] = "dist"

    backend: Literal["auto", "nccl", "gloo"] = _field(
        "auto", "torch.distributed backend; auto = nccl on CUDA, gloo on CPU.")
    fsdp: Literal["auto", "on", "off"] = _field(
        "auto", "Shard with FSDP2; auto = on when more than one process runs on CUDA.")
    cpu_offload: bool = _field(False, "Offload FSDP parameters and optimiser state to CPU.")
    timeout_minutes: int = _field(30, "Collective-operation timeout.")

    def _validate(self) -> None:
        self._range("timeout_minutes", 1)


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "lora": LoraConfig, "data": DataConfig, "rollout": RolloutConfig,
    "reward": RewardConfig, "algo": AlgoConfig, "optim": OptimConfig, "train": TrainConfig,
    "eval": EvalConfig, "checkpoint": CheckpointConfig, "logging": LoggingConfig,
    "dist": DistConfig,
}


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
        if self.rollout.backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise ConfigError("rollout.backend: 'vllm' is not installed; use 'hf' or 'auto'")

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
            implied = _implied(self.algo.name, group, values)
            for key in [k for k, v in implied.items() if values[k] == v]:
                del values[key]
        changes = _parse(lambda p: p.parse_object(_plain(dotted_or_sections), defaults=False),
                         origin="overrides")
        return _build(_merge(base, changes), origin="overrides")
# ------------------------------------------------------- glue to the parser library
# jsonargparse parses the command line, YAML mappings and Python values into typed
# values and formats --help; what follows maps its dotted keys onto the sections above.

@functools.cache
def _groups(cls: type) -> dict[str, type]:
    """The fields of section ``cls`` that hold a nested config class (``algo.pgpo``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])}


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One configurable key: its annotation, one-line help, default and paper value."""

    type: Any
    help: str
    default: Any
    paper: Any = dataclasses.MISSING


@functools.cache
def _leaves() -> dict[str, Leaf]:
    out: dict[str, Leaf] = {}
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            group = _groups(cls).get(f.name)
            if group is None:
                out[f"{name}.{f.name}"] = Leaf(hints[f.name], f.metadata["help"], default,
                                               f.metadata.get("paper", dataclasses.MISSING))
                continue
            group_hints = typing.get_type_hints(group)
            for g in dataclasses.fields(group):
                key = f"{name}.{f.name}.{g.name}"
                if key not in DERIVED:
                    choices = _GROUP_CHOICES.get((group, g.name))
                    out[key] = Leaf(Literal[choices] if choices else group_hints[g.name],
                                    _GROUP_HELP[group][g.name], getattr(default, g.name),
                                    _GROUP_PAPER.get((group, g.name), dataclasses.MISSING))
    return out


def leaf_fields() -> dict[str, Leaf]:
    """``"section.field"`` (``"section.group.field"`` inside a nested config) -> :class:`Leaf`,
    for every configurable key, in declaration order."""
    return dict(_leaves())


#: Short command-line names for the options people type most: ``--algo dapo``,
#: ``--model /path/to/Qwen2.5-VL-7B-Instruct``, ``--data /path/to/ViRL39K``.
SHORTCUTS = {"algo": "algo.name", "model": "model.path", "data": "data.source"}
_NONE = ("none", "null", "~", "")


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's (each option's type and default), keeping hyphenated values
    (``seq-mean-token-mean``) whole when wrapping."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


@functools.cache
def build_parser(prog: str | None = None) -> ArgumentParser:
    """The jsonargparse parser of every key, one argument group per section."""
    shortcuts = "".join(f"\n  --{short} VALUE{' ' * (7 - len(short))}Shortcut for --{key}."
                        for short, key in SHORTCUTS.items())
    parser = ArgumentParser(
        prog=prog, exit_on_error=False, allow_abbrev=False, print_config=None,
        formatter_class=_HelpFormatter,
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
        for key, leaf in _leaves().items():
            if key.split(".", 1)[0] == name:
                paper = "" if leaf.paper is dataclasses.MISSING else \
                    f" [paper: {'null' if leaf.paper is None else leaf.paper}]"
                flag = {"nargs": "?", "const": True} if leaf.type is bool else {}
                group.add_argument(f"--{key}", type=leaf.type, default=leaf.default,
                                   help=leaf.help + paper, **flag)
    return parser


def _parse(parse: Callable[[ArgumentParser], Any], *, origin: str) -> dict[str, Any]:
    """The values a jsonargparse parse (given values only) returns, as a nested dict;
    its errors become :class:`ConfigError` naming the dotted key."""
    try:
        given = parse(build_parser()).as_dict()
    except argparse.ArgumentError as err:
        raise _config_error(str(err), origin) from None

    def finite(values: Mapping[str, Any], prefix: str) -> None:
        for k, v in values.items():
            if isinstance(v, dict):
                finite(v, f"{prefix}{k}.")
            elif isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{prefix}{k}: must be finite, got {v}")
    finite(given, "")
    return given


def _config_error(text: str, origin: str) -> ConfigError:
    """jsonargparse's message as a :class:`ConfigError` that starts with the dotted key."""
    unknown = re.match(r"Option '([^']+)' is not accepted", text)
    if unknown:
        return _unknown_key(unknown.group(1), origin)
    bad = re.match(r'Parser key "([^"]+)"', text)
    if bad is None or bad.group(1) not in _leaves():
        return ConfigError(f"{origin}: {text}")
    key, tp = bad.group(1), _leaves()[bad.group(1)].type
    got = re.findall(r"(?:Got|Given) value: (.*)", text)
    value = got[-1] if got else "?"
    if typing.get_origin(tp) is Literal:
        choices = [str(c) for c in typing.get_args(tp)]
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ConfigError(f"{key}: must be one of {', '.join(map(repr, choices))}; "
                           f"got {value!r}{hint}")
    size = re.search(r"Expected a tuple with (\d+) elements", text)
    if size:
        return ConfigTypeError(f"{key}: expected {size.group(1)} comma-separated values, "
                               f"got {value!r}")
    args = typing.get_args(tp)
    inner = [a for a in args if a is not type(None)] if type(None) in args else [tp]
    names = [{bool: "a bool", int: "an int", float: "a float", str: "a str"}.get(
        a, "a list" if typing.get_origin(a) is tuple else str(a)) for a in inner]
    expected = " or ".join(names + (["null"] if len(inner) < len(args) else []))
    return ConfigTypeError(f"{key}: expected {expected}, got {value!r}")


def _unknown_key(key: str, origin: str) -> ConfigError:
    if key in DERIVED:
        return ConfigError(f"{key}: is set by {DERIVED[key]} (from {origin}); set that instead")
    known = list(_leaves())
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
        if key not in _leaves():
            raise _unknown_key(key, "command line")
        tp = _leaves()[key].type
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
        leaf = _leaves().get(f"{prefix}{k}")
        if leaf is not None and _optional(leaf.type) and isinstance(v, str) \
                and v.strip().lower() in _NONE:
            v = None
        out[k] = _plain(v, f"{prefix}{k}.")
    return out


def _merge(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        both = isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
        out[k] = _merge(out[k], v) if both else v
    return out


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"--config: cannot read {path!r}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"--config: {path!r} is not valid YAML: {err}") from None
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
        for group in _groups(cls):
            values[name][group] = mapping(values[name].get(group), f"{name}.{group}")
    algorithm = algorithms.REGISTRY.get(values["algo"].get("name", AlgoConfig.name))
    for group in algorithms.GROUPS if algorithm is not None else ():
        given = values["algo"][group]
        for key, value in algorithm.defaults_for(group, given, _group_defaults(group)).items():
            given.setdefault(key, value)
    for name, cls in SECTIONS.items():
        for group, group_cls in _groups(cls).items():
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


__all__ = [
    "ALGORITHMS", "AlgoConfig", "AlgorithmName", "CONFIG_DIR", "DERIVED", "Leaf", "SHORTCUTS",
    "build_parser", "leaf_fields",
    "CheckpointConfig", "Config", "ConfigError", "ConfigTypeError", "DataConfig", "DistConfig",
    "EvalConfig", "LoggingConfig", "LoraConfig", "ModelConfig", "OptimConfig", "RewardConfig",
    "RolloutConfig", "SECTIONS", "TrainConfig", "load_config", "preset",
]
