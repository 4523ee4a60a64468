"""An export run by the Paddle Inference API: oneDNN on CPU, or a GPU, optionally with TensorRT.
"""
from __future__ import annotations

import json
import os

import numpy as np

from utils.errors import UsageError
from utils.export_format import DEPLOY_JSON, model_files
from utils.inference.engine import as_numpy
from utils.inference.options import DeviceOptions, require_cpu_precision


def _enable_onednn(config, precision: str = "fp32") -> None:
    # Paddle 3 names it oneDNN; Paddle 2.6 only has the MKLDNN spelling of the same Config methods
    spelling = "onednn" if hasattr(config, "enable_onednn") else "mkldnn"
    getattr(config, f"enable_{spelling}")()
    getattr(config, f"set_{spelling}_cache_capacity")(16)  # input shapes cached (the last batch is often smaller)
    if precision == "bf16":
        getattr(config, f"enable_{spelling}_bfloat16")()  # oneDNN bf16 kernels for the ops that have them
    elif precision == "int8":
        getattr(config, f"enable_{spelling}_int8")()  # the quantize/dequantize ops of the int8 program run as int8


class InferenceLoadError(UsageError):
    """Paddle Inference could not load an exported model."""


class PaddleInferenceEngine:
    """An exported model run by paddle.inference (Config + create_predictor)."""

    name = "inference"

    def __init__(self, directory: str, options: DeviceOptions | None = None, flag: str = "--inference_model",
                 files: tuple[str, str] | None = None):
        from utils.runtime import import_paddle_quietly

        paddle = import_paddle_quietly()  # predict.py may not have imported it (utils.cli.run)
        import paddle.inference as paddle_infer

        options = options or DeviceOptions()
        # files: (program, params) named by predict.py --model_file/--params_file (a classic export)
        program, params = files or model_files(directory, flag)
        if not options.use_gpu and options.precision != "fp32":
            require_cpu_precision(options, "inference")
            if not options.use_onednn:
                raise UsageError(f"--precision {options.precision} runs through oneDNN: drop --enable_mkldnn=False")
            if options.precision == "int8":
                program, params = int8_files(directory)
        config = paddle_infer.Config(program, params)
        if options.use_gpu:
            if not paddle.device.is_compiled_with_cuda():
                raise UsageError("--use_gpu=True, but this Paddle build has no CUDA; install paddlepaddle-gpu")
            # Config.enable_use_gpu(memory_pool_init_size_mb, device_id, precision_mode) (paddle.inference)
            config.enable_use_gpu(options.gpu_mem, options.gpu_id, _PRECISIONS[options.precision](paddle_infer))
            if options.use_tensorrt:
                self._enable_tensorrt(config, paddle_infer, options, program, directory)
        else:
            if options.use_tensorrt:
                raise UsageError("--use_tensorrt=True needs --use_gpu=True and a Paddle GPU build with TensorRT")
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(max(1, options.cpu_threads))
            if options.use_onednn:
                _enable_onednn(config, options.precision)
        config.switch_ir_optim(True)
        config.disable_glog_info()
        try:
            self.predictor = paddle_infer.create_predictor(config)
        except Exception as err:  # a truncated or foreign file fails deep inside Paddle's C++ loader
            first_line = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise InferenceLoadError(f"{flag} {directory}: Paddle Inference cannot load {os.path.basename(params)} "
                             f"({first_line.strip()[:200]}); the export is damaged or incomplete: export it "
                             "again with infer.py --save_inference=True") from None
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output_name = self.predictor.get_output_names()[0]
        self.options = options
        self.precision = options.precision

    @staticmethod
    def _enable_tensorrt(config, paddle_infer, options: DeviceOptions, program: str, directory: str) -> None:
        version = paddle_infer.get_trt_compile_version()
        if not any(version):
            raise UsageError("--use_tensorrt=True, but this Paddle build was compiled without TensorRT")
        if program.endswith(".json"):
            # a Paddle 3 (PIR) program has a dynamic batch: TensorRT needs each input's shape range first,
            # as paddle.incubate.jit.inference_decorator does for .json programs before enable_tensorrt_engine
            PaddleInferenceEngine.set_tensorrt_shapes(config, directory, options.max_batch_size)
        config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=options.max_batch_size,
                                      min_subgraph_size=3, precision_mode=_PRECISIONS[options.precision](paddle_infer),
                                      use_static=False, use_calib_mode=False)

    @staticmethod
    def set_tensorrt_shapes(config, directory: str, max_batch: int) -> tuple[dict, dict, dict]:
        """TensorRT's (min, max, opt) input shapes for an export: batch 1 to ``max_batch`` at its input size."""
        meta_path = os.path.join(directory, DEPLOY_JSON)
        try:
            with open(meta_path, encoding="utf-8") as handle:
                meta = json.load(handle)
            name, shape = str(meta["input_name"]), [int(v) for v in meta["input_shape"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{meta_path}: no input name and shape for TensorRT ({type(err).__name__}: {err}); "
                             "re-export with infer.py --save_inference=True") from None
        ranges = ({name: [1, *shape]}, {name: [max(1, max_batch), *shape]}, {name: [max(1, max_batch), *shape]})
        config.set_trt_dynamic_shape_info(*ranges)
        return ranges

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.options.use_gpu and _on_gpu(batch):
            return self._run_on_device(batch)
        batch = as_numpy(batch)
        chunk = 0 if self.options.use_gpu else self.options.cpu_chunk
        if chunk <= 0 or len(batch) <= chunk:
            return self._run(batch)
        return np.concatenate([self._run(batch[start:start + chunk]) for start in range(0, len(batch), chunk)])

    def _run_on_device(self, batch) -> np.ndarray:
        """A batch already on the GPU (the DALI reader, or a loader on the GPU) is handed to the predictor
        without a device -> host -> device round trip; only the logits come back to the host.
        Relies on paddle.inference.Tensor.share_external_data(paddle.Tensor) (not observable without a GPU)."""
        import paddle

        if batch.dtype != paddle.float32:
            batch = batch.astype("float32")
        self.input.share_external_data(batch)
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.input.reshape(list(batch.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(batch))
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()


def int8_files(directory: str) -> tuple[str, str]:
    """The int8 program made beforehand beside the export (utils.quantize) and its parameters."""
    from utils.quantize import int8_model

    program = int8_model(directory, "inference")
    return program, os.path.splitext(program)[0] + ".pdiparams"


_PRECISIONS = {
    "fp32": lambda paddle_infer: paddle_infer.PrecisionType.Float32,
    "fp16": lambda paddle_infer: paddle_infer.PrecisionType.Half,
}


def _on_gpu(batch) -> bool:
    place = getattr(batch, "place", None)
    return place is not None and hasattr(place, "is_gpu_place") and place.is_gpu_place()
