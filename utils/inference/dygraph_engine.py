"""The paddle.nn.Layer itself as an engine (needs the model code).
"""
from __future__ import annotations

import numpy as np


class DygraphEngine:
    name = "dygraph"

    def __init__(self, model, fallback: str | None = None):
        self.model = model
        self.fallback = fallback  # why the faster engine was not used, when it was the default
        model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import paddle

        from models.base import main_logits

        with paddle.no_grad():
            tensor = batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(np.ascontiguousarray(batch))
            return main_logits(self.model(tensor)).numpy()
