"""predict.py's classic form: ``--model_file=.../model --params_file=.../params`` (the classic suite's inference
export: a Fluid ProgramDesc and its combined parameters, with no preprocessing description) or the same flags
naming the files of one of this suite's exports.

A classic export carries no preprocessing: it comes from ``--model`` (that model's input size, resize,
interpolation, mean/std) or from the flags (``--image_shape``, ``--resize_short_size``, ``--image_mean``,
``--image_std``), defaulting to the classic predict.py's: resize 256, centre crop 224, ImageNet mean/std.
"""
from __future__ import annotations

import os
import re

import numpy as np

from utils.errors import UsageError
from utils.inference import (
    DEPLOY_JSON,
    DeviceOptions,
    ExportedModel,
    InferenceLoadError,
    PaddleInferenceEngine,
    label_names,
    load_export,
    log,
    read_class_map,
)
from utils.transforms import PreprocessConfig, interpolation_name

CLASSIC_FLAGS = ("--model_file", "--params_file")


def check_model_flags(args) -> None:
    """--inference_model DIR, or both --model_file and --params_file."""
    given = [flag for flag in CLASSIC_FLAGS if getattr(args, flag[2:])]
    if args.inference_model and given:
        raise UsageError(f"--inference_model and {' '.join(given)}: give the export directory or the two files")
    if not args.inference_model and len(given) != 2:
        raise UsageError("give --inference_model DIR (an export of infer.py --save_inference=True), or "
                         "--model_file and --params_file (the classic form, e.g. ResNet50_vd/model and "
                         "ResNet50_vd/params)")
    for flag in given:
        if not os.path.isfile(getattr(args, flag[2:])):
            raise UsageError(f"{flag} {getattr(args, flag[2:])}: no such file")


def is_own_export(model_file: str) -> bool:
    """The files of one of this suite's exports: the folder has its preprocessing description."""
    return os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(model_file)), DEPLOY_JSON))


def classic_preprocess(args) -> PreprocessConfig:
    """--model's preprocessing when given (with the flags overriding), else the classic predict.py's."""
    if args.model:
        from utils.presets import preprocess_config

        return preprocess_config(args)
    cfg = PreprocessConfig()
    if args.image_shape:
        cfg.crop_size = args.image_shape[1]
        cfg.resize_short = args.resize_short_size or round(cfg.crop_size * 256 / 224)
    elif args.resize_short_size:
        cfg.resize_short = args.resize_short_size
    if cfg.resize_short < cfg.crop_size:
        raise UsageError(f"--resize_short_size {cfg.resize_short} is smaller than the crop {cfg.crop_size}")
    try:
        cfg.interpolation = interpolation_name(args.interpolation) or cfg.interpolation
    except ValueError as err:
        raise UsageError(str(err)) from None
    cfg.mean = tuple(args.image_mean) if args.image_mean else cfg.mean
    cfg.std = tuple(args.image_std) if args.image_std else cfg.std
    return cfg


def load_classic(args, options: DeviceOptions) -> tuple[ExportedModel, PaddleInferenceEngine]:
    """The export named by --model_file/--params_file and its Paddle Inference engine."""
    files = (args.model_file, args.params_file)
    directory = os.path.dirname(os.path.abspath(args.model_file))
    if is_own_export(args.model_file):
        deployed = load_export(directory, "--model_file")
    else:
        deployed = ExportedModel(directory, args.model or "classic export", 0, classic_preprocess(args), None)
    try:
        engine = PaddleInferenceEngine(directory, options, "--model_file", files=files)
    except InferenceLoadError as err:
        import paddle

        reason = re.search(r"\((.+)\); the export", str(err))
        raise UsageError(f"Paddle {paddle.__version__} Inference cannot load {args.model_file} + {args.params_file}"
                         f"{' (' + reason.group(1) + ')' if reason else ''}: run predict.py under Paddle 2.6 "
                         "(requirements-paddle26.txt), or convert the classic weights (python -m utils.fluid_weights) "
                         "and export them with infer.py --save_inference=True") from None
    if not deployed.class_dim:
        cfg = deployed.preprocess
        # a classic export says nothing about its classes: one blank image tells (the logits' width)
        deployed.class_dim = int(engine(np.zeros((1, 3, cfg.crop_size, cfg.crop_size), np.float32)).shape[-1])
        deployed.labels = label_names(None, deployed.class_dim)
    if args.class_map_path:
        deployed.labels = read_class_map(args.class_map_path, deployed.class_dim)
    source = "the export's" if is_own_export(args.model_file) else \
        (f"--model {args.model}'s" if args.model else "the classic predict.py's")
    log(f"{args.model_file} + {args.params_file}: {source} preprocessing (resize {deployed.preprocess.resize_short}, "
        f"crop {deployed.preprocess.crop_size}), {deployed.class_dim} classes")
    return deployed, engine
