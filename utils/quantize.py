"""Post-training int8 quantization of an export, calibrated on a list of images, written once into
``<export>/int8/`` and loaded by ``--engine openvino --precision int8``.

    python -m utils.quantize --inference_model output/ResNet50_vd --calib_list calib.txt

The tool is NNCF (``nncf.quantize``, its default "performance" preset: symmetric int8 weights and
activations, activation ranges from statistics over the calibration images, fast bias correction; target CPU)
on the export's ``inference.onnx``, saved as OpenVINO IR. The calibration images get the export's own preprocessing
(``preprocess.json``), and the command reports how often the int8 model's top-1 equals fp32's on them.

Paddle Inference int8 is not offered: see :data:`PADDLE_INT8_REFUSAL` for what was measured.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from utils.errors import UsageError

INT8_DIR = "int8"
OPENVINO_INT8 = "openvino.xml"  # with openvino.bin beside it (openvino.save_model)
CALIBRATION_JSON = "calibration.json"  # what the int8 model was calibrated on, and its agreement with fp32
INT8_ENGINES = ("openvino",)
DEFAULT_MAX_IMAGES = 300  # NNCF's default subset_size: what its docs call a representative calibration set

# Paddle Inference int8 was tried (paddle.static.quantization.PostTrainingQuantization, then Config.enable_onednn_int8)
# and left out. It needs the legacy .pdmodel program, which a Paddle 3 export (PIR .json) cannot be turned back
# into without the model code (only an export written under FLAGS_enable_pir_api=0 works). Measured here (Intel
# Xeon, AVX512-VNNI, no AMX; 2 shared cores, min of repeated runs, noisy), batch 1 / 16: ResNet50_vd (random
# weights) fp32 92 / 1667 ms, its int8 27 / 456 ms, OpenVINO int8 23 / 396 ms; EfficientNetLite0 fp32
# 65 / 597 ms, its int8 92 / 703 ms (slower than fp32), OpenVINO int8 25 / 285 ms.
PADDLE_INT8_REFUSAL = (
    "--engine inference --precision int8 is not offered: Paddle's post-training quantization needs the legacy "
    ".pdmodel program that Paddle 3 exports no longer write, and measured here it was slower than fp32 on "
    "EfficientNetLite0 and slower than OpenVINO int8 on ResNet50_vd (see README); int8 runs on --engine openvino "
    "--precision int8")


@dataclass
class CalibrationOptions:
    calib_list: str
    engines: tuple[str, ...] = INT8_ENGINES
    max_images: int = DEFAULT_MAX_IMAGES  # evenly spaced over the list when it has more
    threads: int = 2


@dataclass
class CalibrationResult:
    engine: str
    path: str
    images: int
    top1_agreement: float  # fraction of the calibration images where int8 and fp32 give the same top-1
    seconds: float


def int8_model(export_dir: str, engine: str) -> str:
    """The int8 model of ``engine`` beside the export; a UsageError naming the command that makes it when it is
    missing or older than the export's parameters."""
    if engine not in INT8_ENGINES:
        raise UsageError(PADDLE_INT8_REFUSAL if engine == "inference" else
                         f"--engine {engine} --precision int8: int8 runs on --engine openvino")
    from utils.export_format import EXPORT_PREFIX

    path = os.path.join(export_dir, INT8_DIR, OPENVINO_INT8)
    make = f"python -m utils.quantize --inference_model {export_dir} --calib_list LIST"
    if not os.path.isfile(path) or not os.path.isfile(os.path.splitext(path)[0] + ".bin"):
        raise UsageError(f"{export_dir}: no int8 model ({INT8_DIR}/{OPENVINO_INT8}); calibrate it with: {make} "
                         "(a few hundred 'path [label]' images)")
    params = os.path.join(export_dir, EXPORT_PREFIX + ".pdiparams")
    if os.path.isfile(params) and os.stat(path).st_mtime_ns < os.stat(params).st_mtime_ns:
        raise UsageError(f"{path} is older than {params}: the model was exported again after calibration; "
                         f"calibrate again with: {make}")
    return path


def parse_engines(text: str) -> tuple[str, ...]:
    engines = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in engines:
        if name == "inference":
            raise UsageError(f"--engines inference: {PADDLE_INT8_REFUSAL}")
        if name not in INT8_ENGINES:
            raise UsageError(f"--engines {name!r}: int8 models are made for {', '.join(INT8_ENGINES)}")
    if not engines:
        raise UsageError(f"--engines {text!r}: name at least one of {', '.join(INT8_ENGINES)}")
    return engines


def check_calib_list(calib_list: str, exporting: bool) -> None:
    """infer.py's --calib_list, checked before the model loads: it calibrates the export being written."""
    if not exporting:
        raise UsageError(f"--calib_list {calib_list}: calibrates an export; add --save_inference=True (or run "
                         "python -m utils.quantize --inference_model DIR --calib_list LIST on an existing export)")
    if not os.path.isfile(calib_list):
        raise UsageError(f"--calib_list {calib_list}: no such list file ('path [label]' lines)")


