"""Inference latency and throughput on CPU: dygraph vs Paddle Inference (oneDNN) vs onnxruntime.

For each model, one export (paddle.jit.save, then paddle2onnx) feeds all three engines the same random
float32 batches, at batch 1 and batch 32, in one run. Latency is the median of the timed runs (after
warm-up; the engines take turns, run by run); images/s is batch size / median latency. Random weights:
speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np

from utils.runtime import import_paddle_quietly, usable_cores

DEFAULT_MODELS = ("ResNet50_vd", "MobileNetV3_large_x1_0")
ENGINES = ("dygraph", "inference", "onnxruntime")


def time_engines(engines: dict, batch: np.ndarray, runs: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each engine. Rounds interleave the engines, so a machine shared with
    other work slows all of them alike instead of whichever happened to run at the wrong moment."""
    for engine in engines.values():
        for _ in range(warmup):
            engine(batch)
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(runs):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine(batch)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def build_engines(name: str, size: int, threads: int, workdir: str, wanted: tuple[str, ...]) -> dict:
    paddle = import_paddle_quietly()
    import models
    from utils.export import export_onnx, missing_onnx_requirements, save_inference_model
    from utils.inference import DeviceOptions, DygraphEngine, OnnxEngine, PaddleInferenceEngine
    from utils.transforms import PreprocessConfig

    paddle.seed(0)
    model = models.build_model(name)
    model.eval()
    engines = {"dygraph": DygraphEngine(model)}
    directory = save_inference_model(model, f"{workdir}/{name}", name, 1000, PreprocessConfig(crop_size=size))
    if "inference" in wanted:
        engines["inference"] = PaddleInferenceEngine(directory, DeviceOptions(cpu_threads=threads))
    if "onnxruntime" in wanted:
        missing = missing_onnx_requirements()
        if missing:
            print(f"  onnxruntime skipped: {', '.join(missing)} not installed (pip install -r requirements-onnx.txt)")
        else:
            engines["onnxruntime"] = OnnxEngine(export_onnx(directory), threads)
    return {key: engines[key] for key in wanted if key in engines}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmark.py infer", description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=0, help="timed runs per case (default: 30 at batch 1, "
                                                           "5 at larger batches)")
    parser.add_argument("--cpu_threads", type=int, default=None, help="default: usable cores")
    parser.add_argument("--save_json_path", default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    threads = args.cpu_threads or usable_cores()
    paddle = import_paddle_quietly()
    print(f"inference benchmark: Paddle {paddle.__version__}, {threads} CPU threads, "
          f"{args.image_size}x{args.image_size} float32, median latency of timed runs")
    header = f"{'model':<24}{'batch':>6}" + "".join(f"{e + ' ms':>18}{'img/s':>9}" for e in args.engines)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as workdir:
        for number, name in enumerate(args.models):
            engines = build_engines(name, args.image_size, threads, workdir, tuple(args.engines))
            if number == 0:
                print(header)
            for batch_size in args.batch_sizes:
                batch = np.random.default_rng(0).standard_normal(
                    (batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
                runs = args.runs or (30 if batch_size == 1 else 5)
                warmup = 3 if batch_size == 1 else 1
                row = {"model": name, "batch": batch_size}
                for engine_name, seconds in time_engines(engines, batch, runs, warmup).items():
                    row[engine_name] = {"ms": round(seconds * 1000, 2), "images_per_s": round(batch_size / seconds, 1)}
                rows.append(row)
                cells = "".join(f"{row[e]['ms']:>18.1f}{row[e]['images_per_s']:>9.1f}" if e in row
                                else f"{'-':>18}{'-':>9}" for e in args.engines)
                print(f"{name:<24}{batch_size:>6}{cells}", flush=True)
    for row in rows:
        if "inference" in row and "onnxruntime" in row:
            ratio = row["onnxruntime"]["ms"] / row["inference"]["ms"]
            speedup = row["dygraph"]["ms"] / row["inference"]["ms"] if "dygraph" in row else float("nan")
            verdict = "ok" if ratio >= 1 / 1.1 else "SLOWER than onnxruntime by more than 10%"
            print(f"{row['model']} batch {row['batch']}: Paddle Inference {speedup:.2f}x dygraph, "
                  f"{ratio:.2f}x onnxruntime's speed ({verdict}; target: within 10% of onnxruntime or faster)")
    if args.save_json_path:
        with open(args.save_json_path, "w", encoding="utf-8") as handle:
            json.dump({"threads": threads, "rows": rows}, handle, indent=1)
    return 0
