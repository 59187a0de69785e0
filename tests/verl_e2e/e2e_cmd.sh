#!/bin/bash
# The end-to-end command: verl's real Ray loop on CPU with the tiny Qwen2.5-VL (make_assets.py).
# usage: tests/verl_e2e/e2e_cmd.sh OUTDIR MODULE [hydra overrides...]
#   MODULE: pgpo_verl.main_pgpo, or verl.trainer.main_ppo for stock verl
#   E2E_LOOP=v1 runs verl's v1 trainer (trainer.use_v1=true); default: the legacy loop.
#   E2E_ASSETS (default /tmp/e2e_assets), E2E_PYTHON (default python).
# Metrics: OUTDIR/metrics.jsonl (verl's file logger); check them with check_metrics.py.
set -e
OUT=$(realpath "$1"); shift; MOD=$1; shift
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
A=${E2E_ASSETS:-/tmp/e2e_assets}
export PYTHONPATH=$ROOT:$ROOT/adapters:$ROOT/tests/verl_e2e:$ROOT/tests/verl_plugin
export VERL_USE_EXTERNAL_MODULES=verl_cpu_support
export VLLM_TARGET_DEVICE=cpu OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
export VERL_FILE_LOGGER_PATH=$OUT/metrics.jsonl
export RAY_DEDUP_LOGS=0
LOOP=(trainer.use_v1=false +ray_kwargs.ray_init.num_cpus=4)
if [ "${E2E_LOOP:-legacy}" = v1 ]; then
  LOOP=(
    trainer.use_v1=true
    # TransferQueue's actors reserve a whole CPU each in Ray's accounting:
    # TransferQueueController (transfer_queue/controller.py:943, @ray.remote(num_cpus=1)) and
    # num_data_storage_units SimpleStorageUnit actors (transfer_queue/storage/simple_storage.py:722,
    # 8 by default: verl/trainer/config/_generated_ppo_trainer.yaml:939). With Ray's 4 logical
    # CPUs, TaskRunnerV1.run waits forever in tq.init (verl/trainer/main_ppo.py:149). One storage
    # unit and 8 logical CPUs (bookkeeping only: the machine has 2 cores).
    transfer_queue.backend.SimpleStorage.num_data_storage_units=1
    +ray_kwargs.ray_init.num_cpus=8
    # vLLM's CPU worker reserves gpu_memory_utilization of the machine's RAM for the KV cache
    # (vllm/v1/worker/cpu_worker.py:75; verl's default 0.5 is ~12 GB here), and the v1 run was
    # OOM-killed by Ray next to other runs; 5% is ample for 160-token sequences.
    actor_rollout_ref.rollout.gpu_memory_utilization=0.05
    # One reward worker instead of 8 (verl/trainer/config/reward/reward.yaml:5), ~0.3 GB each.
    reward.num_workers=1
  )
fi
cd "$OUT"
exec ${E2E_PYTHON:-python} -m $MOD \
  data.train_files=$A/train.parquet data.val_files=$A/val.parquet \
  data.train_batch_size=2 data.max_prompt_length=128 data.max_response_length=16 \
  data.image_key=images data.dataloader_num_workers=0 data.shuffle=false \
  actor_rollout_ref.model.path=$A/model \
  +actor_rollout_ref.model.override_config.attn_implementation=sdpa \
  actor_rollout_ref.model.use_remove_padding=false \
  actor_rollout_ref.model.enable_gradient_checkpointing=false \
  actor_rollout_ref.actor.strategy=fsdp2 actor_rollout_ref.actor.use_torch_compile=false \
  actor_rollout_ref.actor.ppo_mini_batch_size=2 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4 \
  actor_rollout_ref.actor.optim.lr=1e-3 \
  actor_rollout_ref.actor.fsdp_config.param_offload=false actor_rollout_ref.actor.fsdp_config.optimizer_offload=false \
  actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.n=4 \
  actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
  actor_rollout_ref.rollout.enforce_eager=true actor_rollout_ref.rollout.free_cache_engine=false \
  actor_rollout_ref.rollout.dtype=float32 actor_rollout_ref.rollout.load_format=auto \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4 \
  actor_rollout_ref.rollout.max_num_batched_tokens=1024 actor_rollout_ref.rollout.max_model_len=160 \
  actor_rollout_ref.rollout.agent.num_workers=1 \
  algorithm.adv_estimator=grpo algorithm.use_kl_in_reward=false \
  reward.custom_reward_function.path=$ROOT/tests/verl_e2e/make_assets.py reward.custom_reward_function.name=compute_score \
  trainer.n_gpus_per_node=1 trainer.nnodes=1 trainer.device=cpu +actor_rollout_ref.rollout.enable_sleep_mode=false \
  trainer.total_training_steps=3 trainer.test_freq=-1 trainer.val_before_train=false \
  trainer.save_freq=-1 trainer.logger='[console,file]' trainer.default_local_dir=$OUT/ckpt \
  trainer.project_name=pgpo_e2e trainer.experiment_name=e2e \
  +ray_kwargs.ray_init.num_gpus=1 \
  "${LOOP[@]}" "$@"
