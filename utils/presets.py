"""Preprocessing settings for a run: flags override, the model's metadata fills the rest."""
from __future__ import annotations

import argparse

from models import get_model_meta
from utils.errors import UsageError
from utils.transforms import PreprocessConfig, interpolation_name


def preprocess_config(args: argparse.Namespace, training: bool = False) -> PreprocessConfig:
    meta = get_model_meta(args.model)
    shape = getattr(args, "image_shape", None)
    crop = shape[1] if shape else meta.input_size
    if shape and shape[1] != shape[2]:
        raise UsageError(f"--image_shape {shape}: only square inputs are supported (H == W)")
    resize = getattr(args, "resize_short_size", None)
    if resize is None:
        # keep the model's crop/resize proportion when only the input size was changed
        resize = meta.resize_short if crop == meta.input_size else round(crop * meta.resize_short / meta.input_size)
    try:
        interpolation = interpolation_name(getattr(args, "interpolation", None)) or meta.interpolation
    except ValueError as err:
        raise UsageError(str(err)) from None
    if resize < crop:
        raise UsageError(f"--resize_short_size {resize} is smaller than the crop {crop} (--image_shape)")
    if crop < meta.min_input_size:
        raise UsageError(f"--image_shape {crop}x{crop}: {args.model} needs inputs of at least "
                         f"{meta.min_input_size}x{meta.min_input_size} (smaller ones give no finite output)")
    cfg = PreprocessConfig(
        crop_size=crop,
        resize_short=resize,
        interpolation=interpolation,
        mean=tuple(args.image_mean) if getattr(args, "image_mean", None) else tuple(meta.mean),
        std=tuple(args.image_std) if getattr(args, "image_std", None) else tuple(meta.std),
    )
    if training:
        cfg.lower_scale, cfg.lower_ratio, cfg.upper_ratio = args.lower_scale, args.lower_ratio, args.upper_ratio
        cfg.random_flip = args.random_flip
        cfg.rotate_degrees, cfg.color_jitter, cfg.use_aa = args.rotate_degrees, args.color_jitter, args.use_aa
        cfg.use_randaugment, cfg.randaugment_n, cfg.randaugment_m = (args.use_randaugment, args.randaugment_n,
                                                                       args.randaugment_m)
        if not 0 < cfg.lower_scale <= 1 or not 0 < cfg.lower_ratio <= cfg.upper_ratio:
            raise UsageError("--lower_scale must be in (0, 1] and 0 < --lower_ratio <= --upper_ratio")
    return cfg


def model_options(args: argparse.Namespace) -> dict:
    """Family options given on the command line (unset ones are left to the model's defaults)."""
    names = ("padding_type", "use_se", "drop_connect_rate", "deploy")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def build_model_from_args(args: argparse.Namespace, class_dim: int):
    """The model named by --model with its family options and --data_format applied."""
    import models
    from models.layout import LayoutError, convert_to_nhwc

    model = models.build_model(args.model, class_dim=class_dim, **model_options(args))
    if getattr(args, "data_format", "NCHW") == "NHWC":
        try:
            convert_to_nhwc(model, args.model)
        except LayoutError as err:
            raise UsageError(str(err)) from None
    return model


def load_trained_model(args: argparse.Namespace, fallback_class_dim: int, log=print):
    """``--model`` with ``--pretrained_model`` loaded (required): the evaluation/inference model.

    class_dim: ``--class_dim``, else what the weights' classifier was trained for, else the fallback.
    Returns ``(model, class_dim)``.
    """
    from models import get_model_meta
    from utils.checkpoint import class_dim_of_weights, load_pretrained

    if not args.pretrained_model:
        raise UsageError("--pretrained_model is required: random weights measure and predict nothing")
    classifier = get_model_meta(args.model).classifier
    class_dim = args.class_dim or class_dim_of_weights(args.pretrained_model, classifier) or fallback_class_dim
    model = build_model_from_args(args, class_dim)
    report = load_pretrained(model, args.pretrained_model, model_name=args.model)
    refuse_partial_weights(report, args.pretrained_model, args.model, classifier)
    log(f"weights: {report.summary()}")
    return model, class_dim


def _in_classifier(key: str, classifier: tuple[str, ...]) -> bool:
    return any(key.startswith(prefix + ".") for prefix in classifier)


def refuse_partial_weights(report, path: str, model_name: str, classifier: tuple[str, ...]) -> None:
    """Evaluation and inference need every tensor of the model from the file: anything else would report
    results of partly random weights. Says whether the file looks like another architecture or another
    class count."""
    body_mismatch = [k for k in report.shape_mismatch if not _in_classifier(k, classifier)]
    if body_mismatch:
        raise UsageError(f"--pretrained_model {path}: {len(body_mismatch)} tensors outside the classifier differ in "
                         f"shape (e.g. {', '.join(body_mismatch[:3])})"
                         + (f" and {len(report.missing)} are missing" if report.missing else "")
                         + f": these are weights of another architecture than --model {model_name}; give the "
                         "--model they were trained as")
    if report.missing:
        raise UsageError(f"--pretrained_model {path}: {len(report.missing)} of --model {model_name}'s tensors are "
                         f"not in the file (e.g. {', '.join(report.missing[:3])}); they would stay random: is it "
                         "a complete weights file of this model?")
    if report.shape_mismatch:
        raise UsageError(f"--pretrained_model {path}: {report.summary()}; "
                         "set --class_dim to the number of classes the weights were trained with")
