"""The sections of the reference trainer's configuration: one frozen dataclass per
section, each option declared once (:func:`~reference_impl.config.fields.option`: default,
one-line help, the paper's value where it differs), validated on construction.

The defaults are the laptop run: a tiny Qwen2.5-VL built from a config, the synthetic
task, small batches, float32 on CPU. The paper's recipe (Ye et al. 2026, Sec. 5 and
App. C; EasyR1 on Qwen2.5-VL-3B/7B) ships as ``reference_impl/configs/paper_*.yaml``.
The nested ``algo.pgpo`` and ``algo.blind`` configs are declared in ``pgpo_core`` and
``pgpo_torch``; :mod:`reference_impl.algorithms` says what each ``algo.name`` sets.
"""

import dataclasses
import functools
import typing
from typing import Any, ClassVar, Literal, Mapping, Optional

from pgpo_core import AGGREGATIONS, PGPOConfig
from pgpo_core.config import DEPENDENCY_ESTIMATORS, THRESHOLDS
from pgpo_torch.blind_pass import BLIND_MODES, BlindPassConfig
from reference_impl import algorithms

from reference_impl.config.fields import Leaf, Section, nested_groups, option

#: ``algo.name``'s choices: the names of :data:`reference_impl.algorithms.REGISTRY`.
ALGORITHMS = algorithms.names()

