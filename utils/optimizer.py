"""Optimizers of the classic recipes: Momentum (default) and RMSProp (EfficientNet), with L2 decay."""
from __future__ import annotations

import paddle
from paddle.regularizer import L2Decay

from utils.errors import UsageError


def build_optimizer(name: str, parameters, scheduler, l2_decay: float, momentum: float):
    decay = L2Decay(l2_decay) if l2_decay > 0 else None
    if name == "momentum":
        return paddle.optimizer.Momentum(learning_rate=scheduler, momentum=momentum,
                                         parameters=parameters, weight_decay=decay)
    if name == "rmsprop":
        # The EfficientNet recipe: rho 0.9, momentum 0.9, epsilon 1e-3 (TF's RMSProp defaults there).
        return paddle.optimizer.RMSProp(learning_rate=scheduler, rho=0.9, momentum=momentum, epsilon=1e-3,
                                        parameters=parameters, weight_decay=decay)
    raise UsageError(f"--optimizer {name!r} is unknown; choose momentum or rmsprop")
