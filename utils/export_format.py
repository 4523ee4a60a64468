"""The export directory's layout, shared by the exporter (utils.export) and the engines that read it
(utils.inference):
``inference.json`` (Paddle 3) or ``inference.pdmodel`` (2.6) with ``inference.pdiparams``, ``preprocess.json``
(model name, class_dim, the :class:`~utils.transforms.PreprocessConfig`, temperature), ``labels.txt`` and,
optionally, ``inference.onnx``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from utils.errors import UsageError
from utils.transforms import PreprocessConfig

EXPORT_PREFIX = "inference"
DEPLOY_JSON = "preprocess.json"
LABELS_FILE = "labels.txt"
ONNX_FILE = "inference.onnx"


def model_files(directory: str, flag: str = "--inference_model") -> tuple[str, str]:
    """The program file (``.json`` on Paddle 3, ``.pdmodel`` on 2.6) and the parameters of an export."""
    params = os.path.join(directory, EXPORT_PREFIX + ".pdiparams")
    for ext in (".json", ".pdmodel"):
        program = os.path.join(directory, EXPORT_PREFIX + ext)
        if os.path.isfile(program) and os.path.isfile(params):
            return program, params
    raise UsageError(f"{flag} {directory}: no exported model ({EXPORT_PREFIX}.json or {EXPORT_PREFIX}.pdmodel "
                     f"with {EXPORT_PREFIX}.pdiparams); export one with infer.py --save_inference=True")


@dataclass
class ExportedModel:
    directory: str
    model: str
    class_dim: int
    preprocess: PreprocessConfig
    labels: list[str] | None
    temperature: float = 1.0  # scores are softmax(logits / temperature)


def load_export(directory: str, flag: str = "--inference_model") -> ExportedModel:
    """Read ``preprocess.json`` (and ``labels.txt``) of an export made by infer.py --save_inference."""
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {directory}: no such directory")
    model_files(directory, flag)
    meta_path = os.path.join(directory, DEPLOY_JSON)
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        class_dim = int(meta["class_dim"])
        cfg = PreprocessConfig.from_dict(meta["preprocess"])
        temperature = float(meta.get("temperature", 1.0))
    except OSError as err:
        raise UsageError(f"{flag} {directory}: cannot read {DEPLOY_JSON} ({err.strerror or err}); "
                         "re-export with infer.py --save_inference=True") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{meta_path}: not a valid export description ({type(err).__name__}: {err})") from None
    labels_path = os.path.join(directory, LABELS_FILE)
    from utils.inference.labels import read_class_map

    labels = read_class_map(labels_path, class_dim, "exported labels") if os.path.isfile(labels_path) else None
    check_temperature(temperature, f"{meta_path}: \"temperature\"")
    return ExportedModel(directory, str(meta.get("model", "?")), class_dim, cfg, labels, temperature)


def check_temperature(temperature: float, flag: str = "--temperature") -> None:
    if not (np.isfinite(temperature) and temperature > 0):
        raise UsageError(f"{flag} {temperature}: must be a positive number (eval.py's \"temperature\"; 1 leaves "
                         "the scores as they are)")
