"""Optimizers of the classic recipes: Momentum (default) and RMSProp (EfficientNet), with L2 decay and
optional clipping of the global gradient norm."""
from __future__ import annotations

import paddle
from paddle.regularizer import L2Decay

from utils.errors import UsageError


def build_optimizer(name: str, parameters, scheduler, l2_decay: float, momentum: float,
                    clip_grad_norm: float | None = None):
    decay = L2Decay(l2_decay) if l2_decay > 0 else None
    # Optimizer.step applies grad_clip to the gradients before the L2 decay term and the update
    # (paddle/optimizer/optimizer.py, Optimizer._apply_optimize). Under AMP, GradScaler.step unscales the
    # gradients first and then calls optimizer.step (paddle/amp/grad_scaler.py, GradScaler.step ->
    # AmpScaler._unscale), so the norm clipped is the one of the true, unscaled gradient.
    clip = paddle.nn.ClipGradByGlobalNorm(clip_grad_norm) if clip_grad_norm is not None else None
    if name == "momentum":
        return paddle.optimizer.Momentum(learning_rate=scheduler, momentum=momentum,
                                         parameters=parameters, weight_decay=decay, grad_clip=clip)
    if name == "rmsprop":
        # The EfficientNet recipe: rho 0.9, momentum 0.9, epsilon 1e-3 (TF's RMSProp defaults there).
        return paddle.optimizer.RMSProp(learning_rate=scheduler, rho=0.9, momentum=momentum, epsilon=1e-3,
                                        parameters=parameters, weight_decay=decay, grad_clip=clip)
    raise UsageError(f"--optimizer {name!r} is unknown; choose momentum or rmsprop")