AlgorithmName = Literal[ALGORITHMS]
DType = Literal["auto", "float32", "bfloat16"]
Device = Literal["auto", "cpu", "cuda"]


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """Policy model: the built-in tiny Qwen2.5-VL, or a local checkpoint."""

    _section: ClassVar[str] = "model"

    path: Optional[str] = option(
        None, "Local Qwen2.5-VL checkpoint directory (weights and processor); none builds "
              "the tiny model from a config.")
    dtype: DType = option(
        "auto", "Parameter/compute dtype; auto = bfloat16 on CUDA, float32 on CPU.")
    gradient_checkpointing: bool = option(
        False, "Recompute activations in the backward pass to save memory.")
    freeze_vision_tower: bool = option(
        False, "Keep the vision encoder fixed (the paper trains it).")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = option(
        "auto", "Attention kernel; auto = sdpa (flash_attention_2 when installed on CUDA).")
    sft_warmup_steps: int = option(
        800, "Supervised warm-up steps on the synthetic task before RL (tiny model only), "
            "so that rewards are not all zero.", paper=0)
    sft_warmup_lr: float = option(3e-3, "Learning rate of the supervised warm-up.")
    sft_warmup_vision_lr: Optional[float] = option(
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
class LoraConfig(Section):
    """Optional LoRA adapters (peft) for small GPUs; off in the paper."""

    _section: ClassVar[str] = "lora"

    enabled: bool = option(False, "Train LoRA adapters instead of all weights (needs peft).")
    r: int = option(16, "LoRA rank.")
    alpha: float = option(32.0, "LoRA scaling alpha (the update is scaled by alpha / r).")
    dropout: float = option(0.05, "Dropout on the LoRA input.")
    target_modules: tuple[str, ...] = option(
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        "Names of the linear modules that get adapters (comma-separated on the command line).")

    def _validate(self) -> None:
        self._range("r", 1)
        self._range("alpha", 0, low_open=True)
        self._range("dropout", 0, 1, high_open=True)
        if not self.target_modules or any(not m.strip() for m in self.target_modules):
            self._fail("target_modules", f"must name at least one module, got {self.target_modules!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """Training and held-out data: the synthetic task or local JSONL/Parquet files."""

    _section: ClassVar[str] = "data"

    source: str = option(
        "synthetic", "'synthetic' (generated on the fly) or a local JSONL/Parquet file or "
                     "dataset directory (Hugging Face layout).")
    prompt_column: str = option("problem", "Column holding the question text.")
    answer_column: str = option("answer", "Column holding the ground-truth answer.")
    image_column: str = option(
        "images", "Column holding the image(s): paths (relative to the file) or bytes.")
    eval_source: Optional[str] = option(
        None, "Separate held-out file; none holds out eval_size prompts of source "
              "(synthetic: a disjoint seed).")
    eval_size: int = option(256, "Number of held-out prompts.")
    shuffle: bool = option(True, "Shuffle the training prompts every epoch (seeded).")
    synthetic_task: Literal["chain", "spatial", "rows", "bars", "region", "lengths", "length",
                            "simple"] = option(
        "chain", "Synthetic task: 'chain' (count squares of 2-3 colours, then add: perception "
                 "steps inside a reasoning chain, reference_impl/data/chains.py), 'spatial' "
                 "(the row and column of a coloured square, then its cell number), 'rows' "
                 "(the rows of two of four squares, one per row, then subtract), 'bars' "
                 "(read two bar heights, then subtract), 'region' (count the squares in "
                 "each half of the picture, then the asked half's), 'lengths' (read the top "
                 "and the bottom bar's lengths, then subtract), 'length' (the same chart, "
                 "one bar's length asked; these six reference_impl/data/visual_tasks.py) or "
                 "'simple' (one-step count/colour/position/chart questions).")
    chain_facts: int = option(2, "Chain task: colours to count, i.e. perception steps (2-4).")
    chain_max_count: int = option(4, "Chain task: largest count of one colour.")
    chain_distractors: int = option(1, "Chain task: up to this many grey squares no question asks about.")
    chain_warmup_noise: float = option(
        0.3, "Chain task and the tasks of reference_impl/data/visual_tasks.py: probability "
             "that a fact stated in a warm-up reference chain is wrong (the warm-up teaches "
             "the format, not the answers).")
    chain_filler: int = option(
        0, "Chain task: statements of pure language ('Okay.', 'Let me see.', ...) added to "
           "each warm-up chain at random places among its facts; raises the language share "
           "of a response (Thm. E.1's axis: PGPO should gain more the higher it is; at 8 "
           "it lost to DAPO over 8 seeds, docs/evidence.md).")
    opening_steps: int = option(
        0, "Bars, region, lengths and length tasks: the first N warm-up steps ask each "
           "picture for the total (the height of all its bars, the number of all its "
           "squares, the length of both bars) instead of the task's own question, then "
           "that question. The total is how much colour the picture holds, a way into the "
           "image that a difference or a half lacks: without it the tiny model's warm-up "
           "never looks (docs/evidence.md). At most model.sft_warmup_steps.")
    reference_column: Optional[str] = option(
        None, "File sources: column with a reference response or reasoning for the "
              "supervised warm-up (taught as <think>reasoning</think> \\boxed{answer}).")
    image_size: int = option(112, "Side in pixels of the synthetic images.")
    min_pixels: int = option(
        3136, "Smallest image area the processor resizes to (pixels).")
    max_pixels: int = option(
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
        self._range("chain_filler", 0, 32)
        self._range("opening_steps", 0)
        if self.reference_column is not None and not self.reference_column.strip():
            self._fail("reference_column", "must be a non-empty column name or none")
        self._range("image_size", 28)
        self._range("min_pixels", 784)
        if self.max_pixels < self.min_pixels:
            self._fail("max_pixels", f"must be >= data.min_pixels ({self.min_pixels}), "
                                     f"got {self.max_pixels}")


@dataclasses.dataclass(frozen=True)
class RolloutConfig(Section):
    """Sampling of G responses per prompt with the current (old) policy."""

    _section: ClassVar[str] = "rollout"

    prompts_per_step: int = option(
        8, "Prompts per RL step (the rollout batch).", paper=384)
    samples_per_prompt: int = option(
        4, "Responses sampled per prompt (the group size G, >= 2).", paper=5)
    max_prompt_length: int = option(
        256, "Longest prompt in tokens, image tokens included; longer prompts are skipped "
             "and counted.")
    max_response_length: int = option(
        72, "Most tokens generated per response.", paper=2048)
    temperature: float = option(1.0, "Sampling temperature (> 0).")
    top_p: float = option(1.0, "Nucleus sampling threshold in (0, 1].", paper=0.99)
    backend: Literal["auto", "hf", "vllm"] = option(
        "auto", "Generation engine (reference_impl/rollout/engines): hf = Hugging Face generate on the "
                "trained module; vllm = an in-process vLLM engine colocated with training, "
                "weights synced after each optimiser step (one process only); auto = vllm "
                "when importable and one process on CUDA, else hf.")
    vllm_gpu_memory_utilization: float = option(
        0.5, "Share of GPU memory vLLM may reserve for its weights and KV cache (vllm backend "
             "on CUDA).")
    vllm_kv_cache_memory_mb: Optional[int] = option(
        None, "vLLM's KV cache in MiB; must hold max_prompt_length + max_response_length "
              "tokens (checked before any work); none = 64 MiB on CPU, set by "
              "vllm_gpu_memory_utilization on CUDA.")
    vllm_sleep: bool = option(
        False, "Put vLLM to sleep between rollouts (level 1: KV cache freed, weights moved to "
               "host memory) to leave the GPU to training; CUDA only.")
    vllm_sync_bucket_mb: int = option(
        512, "Weight sync to vLLM hands over the weights this many MiB at a time (under FSDP2 "
             "each bucket is all-gathered just before it is copied; LoRA merged on the fly).")
    tis_cap: Optional[float] = option(
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
class RewardConfig(Section):
    """Verifiable reward: accuracy of the \\boxed{} answer plus the <think> format."""

    _section: ClassVar[str] = "reward"

    accuracy_weight: float = option(0.9, "Weight of the answer-correctness reward (0/1).")
    format_weight: float = option(
        0.1, "Weight of the format reward (<think>...</think> then \\boxed{}).")

    def _validate(self) -> None:
        self._range("accuracy_weight", 0)
        self._range("format_weight", 0)
        if self.accuracy_weight + self.format_weight <= 0:
            self._fail("accuracy_weight", "accuracy_weight + format_weight must be > 0")


# Nested configs: declared (fields, types, defaults, help, validation) in pgpo_core /
# pgpo_torch. Here only what the command line needs on top: the choices of their string
# fields and the paper's value where the laptop default differs.
_GROUP_CHOICES = {(PGPOConfig, "estimator"): DEPENDENCY_ESTIMATORS,
                  (PGPOConfig, "threshold"): THRESHOLDS,
                  (PGPOConfig, "aggregation"): AGGREGATIONS,
                  (BlindPassConfig, "mode"): BLIND_MODES}
_GROUP_PAPER = {(PGPOConfig, "estimator"): "k3"}
#: Keys that another section sets: the dependency is measured at the sampling temperature.
DERIVED = {"algo.pgpo.temperature": "rollout.temperature"}


@dataclasses.dataclass(frozen=True)
class AlgoConfig(Section):
    """Policy-gradient algorithm: PGPO (default), its ablations, or the DAPO/GRPO baselines."""

    _section: ClassVar[str] = "algo"

    name: AlgorithmName = option(
        "pgpo", "The algorithm (reference_impl/algorithms.py). "
                + " | ".join(a.describe() for a in algorithms.REGISTRY.values())
                + ". What an algorithm fixes overrides algo.pgpo; its defaults apply to "
                  "keys not given.")
    pgpo: PGPOConfig = option(
        PGPOConfig(), "PGPO's hyper-parameters (pgpo_core.PGPOConfig).", factory=True)
    blind: BlindPassConfig = option(
        BlindPassConfig(), "The blind pass (pgpo_torch.BlindPassConfig).", factory=True)
    dynamic_sampling: Optional[bool] = option(
        None, "Drop groups whose rewards are all equal and sample more prompts; none = the "
              "algorithm's default (off for "
              + (", ".join(n for n, a in algorithms.REGISTRY.items() if not a.dynamic_sampling)
                 or "none") + ", on for the others).")
    max_sampling_rounds: int = option(
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


def group_defaults(group: str) -> dict[str, Any]:
    """The class defaults of ``algo.<group>`` (``pgpo``: PGPOConfig's, ``blind``: BlindPassConfig's)."""
    cls = nested_groups(AlgoConfig)[group]
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


def implied_values(name: str, group: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``algo.<group>`` field's value under algorithm ``name`` when not given (the
    class default, the algorithm's default, what it fixes); ``given`` resolves a
    :class:`~reference_impl.algorithms.Follows` default."""
    algorithm = algorithms.get(name)
    values = group_defaults(group)
    values.update(algorithm.defaults_for(group, given, values))
    if group == "pgpo":
        values.update(algorithm.fixed)
    return {k: v for k, v in values.items() if f"algo.{group}.{k}" not in DERIVED}


@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
    """AdamW, learning-rate schedule and PPO-style mini-batch updates."""

    _section: ClassVar[str] = "optim"

    lr: float = option(1e-4, "AdamW learning rate.", paper=1e-6)
    weight_decay: float = option(0.01, "AdamW decoupled weight decay.")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW (beta1, beta2).")
    adam_eps: float = option(1e-8, "AdamW epsilon.")
    lr_schedule: Literal["constant", "cosine", "linear"] = option(
        "constant", "Learning-rate schedule after warm-up (the paper: constant).")
    lr_warmup_steps: int = option(
        0, "Linear learning-rate warm-up from 0 over this many optimiser steps.")
    grad_clip: Optional[float] = option(1.0, "Clip the global gradient norm to this; none = off.")
    ppo_epochs: int = option(1, "Passes over each rollout batch.")
    mini_batch_size: int = option(
        4, "Prompts (groups) per optimiser step; must divide rollout.prompts_per_step.",
        paper=128)
    micro_batch_size: int = option(
        8, "Sequences per forward/backward (gradient accumulation); must divide "
           "mini_batch_size * samples_per_prompt.")
    max_nonfinite_steps: int = option(
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
class TrainConfig(Section):
    """Run length, seed, device and output folder."""

    _section: ClassVar[str] = "train"

    total_steps: Optional[int] = option(
        100, "RL steps to run; none = derive from epochs; 0 = only the supervised warm-up "
             "(and its checkpoint, to start several RL runs from).", paper=None)
    epochs: Optional[float] = option(
        None, "Passes over a file data source (exclusive with total_steps).", paper=2.0)
    seed: int = option(0, "Seed of python, numpy and torch RNGs and of the data order.")
    output_dir: str = option(
        "runs/pgpo-tiny", "Folder for checkpoints, metrics, TensorBoard, plots and the report.")
    device: Device = option("auto", "auto = CUDA when available, else CPU.")

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
class EvalConfig(Section):
    """Periodic avg@k accuracy on the held-out split."""

    _section: ClassVar[str] = "eval"

    every: int = option(25, "Evaluate every this many RL steps; 0 = only at the end.")
    at_start: bool = option(True, "Also evaluate before the first step (the untrained baseline).")
    num_prompts: Optional[int] = option(
        None, "Held-out prompts per evaluation; none = all data.eval_size.")
    k: int = option(4, "Samples per prompt; the accuracy is averaged over them (avg@k).", paper=8)
    temperature: float = option(1.0, "Sampling temperature of the evaluation.")
    top_p: float = option(1.0, "Nucleus threshold of the evaluation.")

    def _validate(self) -> None:
        self._range("every", 0)
        self._range("num_prompts", 1)
        self._range("k", 1)
        self._range("temperature", 0, low_open=True)
        self._range("top_p", 0, 1, low_open=True)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig(Section):
    """Atomic checkpoints and exact resume."""

    _section: ClassVar[str] = "checkpoint"

    every: int = option(25, "Save every this many RL steps (and after the warm-up, at the "
                            "end, and on SIGTERM); 0 = only those.")
    keep_last: Optional[int] = option(2, "Checkpoints to keep; none = all.")
    resume: Optional[str] = option(
        None, "'auto' = the newest intact checkpoint in output_dir if any (damaged ones "
              "are skipped; an error if all are damaged), a checkpoint path, or none = "
              "start fresh (overwrites output_dir's logs and checkpoints).")

    def _validate(self) -> None:
        self._range("every", 0)
        self._range("keep_last", 1)
        if self.resume is not None and not self.resume.strip():
            self._fail("resume", "must be 'auto', a path, or none")


@dataclasses.dataclass(frozen=True)
class LoggingConfig(Section):
    """Progress bar, metrics files and end-of-run report."""

    _section: ClassVar[str] = "logging"

    log_every: int = option(1, "Write metrics every this many steps.")
    jsonl: bool = option(True, "Write metrics to <output_dir>/metrics.jsonl.")
    tensorboard: bool = option(True, "Write TensorBoard events to <output_dir>/tensorboard.")
    progress_bar: bool = option(True, "Show a progress bar (main process only).")
    plot: bool = option(True, "Write a PNG of the learning curves at the end.")
    html_report: bool = option(
        True, "Write an HTML page of sample responses, tokens coloured by visual dependency.")
    html_samples: int = option(8, "Responses shown in the HTML report.")

    def _validate(self) -> None:
        self._range("log_every", 1)
        self._range("html_samples", 0)


@dataclasses.dataclass(frozen=True)
class DistConfig(Section):
    """Multi-process training under torchrun (FSDP2 on GPUs, gloo on CPU)."""

    _section: ClassVar[str] = "dist"

    backend: Literal["auto", "nccl", "gloo"] = option(
        "auto", "torch.distributed backend; auto = nccl on CUDA, gloo on CPU.")
    fsdp: Literal["auto", "on", "off"] = option(
        "auto", "Shard with FSDP2; auto = on when more than one process runs on CUDA.")
    cpu_offload: bool = option(False, "Offload FSDP parameters and optimiser state to CPU.")
    timeout_minutes: int = option(30, "Collective-operation timeout.")

    def _validate(self) -> None:
        self._range("timeout_minutes", 1)


SECTIONS: dict[str, type] = {
    "model": ModelConfig, "lora": LoraConfig, "data": DataConfig, "rollout": RolloutConfig,
    "reward": RewardConfig, "algo": AlgoConfig, "optim": OptimConfig, "train": TrainConfig,
    "eval": EvalConfig, "checkpoint": CheckpointConfig, "logging": LoggingConfig,
    "dist": DistConfig,
}


@functools.cache
def _all_leaves() -> dict[str, Leaf]:
    out: dict[str, Leaf] = {}
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            group = nested_groups(cls).get(f.name)
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
                                    g.metadata["help"], getattr(default, g.name),
                                    _GROUP_PAPER.get((group, g.name), dataclasses.MISSING))
    return out


def leaf_fields() -> dict[str, Leaf]:
    """``"section.field"`` (``"section.group.field"`` inside a nested config) -> :class:`Leaf`,
    for every configurable key, in declaration order (cached: do not modify)."""
    return dict(_all_leaves())


__all__ = ["ALGORITHMS", "AlgoConfig", "AlgorithmName", "CheckpointConfig", "DERIVED",
           "DataConfig", "DistConfig", "EvalConfig", "LoggingConfig", "LoraConfig",
           "ModelConfig", "OptimConfig", "RewardConfig", "RolloutConfig", "SECTIONS",
           "TrainConfig", "group_defaults", "implied_values", "leaf_fields"]
