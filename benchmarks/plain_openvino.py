#!/usr/bin/env python
"""The yardstick for predict.py's whole-process speed: a plain script that does what predict.py does for an
export (decode, resize the short side, centre crop, normalise, batch, classify) with OpenVINO and nothing else.

    time python benchmarks/plain_openvino.py --export output/ResNet50_vd --list val_list.txt --count 192
    time python predict.py --inference_model=output/ResNet50_vd --data_dir=<the same 192 lines> --batch_size=16

It imports none of this suite (no paddle), decodes on the main thread, and runs OpenVINO at bf16 where the
CPU has native bf16 (avx512_bf16 or amx_bf16), else fp32, on the export's inference.onnx. It prints the
top-1 class of each image (so its answers can be compared with predict.py's) and its own timings on stderr.
"""
import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import openvino as ov


def cpu_has_bf16() -> bool:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
        flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def preprocess(path: str, prep: dict) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    scale = prep["resize_short"] / min(height, width)
    interpolation = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}[prep["interpolation"]]
    image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=interpolation)
    size = prep["crop_size"]
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    image = image[top:top + size, left:left + size]
    mean, std = (np.asarray(prep[key], np.float32)[:, None, None] for key in ("mean", "std"))
    return (image.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", required=True, help="an export directory with inference.onnx")
    parser.add_argument("--list", required=True, help="a 'path label' list; paths relative to its folder")
    parser.add_argument("--count", type=int, default=192)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--precision", choices=("bf16", "f32"), default=None,
                        help="OpenVINO's inference precision (default: bf16 where the CPU has it, else f32)")
    args = parser.parse_args()
    started = time.perf_counter()
    with open(os.path.join(args.export, "preprocess.json"), encoding="utf-8") as handle:
        prep = json.load(handle)["preprocess"]
    root = os.path.dirname(os.path.abspath(args.list))
    with open(args.list, encoding="utf-8") as handle:
        paths = [os.path.join(root, line.split()[0]) for line in handle if line.strip()][:args.count]
    precision = args.precision or ("bf16" if cpu_has_bf16() else "f32")
    compiled = ov.Core().compile_model(os.path.join(args.export, "inference.onnx"), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    compiled_at = time.perf_counter()
    top1 = []
    for start in range(0, len(paths), args.batch_size):
        batch = np.stack([preprocess(path, prep) for path in paths[start:start + args.batch_size]])
        logits = request.infer({0: batch})[0]
        top1.extend(int(i) for i in logits.argmax(axis=1))
    for path, label in zip(paths, top1):
        print(f"{path} {label}")
    done = time.perf_counter()
    print(f"plain OpenVINO {precision}: {len(paths)} images, load+compile {compiled_at - started:.2f} s, "
          f"decode+infer {done - compiled_at:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
