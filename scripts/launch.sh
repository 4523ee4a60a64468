#!/usr/bin/env bash
# Shared by scripts/train/*.sh: run train.py under paddle.distributed.launch on the visible GPUs, or on
# NPROC CPU processes (default 1) when there is no GPU. Multi-node: set NNODES and MASTER (host:port) on every
# machine (see scripts/train/ResNet50_dist.sh).
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT_DIR"
PYTHON="${PYTHON:-python3}"

launch_train() {
  local launch=("$PYTHON" -m paddle.distributed.launch --log_dir "${LOG_DIR:-./log}")
  if [ -n "${NNODES:-}" ] && [ "${NNODES}" != 1 ]; then
    launch+=(--nnodes "$NNODES" --master "${MASTER:?set MASTER=host:port for a multi-node run}")
  fi
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    launch+=(--devices "$CUDA_VISIBLE_DEVICES")
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    launch+=(--devices "$(nvidia-smi -L | awk '{print NR-1}' | paste -sd, -)")
  else
    launch+=(--nproc_per_node "${NPROC:-1}")
  fi
  "${launch[@]}" train.py "$@"
}
