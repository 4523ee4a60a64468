"""Which engine a script runs: for a dygraph model (``--engine``, or the verified default on CPU), for an
export, and for eval.py's ``--inference_model``.
"""
from __future__ import annotations

import os

from utils.errors import UsageError
from utils.export_format import DEPLOY_JSON, ONNX_FILE, ExportedModel, load_export
from utils.inference.dygraph_engine import DygraphEngine
from utils.inference.engine import Engine, VerifiedEngine
from utils.inference.labels import IMAGENET_CLASSES
from utils.inference.onnx_engine import OnnxEngine
from utils.inference.options import DeviceOptions, inference_options
from utils.inference.paddle_engine import InferenceLoadError, PaddleInferenceEngine
from utils.inference.records import log
from utils.transforms import PreprocessConfig

EXPORT_ENGINES = ("inference", "onnxruntime", "openvino")
_PREPROCESS_FLAGS = ("image_shape", "resize_short_size", "interpolation", "image_mean", "image_std")


def engine_for_model(engine: str | None, device: str, model, cfg: PreprocessConfig, options: DeviceOptions,
                     topk: int, export_dir: str | None = None) -> Engine:
    """--engine for a dygraph model: ``dygraph``, ``inference`` (from ``export_dir``, else converted in
    memory), or None: Paddle Inference on CPU, kept only if the first batch gives dygraph's top-k."""
    if engine in ("onnxruntime", "openvino"):
        raise UsageError(f"--engine {engine} runs an exported model: export it first (infer.py "
                         "--save_inference=True --save_onnx=True), then use predict.py or eval.py --inference_model")
    if engine not in (None, "dygraph", "inference"):
        raise UsageError(f"--engine {engine!r}: choose dygraph or inference")
    dygraph = DygraphEngine(model)
    if options.precision != "fp32" and engine != "inference":
        raise UsageError(f"--precision {options.precision} applies to Paddle Inference: add --engine inference")
    if options.precision == "int8":
        raise UsageError("--precision int8 runs on OpenVINO from a calibrated export: infer.py --save_inference=True "
                         "--calib_list=LIST, then predict.py or eval.py --inference_model=DIR --engine openvino "
                         "--precision int8")
    if engine == "dygraph" or (engine is None and device != "cpu"):
        return dygraph
    try:
        if export_dir is None:
            from utils.export import convert_in_memory

            export_dir = convert_in_memory(model, cfg)
        fast = PaddleInferenceEngine(export_dir, options, flag="--engine inference")
    except InferenceLoadError as err:
        if engine == "inference":
            raise
        return _dygraph_fallback(model, str(err))
    except UsageError:
        raise
    except Exception as err:  # a network jit.save or Paddle Inference cannot handle
        first_line = next((line for line in str(err).splitlines() if line.strip()), "")[:200]
        if engine == "inference":
            raise UsageError(f"--engine inference: could not convert the model ({type(err).__name__}: "
                             f"{first_line}); use --engine dygraph") from None
        return _dygraph_fallback(model, f"Paddle Inference could not convert this model ({type(err).__name__}: "
                                        f"{first_line})")
    if engine == "inference":
        return fast
    return VerifiedEngine(fast, dygraph, topk=max(5, topk))


def _dygraph_fallback(model, reason: str) -> DygraphEngine:
    log(f"warning: {reason}; using --engine dygraph")
    return DygraphEngine(model, fallback=reason)


def load_model(args, fallback_class_dim: int = IMAGENET_CLASSES):
    """Build ``--model`` with ``--pretrained_model`` (see utils.presets.load_trained_model); eval mode.

    Returns ``(model, class_dim)``.
    """
    from utils.presets import load_trained_model

    model, class_dim = load_trained_model(args, fallback_class_dim, log=log)
    model.eval()
    return model, class_dim


def engine_for_export(engine: str, deployed: ExportedModel, options: DeviceOptions,
                      flag: str = "--inference_model") -> Engine:
    """``inference`` (Paddle Inference), ``onnxruntime`` or ``openvino`` (both on the export's inference.onnx)
    at ``options.precision``; a precision the CPU cannot run well is refused naming the missing feature."""
    if engine not in EXPORT_ENGINES:
        raise UsageError(f"--engine {engine!r}: choose one of {', '.join(EXPORT_ENGINES)} for an exported model")
    if engine == "onnxruntime":
        if options.use_gpu:
            raise UsageError("--engine onnxruntime runs on CPU here; pass --use_gpu=False")
        if options.precision != "fp32":
            raise UsageError(f"--precision {options.precision}: --engine onnxruntime runs fp32 here; use "
                             "--engine inference or openvino for bf16/int8")
        return OnnxEngine(os.path.join(deployed.directory, ONNX_FILE), options.cpu_threads, flag=flag)
    if engine == "openvino":
        from utils.inference.openvino_engine import OpenVinoEngine, check_openvino_usable, onnx_for_openvino

        check_openvino_usable(options)  # before any conversion
        if options.precision == "int8":
            from utils.quantize import int8_model

            return OpenVinoEngine(int8_model(deployed.directory, engine), options, flag)
        return OpenVinoEngine(onnx_for_openvino(deployed.directory, flag), options, flag)
    return PaddleInferenceEngine(deployed.directory, options, flag=flag)


def exported_for_eval(args, device: str, build_engine: bool = True) -> tuple[ExportedModel, Engine | None]:
    """eval.py --inference_model DIR: the export and its Paddle Inference engine (preprocessing from DIR);
    no engine when ``build_engine`` is False (the automatic choice builds it)."""
    given = [f"--{name}" for name in _PREPROCESS_FLAGS if getattr(args, name, None) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: with --inference_model the preprocessing comes from "
                         f"{os.path.join(args.inference_model, DEPLOY_JSON)}; drop the flag")
    if args.engine == "dygraph":
        raise UsageError(f"--engine dygraph needs the model code; with --inference_model choose one of "
                         f"{', '.join(EXPORT_ENGINES)}")
    deployed = load_export(args.inference_model)
    if not build_engine:
        return deployed, None
    engine = engine_for_export(args.engine or "inference", deployed, inference_options(args, args.batch_size, device))
    return deployed, engine
