"""The export run by OpenVINO's CPU plugin, from its ``inference.onnx`` (OpenVINO's Paddle frontend reads only
Paddle 2.6's ``.pdmodel`` programs, not Paddle 3's ``.json``, so ONNX is the one route for both).

Compiled once with a dynamic batch dimension: the CPU plugin infers each request's shapes itself, so batches
of any size (the short last one included) reuse the one compiled model.
"""
from __future__ import annotations

import os

import numpy as np

from utils.errors import UsageError
from utils.export_format import ONNX_FILE
from utils.inference.engine import as_numpy
from utils.inference.options import DeviceOptions, require_cpu_precision
from utils.inference.records import log

OPENVINO_REQUIREMENTS = "requirements-openvino.txt"
# INFERENCE_PRECISION_HINT per --precision. It must be given for fp32 too: on a CPU with AVX512-BF16/AMX the
# plugin's default is bf16. int8 models run their quantized layers in int8 and the others in f32.
_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def openvino_available() -> str | None:
    """None when openvino imports, else the reason it does not."""
    try:
        import openvino  # noqa: F401
    except ImportError as err:
        return f"OpenVINO is not installed ({err}); pip install -r {OPENVINO_REQUIREMENTS}"
    return None


def check_openvino_usable(options: DeviceOptions) -> None:
    """OpenVINO is installed, runs on the CPU, and the CPU runs ``options.precision`` well; else a UsageError."""
    reason = openvino_available()
    if reason:
        raise UsageError(reason)
    if options.use_gpu:
        raise UsageError("--engine openvino runs on the CPU here; pass --use_gpu=False")
    require_cpu_precision(options, "openvino")


class OpenVinoEngine:
    name = "openvino"

    def __init__(self, model_path: str, options: DeviceOptions | None = None, flag: str = "--inference_model"):
        options = options or DeviceOptions()
        check_openvino_usable(options)
        import openvino as ov

        core = ov.Core()
        try:
            model = core.read_model(model_path)
        except RuntimeError as err:
            first_line = next((line for line in str(err).splitlines() if line.strip()), "")[:200]
            raise UsageError(f"{flag}: OpenVINO cannot read {model_path} ({first_line}); export it again") from None
        _make_batch_dynamic(model)
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[options.precision],
            "INFERENCE_NUM_THREADS": max(1, options.cpu_threads),  # the suite's thread count, as the other engines
            # one stream using every thread on each request: the scripts run one batch at a time
            "PERFORMANCE_HINT": "LATENCY",
            # unpinned: the decode threads of predict.py (and other jobs) share these cores; measured on a shared
            # 2-core Xeon: pinned 1.1-1.5x slower (median) at batch 1 and 16
            "ENABLE_CPU_PINNING": False,
        })
        self.request = self.compiled.create_infer_request()
        self.precision = options.precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # share_outputs=False: the logits are copied out of the request's buffer, which the next batch reuses
        return self.request.infer({0: as_numpy(batch)}, share_outputs=False)[0]


def _make_batch_dynamic(model) -> None:
    """An input with a fixed batch (e.g. a converted classic export) gets a dynamic one."""
    import openvino as ov

    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_static and len(shape) == 4 and shape[0].is_static:
            shape[0] = ov.Dimension()
            shapes[port] = shape
    if shapes:
        model.reshape(shapes)


def onnx_for_openvino(directory: str, flag: str = "--inference_model") -> str:
    """The export's inference.onnx; when it is missing it is converted once, written beside the export
    (utils.export.export_onnx) and checked against Paddle Inference in onnxruntime, as infer.py --save_onnx does."""
    path = os.path.join(directory, ONNX_FILE)
    if os.path.isfile(path):
        return path
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{flag} {directory}: no {ONNX_FILE}, which --engine openvino reads, and the folder is not "
                         "writable; export with infer.py --save_inference=True --save_onnx=True")
    from utils.export import export_onnx, missing_onnx_requirements
    from utils.export_format import load_export

    missing = missing_onnx_requirements()
    if missing:
        raise UsageError(f"{flag} {directory}: no {ONNX_FILE}, which --engine openvino reads, and converting it needs "
                         f"{', '.join(missing)}: pip install -r requirements-onnx.txt, or export with "
                         "infer.py --save_inference=True --save_onnx=True")
    from utils.inference.onnx_engine import check_onnx
    from utils.inference.paddle_engine import PaddleInferenceEngine

    log(f"--engine openvino: {directory} has no {ONNX_FILE}; converting it once (paddle2onnx) and writing it there")
    export_onnx(directory)
    deployed = load_export(directory, flag)
    try:
        diff = check_onnx(path, PaddleInferenceEngine(directory, flag=flag), deployed.preprocess.crop_size)
    except Exception:
        os.remove(path)  # a conversion that does not reproduce the model must not be picked up next time
        raise
    log(f"wrote {path}; onnxruntime matches Paddle Inference (max score difference {diff:.1e})")
    return path
