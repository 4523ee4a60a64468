"""Where and how an engine runs: device, threads, precision (from a script's flags).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from utils.errors import UsageError

PRECISIONS = ("fp32", "bf16", "int8", "fp16")
CPU_PRECISIONS = ("fp32", "bf16", "int8")  # fp16 is Paddle Inference's half precision on the GPU only


@dataclass
class DeviceOptions:
    use_gpu: bool = False
    gpu_id: int = 0
    gpu_mem: int = 500  # MB the GPU memory pool starts with
    use_tensorrt: bool = False
    cpu_threads: int = 2
    use_onednn: bool = True
    max_batch_size: int = 32  # TensorRT engines are built for batches up to this size
    # On CPU a batch runs through the predictor this many images at a time: activations of 8 images stay
    # in cache where 32 do not (measured here: MobileNetV3_large batch 32 in 250 ms as 4 x 8, 420 ms whole).
    cpu_chunk: int = 8
    precision: str = "fp32"  # --precision: fp32, bf16 or int8 on the CPU; fp32 or fp16 on the GPU


def inference_options(args, batch_size: int = 32, device: str | None = None) -> DeviceOptions:
    """DeviceOptions from the flags a script has (missing flags keep the defaults); ``device`` is
    utils.cli.select_device's answer when the script asked it."""
    from utils.runtime import usable_cores

    return DeviceOptions(
        use_gpu=device == "gpu" if device else bool(getattr(args, "use_gpu", False)),
        gpu_id=getattr(args, "gpu_id", 0) or 0,
        gpu_mem=getattr(args, "gpu_mem", 500) or 500,
        use_tensorrt=bool(getattr(args, "use_tensorrt", False)),
        cpu_threads=getattr(args, "cpu_threads", None) or int(os.environ.get("OMP_NUM_THREADS", 0)) or usable_cores(),
        use_onednn=getattr(args, "enable_mkldnn", True) is not False,
        max_batch_size=max(1, batch_size),
        precision=_precision(args, device),
    )


def _precision(args, device: str | None) -> str:
    precision = getattr(args, "precision", None) or "fp32"
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    on_gpu = device == "gpu" if device else bool(getattr(args, "use_gpu", False))
    if precision == "fp16" and not on_gpu:
        raise UsageError("--precision fp16 is Paddle Inference's half precision on the GPU (--use_gpu=True); "
                         "on the CPU use --precision fp32, bf16 or int8")
    if precision in ("bf16", "int8") and on_gpu:
        raise UsageError(f"--precision {precision} is a CPU precision here (oneDNN, OpenVINO); on the GPU use "
                         "fp32 or fp16, or pass --use_gpu=False")
    return precision


def require_cpu_precision(options: DeviceOptions, engine: str) -> None:
    """Refuse a CPU precision this CPU cannot run well (one line naming the missing instruction set)."""
    from utils.cpu_features import precision_support

    if options.use_gpu or options.precision == "fp32":
        return
    reason = precision_support(options.precision)
    if reason:
        raise UsageError(f"--precision {options.precision} (--engine {engine}): {reason}")
