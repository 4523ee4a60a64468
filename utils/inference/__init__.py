"""Deployment-side inference: image inputs, label maps, the engines that turn a batch into logits, and
the JSON records infer.py and predict.py print.

Engines share one interface (:class:`~utils.inference.engine.Engine`): a ``name`` and ``engine(batch)``, a
float32 NCHW numpy batch to numpy logits. One module per engine:

- ``dygraph_engine``: the paddle.nn.Layer itself (needs the model code).
- ``paddle_engine``: an export run by the Paddle Inference API: oneDNN on CPU, or a GPU, optionally with
  TensorRT.
- ``onnx_engine``: the export's ONNX file run by onnxruntime.
- ``openvino_engine``: the export's ONNX file (or its calibrated ``int8/`` model) run by OpenVINO.
- ``engine.VerifiedEngine``: the default for a dygraph model on CPU: runs the first batch through a fast
  engine and the reference, and keeps the fast one only when both give the same top-k.
- ``autoselect``: the default for an export on CPU: the fastest engine x precision whose outputs match
  Paddle Inference fp32 on the run's first images, chosen once per kind of machine and cached beside the export.

The export directory's layout (:mod:`utils.export_format`) is shared with the exporter, :mod:`utils.export`.
This package's namespace re-exports what the scripts use.
"""
from utils.export_format import (
    DEPLOY_JSON,
    EXPORT_PREFIX,
    LABELS_FILE,
    ONNX_FILE,
    ExportedModel,
    check_temperature,
    load_export,
    model_files,
)
from utils.inference.batching import Batch, classify, decode_threads, iter_batches
from utils.inference.dygraph_engine import DygraphEngine
from utils.inference.engine import (
    SCORE_TOLERANCE,
    Engine,
    NonFiniteOutput,
    VerifiedEngine,
    as_numpy,
    engine_fallback,
    require_finite,
    same_topk,
    short_error,
)
from utils.inference.inputs import IMAGE_EXTENSIONS, ImageItem, collect_images, eval_accumulator, read_image_list
from utils.inference.labels import DEFAULT_CLASS_MAP, IMAGENET_CLASSES, check_topk, label_names, read_class_map
from utils.inference.onnx_engine import OnnxEngine, onnx_available
from utils.inference.options import PRECISIONS, DeviceOptions, inference_options
from utils.inference.paddle_engine import InferenceLoadError, PaddleInferenceEngine
from utils.inference.records import (
    emit_results,
    format_record,
    log,
    records_json,
    softmax,
    summarize,
    topk_records,
    write_json,
)
from utils.inference.selection import (
    engine_for_export,
    engine_for_model,
    exported_for_eval,
    load_model,
)

__all__ = [
    "Batch", "classify", "decode_threads", "iter_batches", "DygraphEngine", "SCORE_TOLERANCE", "Engine",
    "NonFiniteOutput", "VerifiedEngine", "as_numpy", "engine_fallback", "require_finite", "same_topk", "short_error",
    "DEPLOY_JSON", "EXPORT_PREFIX", "LABELS_FILE", "ONNX_FILE", "ExportedModel", "check_temperature", "load_export",
    "model_files", "IMAGE_EXTENSIONS", "ImageItem", "collect_images", "eval_accumulator", "read_image_list",
    "DEFAULT_CLASS_MAP", "IMAGENET_CLASSES", "check_topk", "label_names", "read_class_map", "OnnxEngine",
    "onnx_available", "PRECISIONS", "DeviceOptions", "inference_options", "InferenceLoadError",
    "PaddleInferenceEngine", "emit_results", "format_record", "log", "records_json", "softmax", "summarize",
    "topk_records", "write_json", "engine_for_export", "engine_for_model", "exported_for_eval", "load_model",
]