def calibration_images(export_dir: str, options: CalibrationOptions) -> np.ndarray:
    """The calibration list's images (at most ``max_images``, evenly spaced) preprocessed as the export's
    preprocess.json says: float32 NCHW. An unreadable image is an error naming it."""
    from utils.export_format import load_export
    from utils.inference.batching import iter_batches
    from utils.inference.inputs import read_image_list

    if options.max_images < 1:
        raise UsageError(f"--calib_images {options.max_images}: must be >= 1")
    items = read_image_list(options.calib_list, "--calib_list")
    if len(items) > options.max_images:
        step = len(items) / options.max_images
        items = [items[int(n * step)] for n in range(options.max_images)]
    arrays = []
    for batch in iter_batches(items, load_export(export_dir).preprocess, 32, options.threads):
        bad = [error for _, error in batch.entries if error is not None]
        if bad:
            raise UsageError(f"--calib_list {options.calib_list}: {bad[0]}; fix or remove that line")
        arrays.append(batch.images)
    return np.concatenate(arrays)


def quantize_openvino(export_dir: str, images: np.ndarray, threads: int) -> CalibrationResult:
    """NNCF post-training quantization of the export's inference.onnx into int8/openvino.xml."""
    from utils.export import _quiet_stdout
    from utils.inference.openvino_engine import (
        OPENVINO_REQUIREMENTS,
        OpenVinoEngine,
        onnx_for_openvino,
        openvino_available,
    )
    from utils.inference.options import DeviceOptions

    reason = openvino_available()
    if reason:
        raise UsageError(reason)
    try:
        import nncf
    except ImportError as err:
        raise UsageError(f"int8 calibration needs NNCF ({err}); pip install -r {OPENVINO_REQUIREMENTS}") from None
    import openvino as ov

    started = time.perf_counter()
    onnx_path = onnx_for_openvino(export_dir, "--inference_model")
    model = ov.Core().read_model(onnx_path)
    # one image per item: NNCF collects its range statistics per sample (its docs' calibration datasets)
    dataset = nncf.Dataset([images[n:n + 1] for n in range(len(images))])
    with _quiet_stdout():  # NNCF draws progress bars on stdout, which the scripts keep for JSON
        quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                                  target_device=nncf.TargetDevice.CPU, subset_size=len(images))
    target = os.path.join(export_dir, INT8_DIR, OPENVINO_INT8)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    ov.save_model(quantized, target)  # compresses the weights to int8 in the .bin
    seconds = time.perf_counter() - started
    # The int8 model compiled as the engine does (f32 hint: the quantized layers run int8, the rest f32), but
    # built with precision fp32 so that calibrating also works on a CPU that will refuse to serve int8.
    options = DeviceOptions(cpu_threads=threads, precision="fp32")
    fp32, int8 = OpenVinoEngine(onnx_path, options), OpenVinoEngine(target, options)
    same = sum(int((fp32(chunk).argmax(1) == int8(chunk).argmax(1)).sum())
               for chunk in np.array_split(images, max(1, len(images) // 16)))
    return CalibrationResult("openvino", target, len(images), same / len(images), seconds)


_QUANTIZERS = {"openvino": quantize_openvino}


def calibrate(export_dir: str, options: CalibrationOptions) -> list[CalibrationResult]:
    """Write the int8 model of every engine in ``options.engines`` and ``int8/calibration.json``."""
    from utils.cpu_features import int8_support
    from utils.inference.records import log

    images = calibration_images(export_dir, options)
    log(f"calibrating on {len(images)} images from {options.calib_list}")
    results = [_QUANTIZERS[engine](export_dir, images, options.threads) for engine in options.engines]
    import nncf

    record = {
        "calib_list": os.path.abspath(options.calib_list),
        "images": len(images),
        "tool": f"nncf {nncf.__version__} quantize, preset performance, target CPU",
        "models": {r.engine: {"path": os.path.relpath(r.path, export_dir), "top1_agreement_with_fp32":
                              round(r.top1_agreement, 4)} for r in results},
    }
    with open(os.path.join(export_dir, INT8_DIR, CALIBRATION_JSON), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
        handle.write("\n")
    for r in results:
        log(f"wrote {r.path} ({r.engine} int8, {r.seconds:.0f} s): top-1 equals fp32's on "
            f"{r.top1_agreement:.1%} of the {r.images} calibration images")
    reason = int8_support()
    if reason:
        log(f"note: {reason}; the int8 model written here is for CPUs with VNNI or AMX-INT8")
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m utils.quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inference_model", required=True, help="the export (infer.py --save_inference=True)")
    parser.add_argument("--calib_list", required=True,
                        help="calibration images: 'path [label]' lines (relative to the list's folder)")
    parser.add_argument("--calib_images", type=int, default=DEFAULT_MAX_IMAGES,
                        help="use at most this many images of the list, evenly spaced")
    parser.add_argument("--engines", default=",".join(INT8_ENGINES),
                        help="comma-separated engines to make int8 models for (openvino)")
    parser.add_argument("--cpu_threads", type=int, default=None, help="default: the usable cores")
    return parser


def main(argv: list[str]) -> int:
    from utils.export_format import load_export
    from utils.runtime import usable_cores

    args = build_parser().parse_args(argv)
    load_export(args.inference_model)
    options = CalibrationOptions(args.calib_list, parse_engines(args.engines), args.calib_images,
                                 args.cpu_threads or usable_cores())
    calibrate(args.inference_model, options)
    return 0


if __name__ == "__main__":
    from utils.cli import run

    run(main)
