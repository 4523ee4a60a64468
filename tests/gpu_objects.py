"""Build, on the CPU, the real Paddle objects a GPU mixed-precision run holds.

``paddle.amp.decorate`` and ``GradScaler`` look at the tracer's expected place and do nothing unless it is
a GPU (paddle/amp/auto_cast.py ``amp_decorate``, paddle/amp/grad_scaler.py ``AmpScaler.__init__``). Inside
:func:`gpu_place_for_amp` those two checks see a GPU place, so Paddle's own code casts parameters to
float16/bfloat16 (norm layers kept float32), switches the optimizer to multi-precision and keeps loss
scaling on: the objects are the real ones; only the place check is answered differently. Kernels still run
on the CPU, so these objects can be saved, loaded and inspected, not trained in float16.
"""
from __future__ import annotations

import contextlib
import sys
from unittest import mock

import paddle


class _GpuPlace:
    def is_gpu_place(self) -> bool:
        return True

    def is_xpu_place(self) -> bool:
        return False

    def is_custom_place(self) -> bool:
        return False


class _TracerOnGpu:
    """The real tracer, except that its expected place answers "GPU"; AMP state set on it (auto_cast's
    level, dtype and op lists) reaches the real tracer, so eager ops really cast their inputs."""

    def __init__(self, tracer):
        object.__setattr__(self, "_tracer", tracer)
        object.__setattr__(self, "_expected_place", _GpuPlace())

    def __getattr__(self, name):
        return getattr(self._tracer, name)

    def __setattr__(self, name, value):
        setattr(self._tracer, name, value)


@contextlib.contextmanager
def gpu_place_for_amp():
    auto_cast = sys.modules["paddle.amp.auto_cast"]
    grad_scaler = sys.modules["paddle.amp.grad_scaler"]
    tracer = _TracerOnGpu(auto_cast._dygraph_tracer())
    with mock.patch.object(auto_cast, "_dygraph_tracer", lambda: tracer), \
            mock.patch.object(grad_scaler, "_dygraph_tracer", lambda: tracer), \
            mock.patch.object(auto_cast, "_is_gpu_float16_supported", lambda: True), \
            mock.patch.object(auto_cast, "_is_gpu_bfloat16_supported", lambda: True):
        yield


def create_master_weights(optimizer) -> None:
    """Create the optimizer's accumulators and fp32 master weights the way its first step does
    (``Optimizer._create_optimization_pass`` calls ``_create_accumulators``)."""
    params = [p for p in optimizer._parameter_list if not p.stop_gradient]
    optimizer._create_accumulators(paddle.static.default_main_program().global_block(), params)
