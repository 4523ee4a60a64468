"""Inference latency and throughput on this CPU, every engine x precision in one table.

For each model, one export (paddle.jit.save, then paddle2onnx; an OpenVINO int8 model calibrated by NNCF when
an int8 path is asked for) feeds every engine the same float32 batches, at each batch size, in one run:
dygraph, Paddle Inference fp32/bf16/int8, onnxruntime fp32, OpenVINO fp32/bf16/int8. An engine x precision that
is missing or refused on this CPU is a row with the one-line reason. The last row per model is what
predict.py/eval.py run by default here: the automatic choice (utils.inference.autoselect), made by its own
timed trial on a calibration batch. Latency is the median of the timed runs after warm-up (two passes, the
better one per engine); images/s is batch size / latency.
Weights are random (speed does not depend on them) except where ../shared/weights has a model's real ones
(EfficientNetLite0), so that the int8 calibration and the automatic choice's comparison with fp32 are real.
The table is markdown, for the README.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from utils.runtime import import_paddle_quietly, usable_cores

DEFAULT_MODELS = ("ResNet50_vd", "MobileNetV3_large_x1_0", "EfficientNetLite0")
# engine or engine-precision (a bare engine name is fp32)
PATHS = ("dygraph", "inference", "inference-bf16", "inference-int8", "onnxruntime", "openvino", "openvino-bf16",
         "openvino-int8")
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
SHARED_VAL = os.path.join(SHARED, "data", "imagenette", "val_list_in1k.txt")


@dataclass(frozen=True)
class Path:
    engine: str
    precision: str

    @staticmethod
    def parse(text: str) -> Path:
        engine, _, precision = text.partition("-")
        return Path(engine, precision or "fp32")


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


def time_engines(engines: dict, batch: np.ndarray, runs: int, warmup: int) -> dict:
    """Each engine timed in a block of consecutive calls (engines are not interleaved call by call:
    onnxruntime's, OpenVINO's and OpenMP's worker threads keep spinning briefly after a call and would slow
    whichever engine ran next). Two passes, the second in reverse order, keep each engine's better median, so
    load from other work on a shared machine is less likely to land on one engine only."""
    best: dict = {}
    for order in (list(engines), list(reversed(engines))):
        for key in order:
            time.sleep(0.2)  # let the previous engine's threads go idle
            seconds = time_block(engines[key], batch, runs, warmup)
            best[key] = min(best.get(key, seconds), seconds)
    return best


def sample_images(size: int, count: int, export_dir: str) -> tuple[np.ndarray, str]:
    """``count`` Imagenette validation images preprocessed as the export says (evenly spaced over
    ../shared's list), else random normal images when ../shared is absent; and what they are."""
    if not os.path.isfile(SHARED_VAL):
        images = np.random.default_rng(1).standard_normal((count, 3, size, size)).astype(np.float32)
        return images, f"random images ({SHARED_VAL} absent)"
    from utils.quantize import CalibrationOptions, calibration_images

    return calibration_images(export_dir, CalibrationOptions(SHARED_VAL, max_images=count)), \
        f"{count} Imagenette val images"


def build_engines(name: str, size: int, threads: int, workdir: str, paths: list[Path], calib_images: int):
    """The model's export and an engine per path; refused paths map to their one-line reason instead."""
    paddle = import_paddle_quietly()
    import models
    from utils.errors import UsageError
    from utils.export import export_onnx, missing_onnx_requirements, save_inference_model
    from utils.inference import DeviceOptions, DygraphEngine, load_export, short_error
    from utils.inference.selection import engine_for_export
    from utils.presets import preprocess_config

    paddle.seed(0)
    model = models.build_model(name)
    weights = real_weights(name)
    if weights:
        from utils.checkpoint import load_pretrained

        load_pretrained(model, weights, model_name=name)
    model.eval()
    cfg = preprocess_config(argparse.Namespace(model=name, image_shape=[3, size, size]))
    directory = save_inference_model(model, f"{workdir}/{name}", name, 1000, cfg)
    missing = missing_onnx_requirements()
    if not missing:
        export_onnx(directory)
    if any(p.precision == "int8" and p.engine == "openvino" for p in paths):
        # random weights: any calibration gives the same speed, so a few images do
        _calibrate_int8(directory, size, threads, calib_images if weights else min(calib_images, 32))
    deployed = load_export(directory)
    engines: dict[Path, object] = {}
    for path in paths:
        if path.engine == "dygraph":
            engines[path] = DygraphEngine(model) if path.precision == "fp32" else "dygraph runs fp32 only"
            continue
        try:
            engines[path] = engine_for_export(path.engine, deployed,
                                              DeviceOptions(cpu_threads=threads, precision=path.precision))
        except UsageError as err:
            engines[path] = str(err)
        except Exception as err:  # an engine that fails to build here is a row with the reason, not a crash
            engines[path] = short_error(err)
    return deployed, engines


def real_weights(name: str) -> str | None:
    """../shared's real ImageNet weights for ``name`` when there are some (the automatic choice's accuracy
    check means something only with them), else None: random weights, which measure speed just as well."""
    path = os.path.join(SHARED, "weights", f"{name}_pretrained.pdparams")
    return path if os.path.isfile(path) else None


def _calibrate_int8(directory: str, size: int, threads: int, count: int) -> None:
    """NNCF int8 model for OpenVINO from ``count`` images (speed does not depend on how well it is calibrated)."""
    from utils.inference.openvino_engine import openvino_available
    from utils.quantize import quantize_openvino

    if openvino_available():
        return  # the openvino-int8 row then carries that reason
    images, _ = sample_images(size, count, directory)
    quantize_openvino(directory, images, threads)


def auto_row_note(deployed, threads: int, built: dict, batch: np.ndarray, what: str) -> tuple[Path, str]:
    """What the automatic choice picks here, from its own trial on ``batch`` (reusing the engines ``built`` for
    the table), and the note saying how: its speed-up over Paddle Inference fp32, the candidates it did not
    keep because they differ from fp32."""
    from utils.inference import DeviceOptions
    from utils.inference.autoselect import run_trial
    from utils.inference.selection import engine_for_export

    def build(engine, deployed, options):
        ready = built.get(Path(engine, options.precision))
        return ready if ready is not None and not isinstance(ready, str) else engine_for_export(engine, deployed,
                                                                                                  options)

    choice, _ = run_trial(deployed, DeviceOptions(cpu_threads=threads), batch, build)
    rejected = [f"{t.engine} {t.precision} ({t.outcome.removeprefix('not kept: ')})" for t in choice.trials
                if t.outcome.startswith("not kept")]
    weights = "real weights" if real_weights(deployed.model) else "random weights, so its fp32 check means little"
    note = f"the default here: its own trial on {what} ({weights}), {choice.speedup:.1f}x inference fp32"
    return Path(choice.engine, choice.precision), note + (f"; not kept: {'; '.join(rejected)}" if rejected else "")


def cpu_line() -> str:
    from utils.cpu_features import cpu_features

    features = cpu_features()
    marks = {"avx512_bf16": features.has("avx512_bf16"), "amx": features.has("amx_bf16", "amx_int8", "amx_tile"),
             "vnni": features.has("avx512_vnni", "avx_vnni")}
    return f"CPU: {features.model}; " + ", ".join(f"{flag} {'yes' if ok else 'no'}" for flag, ok in marks.items())


def versions_line(paddle, threads: int, size: int) -> str:
    from importlib import metadata

    found = [f"Paddle {paddle.__version__}"]
    for package in ("onnxruntime", "openvino", "nncf"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return f"{', '.join(found)}; {threads} CPU threads; {size}x{size} float32"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmark.py infer", description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--engines", nargs="+", default=list(PATHS), choices=PATHS,
                        help="engine or engine-precision (a bare engine name is fp32)")
    parser.add_argument("--auto", action=argparse.BooleanOptionalAction, default=True,
                        help="add the automatic choice's row (its own timed trial per model)")
    parser.add_argument("--auto_images", type=int, default=16, help="the automatic choice's calibration batch")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=0, help="timed runs per case and pass (default: 20 at "
                                                           "batch 1, 3 at larger batches)")
    parser.add_argument("--calib_images", type=int, default=300,
                        help="images the int8 model of a model with real weights is calibrated on (else 32)")
    parser.add_argument("--cpu_threads", type=int, default=None, help="default: usable cores")
    parser.add_argument("--save_json_path", default=None, help="also write the table as JSON")
    args = parser.parse_args(argv)
    threads = args.cpu_threads or usable_cores()
    paddle = import_paddle_quietly()
    paths = [Path.parse(text) for text in args.engines]
    print(cpu_line())
    print(f"{versions_line(paddle, threads, args.image_size)}; median latency of timed runs; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print()
    header = ["model", "engine", "precision"] + [f"{label} {b}" for b in args.batch_sizes
                                                  for label in ("ms, batch", "images/s, batch")] + ["note"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows, reasons = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as workdir:
        for name in args.models:
            deployed, built = build_engines(name, args.image_size, threads, workdir, paths, args.calib_images)
            engines = {path: engine for path, engine in built.items() if not isinstance(engine, str)}
            figures: dict[Path, dict[int, float]] = {path: {} for path in engines}
            for batch_size in args.batch_sizes:
                batch = np.random.default_rng(0).standard_normal(
                    (batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
                runs = args.runs or (20 if batch_size == 1 else 3)
                for path, seconds in time_engines(engines, batch, runs, 3 if batch_size == 1 else 1).items():
                    figures[path][batch_size] = seconds
            for path, engine in built.items():
                note = ""
                if isinstance(engine, str):
                    number = reasons.setdefault(engine, len(reasons) + 1)
                    note = f"not run: see ({number})"
                rows.append(_row(name, path, figures.get(path, {}), args.batch_sizes, note))
            if args.auto:
                path, note = auto_row_note(deployed, threads, built,
                                           *sample_images(args.image_size, args.auto_images, deployed.directory))
                if path not in figures:
                    note += f"; not in this table's --engines: {path.engine}-{path.precision} was not timed here"
                rows.append(_row(name, Path(f"default: {path.engine}", path.precision), figures.get(path, {}),
                                 args.batch_sizes, note))
            for row in rows[-(len(built) + int(args.auto)):]:
                print(_markdown(row, args.batch_sizes), flush=True)
            del engines, built
    print()
    for reason, number in reasons.items():
        print(f"({number}) {reason}")
    print(f"load average after: {os.getloadavg()[0]:.1f} (the machine may be shared: other work inflates figures)")
    if args.save_json_path:
        with open(args.save_json_path, "w", encoding="utf-8") as handle:
            json.dump({"cpu": cpu_line(), "threads": threads, "rows": rows,
                       "reasons": {n: r for r, n in reasons.items()}}, handle, indent=1)
    return 0


def _row(model: str, path: Path, seconds: dict[int, float], batch_sizes: list[int], note: str) -> dict:
    row = {"model": model, "engine": path.engine, "precision": path.precision, "note": note}
    for b in batch_sizes:
        if b in seconds:
            row[f"batch {b}"] = {"ms": round(seconds[b] * 1000, 2), "images_per_s": round(b / seconds[b], 1)}
    return row


def _markdown(row: dict, batch_sizes: list[int]) -> str:
    cells = [row["model"], row["engine"], row["precision"]]
    for b in batch_sizes:
        figure = row.get(f"batch {b}")
        cells += [f"{figure['ms']:.1f}", f"{figure['images_per_s']:.1f}"] if figure else ["-", "-"]
    return "| " + " | ".join(cells + [row["note"]]) + " |"
