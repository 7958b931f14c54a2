#!/usr/bin/env bash
# Every GPU figure of the README's benchmark table (issue "Speed"), in one command, on a machine with a CUDA GPU:
#   bash scripts/gpu_benchmarks.sh > gpu_benchmarks.txt
# transformers vs ours in bf16 with MFU (inference and training step, base config), the paper's pre-training
# projected from the measured throughput, everything the app computes for one image on the base model, and the
# Visual Genome detector's images/s. Each benchmark prints its own figures; nothing is written to the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU here')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
set -x
python -m benchmarks.model_speed --device cuda --repeats 5 --warmup 2
python -m benchmarks.pretrain_throughput --device cuda --steps 20 --warmup 5
python -m benchmarks.analysis_speed --preset base --device cuda --repeats 5 --warmup 2 --agreement-examples 32
python -m benchmarks.extraction_speed --preset vg --photos tests/data/coco --images 5 --batch-sizes 1,4 \
  --precisions fp32,bf16,fp16 --stages
