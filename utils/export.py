"""Export a dygraph model for deployment: paddle.jit.save with a dynamic batch, the preprocessing JSON and
the labels beside it, and optionally ONNX through paddle2onnx (checked by running it in onnxruntime).

An export directory ``<model_save_dir>/<model>/`` holds:

- ``inference.json`` + ``inference.pdiparams`` (Paddle 3; Paddle 2.6 writes ``inference.pdmodel``),
- ``preprocess.json``: ``{"model", "class_dim", "input_shape", "preprocess": PreprocessConfig}``,
- ``labels.txt``: ``index name`` lines (when the class names are known),
- ``inference.onnx`` with ``--save_onnx=True``.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict

from utils.errors import ExportError
from utils.export_format import DEPLOY_JSON, EXPORT_PREFIX, LABELS_FILE, ONNX_FILE, model_files
from utils.transforms import PreprocessConfig

ONNX_OPSET = 13
# paddle2onnx imports these lazily and, when they are missing, pip-installs them from the network at the
# first conversion; requirements-onnx.txt lists them so that never happens.
ONNX_REQUIREMENTS = ("paddle2onnx", "onnx", "onnxruntime", "onnx_graphsurgeon", "sympy")


def _eval_fields(cfg: PreprocessConfig) -> dict:
    """The preprocessing a deployed model needs (training-only augmentation left out)."""
    data = asdict(cfg)
    keep = ("crop_size", "resize_short", "interpolation", "mean", "std")
    return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items() if key in keep}


def save_inference_model(model, directory: str, model_name: str, class_dim: int, cfg: PreprocessConfig,
                         labels: list[str] | None = None, temperature: float = 1.0) -> str:
    """paddle.jit.save the model (input ``x``: float32 [N, 3, crop, crop], N dynamic) plus its JSON and labels;
    ``temperature`` (infer.py --temperature) is stored for predict.py's scores."""
    import paddle

    os.makedirs(directory, exist_ok=True)
    for stale in (EXPORT_PREFIX + ".json", EXPORT_PREFIX + ".pdmodel", ONNX_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, stale))
    model.eval()
    spec = paddle.static.InputSpec([None, 3, cfg.crop_size, cfg.crop_size], "float32", "x")
    with _quiet_stdout():
        paddle.jit.save(model, os.path.join(directory, EXPORT_PREFIX), input_spec=[spec])
    meta = {
        "model": model_name,
        "class_dim": class_dim,
        "input_shape": [3, cfg.crop_size, cfg.crop_size],
        "input_name": "x",
        "output": "logits (softmax is applied by the caller)",
        "temperature": temperature,  # callers show softmax(logits / temperature)
        "paddle_version": paddle.__version__,
        "preprocess": _eval_fields(cfg),
    }
    with open(os.path.join(directory, DEPLOY_JSON), "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=1)
        handle.write("\n")
    labels_path = os.path.join(directory, LABELS_FILE)
    if labels:
        with open(labels_path, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{index} {name}\n" for index, name in enumerate(labels))
    elif os.path.exists(labels_path):
        os.remove(labels_path)
    model_files(directory, "export")  # fails loudly if jit.save wrote something unexpected
    return directory


def convert_in_memory(model, cfg: PreprocessConfig) -> str:
    """Export into a temporary directory (removed at exit) for ``--engine inference`` without --save_inference."""
    directory = tempfile.mkdtemp(prefix="paddle-inference-")
    atexit.register(shutil.rmtree, directory, True)
    return save_inference_model(model, directory, "", 0, cfg)


@contextlib.contextmanager
def _quiet_stdout():
    """Send file descriptor 1 to stderr for a while: converters print progress from C++, and stdout is
    reserved for the JSON results."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def missing_onnx_requirements() -> list[str]:
    return [name for name in ONNX_REQUIREMENTS if importlib.util.find_spec(name) is None]


def export_onnx(directory: str, opset: int = ONNX_OPSET) -> str:
    """Convert the export in ``directory`` to ``inference.onnx`` with paddle2onnx; returns its path."""
    missing = missing_onnx_requirements()
    if missing:
        raise ExportError(f"--save_onnx=True needs {', '.join(missing)}: pip install -r requirements-onnx.txt")
    import paddle2onnx

    program, params = model_files(directory, "--save_onnx")
    target = os.path.join(directory, ONNX_FILE)
    with contextlib.suppress(FileNotFoundError):
        os.remove(target)
    with _quiet_stdout():
        try:
            paddle2onnx.export(program, params, save_file=target, opset_version=opset, enable_onnx_checker=True)
        except Exception as err:  # paddle2onnx logs its own failure, then fails on an unset result
            raise ExportError(f"--save_onnx: paddle2onnx could not convert {program} ({type(err).__name__}: {err}); "
                              "see the paddle2onnx log above") from None
    if not os.path.isfile(target) or os.path.getsize(target) == 0:
        raise ExportError(f"--save_onnx: paddle2onnx wrote no {target}; see its log above")
    if program.endswith(".json"):
        fix_pad_values(target, pad_values(program))
    return target


def pad_values(program_json: str) -> list[float]:
    """The fill value of every constant-mode pad op of a Paddle 3 (PIR) program, in program order."""
    with open(program_json, encoding="utf-8") as handle:
        program = json.load(handle)
    found: list[float] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if str(node.get("#", "")).endswith((".pad3d", ".pad")):
                attrs = {a.get("N"): a.get("AT", {}).get("D") for a in node.get("A", [])}
                if attrs.get("mode", "constant") == "constant":
                    found.append(float(attrs.get("pad_value", attrs.get("value", 0.0)) or 0.0))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(program)
    return found


def fix_pad_values(onnx_path: str, values: list[float]) -> int:
    """Give every constant-mode ONNX Pad the fill value of its Paddle pad op; returns how many were set.

    paddle2onnx 2.1 does not read the float64 ``pad_value`` attribute of Paddle 3's pad3d op: the Pad it
    writes fills with whatever that memory held (seen: 0, 7e31), which silently changes models with
    asymmetric 'SAME' padding (EfficientNet). The checked export must not depend on that.
    """
    import onnx
    from onnx import helper

    model = onnx.load(onnx_path)
    pads = [node for node in model.graph.node if node.op_type == "Pad" and _pad_mode(node) == "constant"]
    if not pads:
        return 0
    if len(set(values)) == 1:
        values = values[:1] * len(pads)
    if len(values) != len(pads):
        raise ExportError(f"{onnx_path}: {len(pads)} constant Pad nodes but {len(values)} Paddle pad ops; "
                          "cannot restore their fill values")
    for index, (node, value) in enumerate(zip(pads, values)):
        name = f"pad_fill_value_{index}"
        model.graph.initializer.append(helper.make_tensor(name, onnx.TensorProto.FLOAT, [], [value]))
        while len(node.input) < 3:
            node.input.append("")
        node.input[2] = name
    onnx.checker.check_model(model)
    onnx.save(model, onnx_path)
    return len(pads)


def _pad_mode(node) -> str:
    for attribute in node.attribute:
        if attribute.name == "mode":
            return attribute.s.decode()
    return "constant"
