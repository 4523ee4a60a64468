#!/usr/bin/env bash
# Shared by scripts/train/*.sh: run train.py under paddle.distributed.launch on the visible GPUs, or on
# NPROC CPU processes (default 1) when there is no GPU. Multi-node: set NNODES and MASTER (host:port) on every
# machine (see scripts/train/ResNet50_dist.sh); every node must have the same number of devices.
# No cd: DATA_DIR, MODEL_SAVE_DIR, LOG_DIR and path flags stay relative to the caller's working directory.
# Sourcing this computes the run's devices once: LOCAL_GPUS (comma list, empty on CPU), and exports
# TRAIN_DEVICES = devices per node x NNODES, from which the recipes size their global batch and lr.
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

positive_int() {  # positive_int NAME VALUE: a bad NPROC/NNODES is one clear line and exit 2
  if ! [[ "$2" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: $1=$2 must be a positive whole number (the count of $3)" >&2
    exit 2
  fi
}

if [ "${CUDA_VISIBLE_DEVICES+set}" = set ]; then
  # the user chose the GPUs; an empty value or -1 hides them all (CUDA's own convention): a CPU run
  case "$CUDA_VISIBLE_DEVICES" in "" | -1) LOCAL_GPUS="" ;; *) LOCAL_GPUS="$CUDA_VISIBLE_DEVICES" ;; esac
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  LOCAL_GPUS="$(nvidia-smi -L | awk '{print NR-1}' | paste -sd, -)"
else
  LOCAL_GPUS=""
fi
positive_int NNODES "${NNODES:-1}" "machines"
if [ -n "$LOCAL_GPUS" ]; then
  LOCAL_DEVICES="$(awk -F, '{print NF}' <<<"$LOCAL_GPUS")"
  # The classic GPU recipes' cuDNN settings; a value the user exported wins. Taken from Paddle's source, not
  # observed here: the flags exist only in CUDA builds (paddle/phi/core/flags.cc, under PADDLE_WITH_CUDA), read
  # by the cuDNN conv algorithm search (workspace in MB) and phi/kernels/gpu/batch_norm_kernel.cu; Paddle reads
  # FLAGS_* from the environment at import (paddle/base/__init__.py, __bootstrap__).
  export FLAGS_cudnn_exhaustive_search="${FLAGS_cudnn_exhaustive_search:-1}"
  export FLAGS_conv_workspace_size_limit="${FLAGS_conv_workspace_size_limit:-4000}"
  export FLAGS_cudnn_batchnorm_spatial_persistent="${FLAGS_cudnn_batchnorm_spatial_persistent:-1}"
else
  positive_int NPROC "${NPROC:-1}" "CPU training processes"
  LOCAL_DEVICES="${NPROC:-1}"
fi
export TRAIN_DEVICES=$((LOCAL_DEVICES * ${NNODES:-1}))

# global_batch PER_DEVICE: the global batch (--batch_size is global in train.py) for this run's devices.
global_batch() {
  positive_int BATCH_PER_DEVICE "$1" "images per device"
  echo $(($1 * TRAIN_DEVICES))
}

# linear_scaled_lr LR_REF BATCH_REF BATCH: the linear scaling rule, lr = LR_REF x BATCH / BATCH_REF.
linear_scaled_lr() {
  LC_ALL=C awk -v lr="$1" -v ref="$2" -v batch="$3" 'BEGIN { printf "%.6g\n", lr * batch / ref }'
}

launch_train() {
  local launch=("$PYTHON" -m paddle.distributed.launch --log_dir "${LOG_DIR:-./log}")
  if [ "${NNODES:-1}" != 1 ]; then
    launch+=(--nnodes "$NNODES" --master "${MASTER:?set MASTER=host:port for a multi-node run}")
  fi
  if [ -n "$LOCAL_GPUS" ]; then
    launch+=(--devices "$LOCAL_GPUS")
  else
    launch+=(--nproc_per_node "$LOCAL_DEVICES")
  fi
  "${launch[@]}" "$ROOT_DIR/train.py" "$@"
}
