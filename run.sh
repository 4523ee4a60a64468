#!/usr/bin/env bash
# Entry point for the common jobs.
#   bash run.sh demo              install requirements, build the digits demo, train, evaluate (>= 95%)
#   bash run.sh test              run the test suite (what CI runs)
#   bash run.sh train <Model>     run scripts/train/<Model>.sh (classic recipe; DATA_DIR, extra flags via env)
#   bash run.sh eval <Model> [flags]     eval.py --model=<Model> --data_dir=$DATA_DIR [flags]
#   bash run.sh infer <Model> [flags]    infer.py --model=<Model> [flags]
#   bash run.sh export <Model> [flags]   infer.py --model=<Model> --save_inference=True [flags]
#   bash run.sh predict <Model> [flags]  predict.py --inference_model=${MODEL_SAVE_DIR:-./output}/<Model> [flags]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"

demo() {
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

case "${1:-}" in
  demo) demo ;;
  test) exec "$PYTHON" -m pytest ;;
  train)
    model="${2:?usage: run.sh train <Model>}"
    script="scripts/train/${model}.sh"
    [ -f "$script" ] || { echo "error: no $script; available: $(ls scripts/train 2>/dev/null | sed 's/\.sh$//' | tr '\n' ' ')" >&2; exit 2; }
    shift 2; exec bash "$script" "$@" ;;
  eval|infer|export|predict)
    job="$1"; model="${2:?usage: run.sh $1 <Model> [flags]}"; shift 2
    case "$job" in
      eval) exec "$PYTHON" eval.py --model="$model" --data_dir="${DATA_DIR:-./data/ILSVRC2012/}" "$@" ;;
      infer) exec "$PYTHON" infer.py --model="$model" "$@" ;;
      export) exec "$PYTHON" infer.py --model="$model" --save_inference=True "$@" ;;
      predict) exec "$PYTHON" predict.py --inference_model="${MODEL_SAVE_DIR:-./output}/$model" "$@" ;;
    esac ;;
  *) echo "usage: bash run.sh demo | test | train|eval|infer|export|predict <Model> [flags]" >&2; exit 2 ;;
esac
