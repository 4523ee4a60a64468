#!/usr/bin/env bash
# Multi-node example: ResNet50 on 4 machines x 8 GPUs: 32 images per GPU, global batch 32 x TRAIN_DEVICES
# (1024 on 4 x 8), lr by the linear scaling rule from 0.1 at batch 256 (0.4 on 4 x 8), 5 warm-up epochs.
# Run the same command on every machine, with MASTER pointing at the first one:
#   MASTER=10.0.0.1:8090 NNODES=4 DATA_DIR=/data/ILSVRC2012/ bash scripts/train/ResNet50_dist.sh
# Every node needs the same code, data paths and GPU count; only rank 0 (on the master) logs and writes checkpoints.
set -euo pipefail
export NNODES="${NNODES:-4}"
source "$(dirname "$0")/../launch.sh"
BATCH_SIZE="$(global_batch "${BATCH_PER_DEVICE:-32}")"
launch_train --model=ResNet50 --data_dir="${DATA_DIR:-./data/ILSVRC2012/}" \
  --batch_size="$BATCH_SIZE" --lr="$(linear_scaled_lr 0.1 256 "$BATCH_SIZE")" \
  --lr_strategy=cosine_decay_warmup --warm_up_epochs=5 --num_epochs=120 \
  --l2_decay=1e-4 --model_save_dir="${MODEL_SAVE_DIR:-./output/}" ${EXTRA_FLAGS:-} "$@"
