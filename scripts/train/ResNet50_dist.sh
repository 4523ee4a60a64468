#!/usr/bin/env bash
# Multi-node example: ResNet50 on 4 machines x 8 GPUs (global batch 1024 = 32 per GPU, lr scaled 4x).
# Run the same command on every machine, with MASTER pointing at the first one:
#   MASTER=10.0.0.1:8090 NNODES=4 DATA_DIR=/data/ILSVRC2012/ bash scripts/train/ResNet50_dist.sh
# Every node needs the same code and data paths; only rank 0 (on the master) logs and writes checkpoints.
set -euo pipefail
export NNODES="${NNODES:-4}"
source "$(dirname "$0")/../launch.sh"
launch_train --model=ResNet50 --data_dir="${DATA_DIR:-./data/ILSVRC2012/}" \
  --batch_size=1024 --lr=0.4 --lr_strategy=cosine_decay_warmup --warm_up_epochs=5 --num_epochs=120 \
  --l2_decay=1e-4 --model_save_dir="${MODEL_SAVE_DIR:-./output/}" ${EXTRA_FLAGS:-} "$@"
