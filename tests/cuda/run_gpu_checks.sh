#!/usr/bin/env bash
# Every check that needs a GPU, in one run (a lent GPU machine is held for minutes, not
# hours). Results go to $OUT (default ./gpu-results):
#   log.txt       the core suites on torch_cuda and jax, tests/cuda, the CUDA benchmark
#   train.txt     the default `python reference_impl/train.py` run on the GPU (+ metrics)
#   mutation.txt  the conformance suite's mutation self-test, on the machine's CPU cores
# Needs the project importable (pip install -e ".[all]" or PYTHONPATH=adapters:.).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=${PY:-python3}
start=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - start )) s]"; }
LOG="$OUT/log.txt"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, jax, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| jax', jax.__version__, jax.devices(), '| transformers', transformers.__version__)"
} > "$LOG" 2>&1

# The mutation self-test uses CPU cores only: run it beside the GPU work.
JOBS=${MUTATION_JOBS:-10}
OMP_NUM_THREADS=1 timeout "${MUTATION_TIMEOUT:-480}" $PY property_tests/mutants/mutation.py --jobs "$JOBS" \
  > "$OUT/mutation.txt" 2>&1 &
mutation=$!

# The default run, on the GPU (bfloat16 autocast over float32 master weights).
RUN=${RUN_DIR:-/tmp/pgpo-gpu-run}
rm -rf "$RUN"
( time timeout "${TRAIN_TIMEOUT:-330}" $PY reference_impl/train.py \
    train.output_dir="$RUN" logging.progress_bar=false ) > "$OUT/train.txt" 2>&1 &
train=$!

echo "== $(elapsed) core suites on torch_cuda and jax" >> "$LOG"
timeout 200 $PY -m pytest tests/core property_tests -m "not mutation" \
  --backends torch_cuda,jax -q -p no:cacheprovider -n 4 -ra >> "$LOG" 2>&1
rc=$?; echo "== $(elapsed) rc=$rc; tests/cuda" >> "$LOG"
timeout 200 $PY -m pytest tests/cuda -q -p no:cacheprovider -ra >> "$LOG" 2>&1
rc=$?; echo "== $(elapsed) rc=$rc; waiting for the default run" >> "$LOG"
wait $train
rc=$?; echo "== $(elapsed) default run rc=$rc" >> "$LOG"
cp "$RUN/metrics.jsonl" "$RUN/summary.json" "$OUT/" 2>/dev/null
echo "== $(elapsed) bench_torch on the GPU" >> "$LOG"
timeout 150 $PY bench/bench_torch.py --device cuda --hidden 3584 --tokens 4096 \
  --repeats 5 >> "$LOG" 2>&1
rc=$?; echo "== $(elapsed) rc=$rc; waiting for the mutation run" >> "$LOG"
wait $mutation
rc=$?; echo "== $(elapsed) mutation rc=$rc" >> "$LOG"
