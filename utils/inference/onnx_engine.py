"""The export's ``inference.onnx`` run by onnxruntime on CPU.
"""
from __future__ import annotations

import os

import numpy as np

from utils.errors import ExportError, UsageError
from utils.inference.engine import Engine, as_numpy, same_topk


def onnx_available() -> str | None:
    """None when onnxruntime imports, else the reason it does not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        return f"onnxruntime is not installed ({err}); pip install -r requirements-onnx.txt"
    return None


class OnnxEngine:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, onnx_path: str, threads: int = 2, flag: str = "--inference_model"):
        reason = onnx_available()
        if reason:
            raise UsageError(reason)
        import onnxruntime as ort

        if not os.path.isfile(onnx_path):
            raise UsageError(f"{flag}: {onnx_path} not found; export it with infer.py --save_onnx=True")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: as_numpy(batch)})[0]


def check_onnx(onnx_path: str, reference: Engine, crop_size: int, topk: int = 5, threads: int = 2,
               batch: np.ndarray | None = None) -> float:
    """Run the ONNX model in onnxruntime next to ``reference``; returns the largest softmax difference."""
    if batch is None:
        batch = np.random.default_rng(0).standard_normal((2, 3, crop_size, crop_size)).astype(np.float32)
    onnx_out = OnnxEngine(onnx_path, threads, flag="--save_onnx")(batch)
    reference_out = reference(batch)
    if onnx_out.shape != reference_out.shape:
        raise ExportError(f"{onnx_path}: onnxruntime output shape {onnx_out.shape} != Paddle's {reference_out.shape}")
    agree, diff = same_topk(onnx_out, reference_out, topk)
    if not agree:
        raise ExportError(f"{onnx_path}: onnxruntime does not reproduce the Paddle model "
                          f"(top-{topk} differs or scores differ by {diff:.2e})")
    return diff
