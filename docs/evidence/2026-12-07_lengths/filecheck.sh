#!/bin/bash
# The lengths task through the file loader (protocol_lengths_2026-12-07.md): 300 warm-up
# steps of seed 0 (100 opening) from the generator and from exported files.
cd /work/runs/s8/code
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=/work/runs/s8/code:/work/runs/s8/code/adapters
F=/work/runs/s8/files
S="data.opening_steps=100 model.sft_warmup_steps=300 train.seed=0"
python -m reference_impl.data.export $F/train.jsonl --size 9600 data.synthetic_task=lengths $S
python -m reference_impl.data.export $F/heldout.jsonl --size 256 --heldout data.synthetic_task=lengths $S
python reference_impl/train.py data.synthetic_task=lengths $S train.total_steps=0 \
  logging.progress_bar=false train.output_dir=$F/synthetic > $F/synthetic.log 2>&1
python reference_impl/train.py data.source=$F/train.jsonl data.eval_source=$F/heldout.jsonl \
  data.shuffle=false model.sft_warmup_steps=300 train.total_steps=0 train.seed=0 \
  logging.progress_bar=false train.output_dir=$F/from_files > $F/from_files.log 2>&1
echo done
