#!/usr/bin/env bash
# Entry point for the common jobs.
#   bash run.sh demo              install requirements, build the digits demo, train, evaluate (>= 95%)
#   bash run.sh test              run the test suite (what CI runs)
#   bash run.sh train <Model>     run scripts/train/<Model>.sh (classic recipe; DATA_DIR, extra flags via env)
#   bash run.sh eval <Model> [flags]     eval.py --model=<Model> --data_dir=$DATA_DIR [flags]
#   bash run.sh infer <Model> [flags]    infer.py --model=<Model> [flags]
#   bash run.sh export <Model> [flags]   infer.py --model=<Model> --save_inference=True [flags]
#   bash run.sh predict <Model> [flags]  predict.py --inference_model=${MODEL_SAVE_DIR:-./output}/<Model> [flags]
#   bash run.sh gpucheck [flags]  every GPU path once (AMP levels, DALI, multi-GPU, TensorRT): a pass/fail table
# Paths in flags and in DATA_DIR / MODEL_SAVE_DIR are relative to the caller's working directory.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
USAGE="usage: bash run.sh demo | test | gpucheck | train|eval|infer|export|predict <Model> [flags]"

demo() {
  cd "$HERE"  # the demo builds its data and output inside the checkout
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  "$PYTHON" data/make_demo_data.py
  local out=output/demo
  local common=(--model=ResNet18 --data_dir=data/demo --image_shape 3 32 32 --resize_short_size=32)
  "$PYTHON" train.py "${common[@]}" --batch_size=64 --test_batch_size=128 --num_epochs=8 \
    --lr=0.1 --lr_strategy=cosine_decay_warmup --warm_up_epochs=1 --l2_decay=5e-5 \
    --lower_scale=0.6 --random_flip=False --random_seed=0 --reader_thread=2 --print_step=5 \
    --model_save_dir="$out"
  "$PYTHON" eval.py "${common[@]}" --pretrained_model="$out/ResNet18/7" --reader_thread=2 \
    --save_json_path="$out/eval.json"
  "$PYTHON" - "$out/eval.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
verdict = "OK" if result["top1"] >= 0.95 else "BELOW TARGET"
print(f"demo: ResNet18 on {result['samples']} held-out digits: top-1 {result['top1']:.2%} ({verdict}, target 95%)")
sys.exit(0 if result["top1"] >= 0.95 else 1)
PY
}

# A model name is a plain name (letters, digits, _ . -), never a path: 'train ../../x' must not run x.
model_arg() {
  local job="$1" model="${2:-}"
  if [ -z "$model" ]; then
    echo "$USAGE" >&2; echo "error: run.sh $job needs a model name, e.g. bash run.sh $job ResNet50_vd" >&2; exit 2
  fi
  if ! [[ "$model" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
    echo "error: model name '$model' is not a plain name (letters, digits, _ . -); see models.list_models()" >&2
    exit 2
  fi
}

case "${1:-}" in
  demo) demo ;;
  test) cd "$HERE" && exec "$PYTHON" -m pytest ;;
  gpucheck) shift; exec "$PYTHON" "$HERE/scripts/gpucheck.py" "$@" ;;
  train)
    model_arg train "${2:-}"; model="$2"
    script="$HERE/scripts/train/${model}.sh"
    [ -f "$script" ] || { echo "error: no scripts/train/$model.sh; available: $(ls "$HERE/scripts/train" 2>/dev/null | sed 's/\.sh$//' | tr '\n' ' ')" >&2; exit 2; }
    shift 2; exec bash "$script" "$@" ;;
  eval|infer|export|predict)
    job="$1"; model_arg "$job" "${2:-}"; model="$2"; shift 2
    case "$job" in
      eval) exec "$PYTHON" "$HERE/eval.py" --model="$model" --data_dir="${DATA_DIR:-./data/ILSVRC2012/}" "$@" ;;
      infer) exec "$PYTHON" "$HERE/infer.py" --model="$model" "$@" ;;
      export) exec "$PYTHON" "$HERE/infer.py" --model="$model" --save_inference=True "$@" ;;
      predict) exec "$PYTHON" "$HERE/predict.py" --inference_model="${MODEL_SAVE_DIR:-./output}/$model" "$@" ;;
    esac ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
