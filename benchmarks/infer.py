"""Inference latency and throughput on CPU: dygraph vs Paddle Inference (oneDNN) vs onnxruntime.

For each model, one export (paddle.jit.save, then paddle2onnx) feeds all three engines the same random
float32 batches, at batch 1 and batch 32, in one run. Latency is the median of the timed runs (after
warm-up; two passes, the better one per engine); images/s is batch size / median latency. Random weights:
speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from utils.runtime import import_paddle_quietly, usable_cores

DEFAULT_MODELS = ("ResNet50_vd", "MobileNetV3_large_x1_0")
ENGINES = ("dygraph", "inference", "inference_native", "onnxruntime")
# inference: Paddle Inference with oneDNN (what predict.py and --engine inference use on CPU);
# inference_native: the same predictor without oneDNN (Paddle's own CPU kernels and MKL), for comparison.


def time_block(engine, batch: np.ndarray, runs: int, warmup: int) -> float:
    """Median seconds per call over ``runs`` consecutive calls after ``warmup`` calls."""
    for _ in range(warmup):
        engine(batch)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        engine(batch)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_engines(engines: dict, batch: np.ndarray, runs: int, warmup: int) -> dict[str, float]:
    """Each engine timed in a block of consecutive calls (engines are not interleaved call by call:
    onnxruntime's and OpenMP's worker threads keep spinning briefly after a call and would slow whichever
    engine ran next). Two passes, the second in reverse order, keep each engine's better median, so load
    from other work on a shared machine is less likely to land on one engine only."""
    best: dict[str, float] = {}
    for order in (list(engines), list(reversed(engines))):
        for name in order:
            time.sleep(0.2)  # let the previous engine's threads go idle
            seconds = time_block(engines[name], batch, runs, warmup)
            best[name] = min(best.get(name, seconds), seconds)
    return {name: best[name] for name in engines}


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
    if "inference_native" in wanted:
        engines["inference_native"] = PaddleInferenceEngine(directory, DeviceOptions(cpu_threads=threads,
                                                                                     use_onednn=False))
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
    parser.add_argument("--runs", type=int, default=0, help="timed runs per case and pass (default: 20 at "
                                                           "batch 1, 3 at larger batches)")
    parser.add_argument("--cpu_threads", type=int, default=None, help="default: usable cores")
    parser.add_argument("--save_json_path", default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    threads = args.cpu_threads or usable_cores()
    paddle = import_paddle_quietly()
    print(f"inference benchmark: Paddle {paddle.__version__}, {threads} CPU threads, "
          f"{args.image_size}x{args.image_size} float32, median latency of timed runs; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    header = f"{'model':<24}{'batch':>6}" + "".join(f"{e + ' ms':>22}{'img/s':>9}" for e in args.engines)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as workdir:
        for number, name in enumerate(args.models):
            engines = build_engines(name, args.image_size, threads, workdir, tuple(args.engines))
            if number == 0:
                print(header)
            for batch_size in args.batch_sizes:
                batch = np.random.default_rng(0).standard_normal(
                    (batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
                runs = args.runs or (20 if batch_size == 1 else 3)
                warmup = 3 if batch_size == 1 else 1
                row = {"model": name, "batch": batch_size}
                for engine_name, seconds in time_engines(engines, batch, runs, warmup).items():
                    row[engine_name] = {"ms": round(seconds * 1000, 2), "images_per_s": round(batch_size / seconds, 1)}
                rows.append(row)
                cells = "".join(f"{row[e]['ms']:>22.1f}{row[e]['images_per_s']:>9.1f}" if e in row
                                else f"{'-':>22}{'-':>9}" for e in args.engines)
                print(f"{name:<24}{batch_size:>6}{cells}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine inflates every figure)")
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
