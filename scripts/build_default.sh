#!/usr/bin/env bash
# Rebuilds the embedded default (assets/default/ and assets/samples/) with the project's own commands, on the
# synthetic world. Every step resumes if interrupted; intermediate outputs go to runs/ (git-ignored).
#   bash scripts/build_default.sh            # all steps
# Measured scores are written to assets/default/*/meta.json and quoted in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}

# 1. The world: 3000 scenes with captions, GQA/VQA questions and NLVR2 statements.
[ -f runs/world/world.json ] || $PY -m training.world --out runs/world --images 3000 --seed 0

# 2. The small detector. Time-boxed: 1000 of a 3000-step cosine schedule (a 2-core CPU shared with other jobs).
$PY -m training.detector --world runs/world --out runs/detector --work-dir runs/detector-train \
  --steps 3000 --stop-after 1000 --resume --num-threads "$THREADS" --eval-images 150

# 3. 36 regions per image for every world image.
$PY -m training.extract --images runs/world --out runs/features/world --detector runs/detector \
  --batch-size 8 --num-threads "$THREADS"

# 4. Pre-training with the five tasks (QA from the second epoch), tiny preset.
$PY -m training.pretrain --world runs/world --features runs/features/world --preset tiny \
  --output runs/default/pretrain --epochs 3 --qa-from-epoch 1 --batch-size 32 --lr 1e-3 --threads "$THREADS"

# 5. Fine-tuning for GQA-style questions, the answer head transferred from pre-training by answer string.
$PY -m training.finetune gqa --init runs/default/pretrain/best --features runs/features/world \
  --output runs/default/gqa --epochs 3 --batch-size 32 --lr 1e-4 --threads "$THREADS"

# 6. Into assets/: the detector, both models (half precision), sample images from held-out splits.
$PY -m training.export_default --detector runs/detector --pretrained runs/default/pretrain/best \
  --qa runs/default/gqa/best --world runs/world --out assets
